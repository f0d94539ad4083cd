"""The Store's contract, run against every database (SQLite file and PostgreSQL).

Every test here also checks the state machine: each task status change the database
sees while the test runs must be one ``elastic.tasks.ALLOWED_TRANSITIONS`` allows.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from status_recorder import recorded_transitions, start_recording

from elastic.errors import StaleLease, TaskNotFound, WorkerNotFound, WrongState
from elastic.store import Store
from elastic.tasks import NewTask, SubmitOutcome, TaskStatus, WorkerStatus, can_transition

T0 = 1_000_000.0


@pytest.fixture(autouse=True)
def only_allowed_transitions(request: pytest.FixtureRequest) -> Iterator[None]:
    """Record the status changes of a test's store; fail the test on one the table forbids."""
    if "store" not in request.fixturenames:
        yield
        return
    store: Store = request.getfixturevalue("store")
    start_recording(store)
    yield
    forbidden = [(old, new) for old, new in recorded_transitions(store)
                 if not can_transition(TaskStatus(old), TaskStatus(new))]
    assert not forbidden, f"the store made transitions the state machine forbids: {forbidden}"


def sim(task_id: str, *, priority: int = 5, algorithm: str = "python") -> NewTask:
    return NewTask(task_id=task_id, type="simulation", priority=priority,
                   data={"algorithm": algorithm, "parameters": {"num_particles": 4, "num_steps": 1}})


def mutation(task_id: str, *, priority: int = 5) -> NewTask:
    return NewTask(task_id=task_id, type="evolution_mutation", priority=priority,
                   data={"genome": {"a": 1.0}, "mutation_rate": 0.1})


def register(store: Store, worker_id: str = "w1", *, worker_type: str = "simulation",
             capacity: int = 1, now: float = T0, **capabilities: object) -> None:
    capabilities.setdefault("algorithms", ["python", "numpy"])
    store.register_worker(worker_id, worker_type=worker_type, capabilities=capabilities,
                          capacity=capacity, now=now)


def test_the_most_urgent_then_oldest_task_is_leased_first(store: Store) -> None:
    store.submit_tasks([sim("low", priority=2), sim("high-old", priority=8),
                        sim("high-new", priority=8)], now=T0)
    register(store, capacity=3)
    leased = [lease.task.task_id for lease in store.lease_tasks("w1", limit=3, now=T0)]
    assert leased == ["high-old", "high-new", "low"]


def test_submitting_an_existing_task_id_does_not_create_a_second_task(store: Store) -> None:
    first = store.submit_tasks([sim("a")], now=T0)
    again = store.submit_tasks([sim("a"), sim("b")], now=T0)
    assert [o.created for o in first] == [True]
    assert [(o.task_id, o.created) for o in again] == [("a", False), ("b", True)]
    assert store.count_tasks()["total"] == 2


def test_a_worker_only_gets_task_types_and_algorithms_it_declared(store: Store) -> None:
    store.submit_tasks([sim("cy", algorithm="cython"), mutation("mut"), sim("py")], now=T0)
    register(store, capacity=5)
    assert [lease.task.task_id for lease in store.lease_tasks("w1", limit=5, now=T0)] == ["py"]
    register(store, "evo", worker_type="evolution")
    assert [lease.task.task_id for lease in store.lease_tasks("evo", now=T0)] == ["mut"]


def test_a_model_named_by_the_task_must_be_offered_by_the_worker(store: Store) -> None:
    store.submit_tasks([NewTask(task_id="llm", type="agent_action", data={
        "messages": [{"role": "user", "content": "hi"}], "model": "llama-3.3-70b"})], now=T0)
    register(store, "gemini", worker_type="gemini", models=["gemini-2.0-flash"])
    register(store, "groq", worker_type="groq", models=["llama-3.3-70b"])
    assert store.lease_tasks("gemini", now=T0) == []
    assert [lease.task.task_id for lease in store.lease_tasks("groq", now=T0)] == ["llm"]


def test_capacity_caps_the_leases_a_worker_holds(store: Store) -> None:
    store.submit_tasks([sim(f"t{i}") for i in range(5)], now=T0)
    register(store, capacity=2)
    assert len(store.lease_tasks("w1", limit=5, now=T0)) == 2
    assert store.lease_tasks("w1", limit=5, now=T0) == []
    assert store.get_worker("w1").status is WorkerStatus.BUSY


def test_every_lease_gets_a_new_fencing_token(store: Store) -> None:
    store.submit_tasks([sim("a")], now=T0)
    register(store)
    first = store.lease_tasks("w1", now=T0)[0]
    store.expire_leases(now=T0 + 31)
    register(store, now=T0 + 31)
    second = store.lease_tasks("w1", now=T0 + 31)[0]
    assert second.lease_token != first.lease_token


def test_stale_result_is_rejected_with_409_and_changes_nothing(store: Store) -> None:
    store.submit_tasks([sim("a")], now=T0)
    register(store)
    register(store, "w2")
    old = store.lease_tasks("w1", now=T0)[0]
    store.expire_leases(now=T0 + 31)
    register(store, "w2", now=T0 + 31)
    new = store.lease_tasks("w2", now=T0 + 31)[0]
    with pytest.raises(StaleLease) as caught:
        store.record_result("a", worker_id="w1", lease_token=old.lease_token,
                            result={"success": True}, now=T0 + 32)
    assert caught.value.http_status == 409
    task = store.get_task("a")
    assert (task.status, task.worker_id, task.result) == (TaskStatus.ASSIGNED, "w2", None)
    store.record_result("a", worker_id="w2", lease_token=new.lease_token,
                        result={"success": True, "x": 1}, now=T0 + 33)
    with pytest.raises(StaleLease):
        store.record_result("a", worker_id="w2", lease_token=new.lease_token,
                            result={"success": True, "x": 2}, now=T0 + 34)
    assert store.get_task("a").result == {"success": True, "x": 1}


def test_a_completed_result_updates_the_task_and_the_worker(store: Store) -> None:
    store.submit_tasks([sim("a")], now=T0)
    register(store)
    lease = store.lease_tasks("w1", now=T0)[0]
    task = store.record_result("a", worker_id="w1", lease_token=lease.lease_token,
                               result={"success": True, "energy": 1.5}, now=T0 + 2)
    assert task.status is TaskStatus.COMPLETED
    assert task.execution_time_s == 2
    worker = store.get_worker("w1")
    assert (worker.tasks_completed, worker.status) == (1, WorkerStatus.ONLINE)
    assert [a.outcome for a in store.task_attempts("a")] == ["completed"]


def test_failed_attempts_are_retried_then_the_task_fails_with_its_history(store: Store) -> None:
    store.submit_tasks([sim("a")], now=T0)
    register(store)
    for attempt in range(3):
        lease = store.lease_tasks("w1", now=T0 + attempt)[0]
        store.record_result("a", worker_id="w1", lease_token=lease.lease_token,
                            result={"success": False, "error": f"boom {attempt}"}, now=T0 + attempt)
    task = store.get_task("a")
    assert task.status is TaskStatus.FAILED
    assert task.error == "boom 2"
    assert [a.error for a in store.task_attempts("a")] == ["boom 0", "boom 1", "boom 2"]
    assert store.lease_tasks("w1", now=T0 + 5) == []


def test_a_non_retryable_failure_is_held_at_once_with_its_reason(store: Store) -> None:
    store.submit_tasks([sim("a")], now=T0)
    register(store)
    lease = store.lease_tasks("w1", now=T0)[0]
    task = store.record_result("a", worker_id="w1", lease_token=lease.lease_token,
                               result={"success": False, "error": "bad", "retryable": False,
                                       "reason": "invalid_input"})
    assert (task.status, task.held_reason, task.error) == (TaskStatus.HELD, "invalid_input", "bad")
    assert task.attempts == 1
    assert store.lease_tasks("w1", now=T0 + 100) == []


def test_an_expired_lease_puts_the_task_back_as_redistributed(store: Store) -> None:
    store.submit_tasks([sim("a")], now=T0)
    register(store)
    store.lease_tasks("w1", now=T0)
    store.heartbeat("w1", now=T0 + 25)
    assert store.expire_leases(now=T0 + 40).tasks_requeued == []
    report = store.expire_leases(now=T0 + 56)
    assert report.tasks_requeued == ["a"]
    task = store.get_task("a")
    assert task.status is TaskStatus.PENDING and task.is_redistributed
    assert store.task_attempts("a")[0].outcome == "expired"
    assert store.count_tasks()["redistributed"] == 1


def test_a_silent_worker_is_declared_dead_and_its_tasks_return(store: Store) -> None:
    store.submit_tasks([sim("a")], now=T0)
    register(store)
    store.lease_tasks("w1", now=T0)
    report = store.expire_leases(now=T0 + 61)
    assert report.workers_dead == ["w1"]
    assert report.tasks_requeued == ["a"]
    assert store.get_worker("w1").status is WorkerStatus.DEAD


def test_heartbeat_returns_the_tasks_the_worker_no_longer_holds(store: Store) -> None:
    store.submit_tasks([sim("a"), sim("b")], now=T0)
    register(store, capacity=2)
    leases = {lease.task.task_id: lease.lease_token for lease in store.lease_tasks("w1", limit=2)}
    store.cancel_task("b")
    revoked = store.heartbeat("w1", running=leases, progress={"a": 0.5})
    assert revoked == ["b"]
    assert store.get_task("a").progress == 0.5


def test_heartbeat_of_an_unknown_worker_is_404(store: Store) -> None:
    with pytest.raises(WorkerNotFound) as caught:
        store.heartbeat("ghost")
    assert caught.value.http_status == 404


def test_unregistering_hands_tasks_back_without_counting_a_failure(store: Store) -> None:
    store.submit_tasks([sim("a")], now=T0)
    register(store)
    store.lease_tasks("w1", now=T0)
    worker = store.unregister_worker("w1", now=T0 + 1)
    task = store.get_task("a")
    assert worker.status is WorkerStatus.OFFLINE
    assert (task.status, task.failures, task.attempts) == (TaskStatus.PENDING, 0, 0)


def test_a_restarted_worker_loses_the_leases_of_its_previous_life(store: Store) -> None:
    store.submit_tasks([sim("a")], now=T0)
    register(store)
    store.lease_tasks("w1", now=T0)
    register(store, now=T0 + 5)
    task = store.get_task("a")
    assert (task.status, task.failures, task.worker_deaths) == (TaskStatus.PENDING, 0, 1)
    assert [a.outcome for a in store.task_attempts("a")] == ["worker_dead"]


def test_cancel_pending_and_running_but_not_completed(store: Store) -> None:
    store.submit_tasks([sim("a"), sim("b"), sim("c")], now=T0)
    register(store, capacity=2)
    leases = store.lease_tasks("w1", limit=2, now=T0)
    store.record_result(leases[0].task.task_id, worker_id="w1",
                        lease_token=leases[0].lease_token, result={"success": True})
    assert store.cancel_task("b").status is TaskStatus.CANCELLED
    assert store.cancel_task("c").status is TaskStatus.CANCELLED
    with pytest.raises(WrongState):
        store.cancel_task("a")
    with pytest.raises(StaleLease):
        store.record_result("b", worker_id="w1", lease_token=leases[1].lease_token,
                            result={"success": True})
    with pytest.raises(TaskNotFound):
        store.cancel_task("nope")


def test_checkpoints_are_fenced_and_given_to_the_next_attempt(store: Store) -> None:
    store.submit_tasks([sim("a")], now=T0)
    register(store)
    lease = store.lease_tasks("w1", now=T0)[0]
    store.save_checkpoint("a", worker_id="w1", lease_token=lease.lease_token,
                          checkpoint={"step": 10}, progress=0.5, now=T0 + 1)
    with pytest.raises(StaleLease):
        store.save_checkpoint("a", worker_id="w1", lease_token=lease.lease_token + 1,
                              checkpoint={"step": 99})
    store.expire_leases(now=T0 + 100)
    register(store, now=T0 + 100)
    again = store.lease_tasks("w1", now=T0 + 100)[0]
    assert again.task.checkpoint == {"step": 10}


def test_the_servers_downtime_does_not_count_against_a_live_workers_lease(store: Store) -> None:
    store.submit_tasks([sim("a")], now=T0)
    register(store)
    store.lease_tasks("w1", now=T0)
    store.expire_leases(now=T0 + 1)  # the server's last pass, then it is down 500 s
    restart = store.expire_leases(quiet_seconds=3, now=T0 + 501)
    assert (restart.clocks_shifted_seconds, restart.tasks_requeued) == (500, [])
    assert store.expire_leases(now=T0 + 510).tasks_requeued == []
    assert store.get_task("a").status is TaskStatus.ASSIGNED


def test_ended_tasks_are_exported_once(store: Store) -> None:
    store.submit_tasks([sim("a"), sim("b")], now=T0)
    register(store, capacity=2)
    for lease in store.lease_tasks("w1", limit=2, now=T0):
        store.record_result(lease.task.task_id, worker_id="w1", lease_token=lease.lease_token,
                            result={"success": True})
    assert [t.task_id for t in store.claim_tasks_to_export("b1", now=T0 + 1)] == ["a", "b"]
    assert store.claim_tasks_to_export("b2", now=T0 + 2) == []
    store.mark_exported(["a", "b"])
    assert store.claim_tasks_to_export("b3", now=T0 + 1000) == []
    assert store.interrupted_exports(every_claim=True) == []


def test_a_full_disk_is_a_clear_507_and_loses_nothing_accepted(tmp_path: object) -> None:
    from elastic.errors import StorageFull
    from elastic.store import open_store

    store = open_store(f"sqlite:///{tmp_path}/full.db")
    store.submit_tasks([sim("kept")])
    with store.engine.begin() as connection:
        pages = connection.exec_driver_sql("PRAGMA page_count").scalar()
    store.engine.dispose()
    store = open_store(f"sqlite:///{tmp_path}/full.db", upgrade=False)

    from sqlalchemy import event

    @event.listens_for(store.engine, "connect")
    def cap_size(dbapi_connection: object, _record: object) -> None:
        dbapi_connection.execute(f"PRAGMA max_page_count={pages + 1}")  # type: ignore[attr-defined]

    big = [NewTask(task_id=f"big{i}", type="evolution_mutation",
                   data={"genome": {"x": "y" * 5000}}) for i in range(50)]
    with pytest.raises(StorageFull) as caught:
        store.submit_tasks(big)
    assert caught.value.http_status == 507
    assert [task.task_id for task in store.list_tasks()] == ["kept"]


# -- leases the worker lists, worker deaths, held tasks ---------------------------------------

def test_a_heartbeat_renews_only_the_leases_the_worker_lists(store: Store) -> None:
    store.submit_tasks([sim("known"), sim("lost")], now=T0)
    register(store, capacity=2)
    tokens = {lease.task.task_id: lease.lease_token
              for lease in store.lease_tasks("w1", limit=2, now=T0)}
    store.heartbeat("w1", running={"known": tokens["known"]}, now=T0 + 1)
    assert store.get_task("lost").status is TaskStatus.ASSIGNED  # its answer may be on the way
    store.heartbeat("w1", running={"known": tokens["known"]}, now=T0 + 20)
    lost, known = store.get_task("lost"), store.get_task("known")
    assert (lost.status, lost.attempts, lost.failures) == (TaskStatus.PENDING, 0, 0)
    assert [a.outcome for a in store.task_attempts("lost")] == ["undelivered"]
    assert (known.status, known.lease_expires_at) == (TaskStatus.ASSIGNED, T0 + 20 + 30)


def test_the_seeds_bare_heartbeat_renews_every_lease_of_the_worker(store: Store) -> None:
    store.submit_tasks([sim("a")], now=T0)
    register(store)
    store.lease_tasks("w1", now=T0)
    assert store.heartbeat("w1", now=T0 + 20) == []
    task = store.get_task("a")
    assert (task.status, task.lease_expires_at) == (TaskStatus.ASSIGNED, T0 + 20 + 30)


def test_a_workers_death_counts_against_each_task_it_held_not_as_a_failure(
        store: Store) -> None:
    store.submit_tasks([sim("running"), sim("just-leased"), sim("waiting")], now=T0)
    register(store, capacity=2)
    first = store.lease_tasks("w1", now=T0)[0]
    store.heartbeat("w1", running={"running": first.lease_token}, now=T0 + 2)
    store.lease_tasks("w1", now=T0 + 3)  # too young to be listed: it may have killed the worker
    store.expire_leases(now=T0 + 64)
    deaths = {task.task_id: (task.status, task.worker_deaths, task.failures, task.attempts)
              for task in store.list_tasks()}
    assert deaths == {"running": (TaskStatus.PENDING, 1, 0, 1),
                      "just-leased": (TaskStatus.PENDING, 1, 0, 1),
                      "waiting": (TaskStatus.PENDING, 0, 0, 0)}


def test_a_task_whose_attempts_kill_three_workers_is_held_as_poison(store: Store) -> None:
    store.submit_tasks([sim("poison")], now=T0)
    now = T0
    for life in range(3):
        register(store, f"w{life}", now=now)
        lease = store.lease_tasks(f"w{life}", now=now)[0]
        store.heartbeat(f"w{life}", running={"poison": lease.lease_token}, now=now + 1)
        now += 100
        store.expire_leases(now=now)
    task = store.get_task("poison")
    assert (task.status, task.held_reason, task.worker_deaths) == (TaskStatus.HELD,
                                                                   "worker_deaths", 3)
    assert "3 workers died" in task.error
    register(store, "healthy", now=now)
    assert store.lease_tasks("healthy", now=now) == []
    assert store.count_tasks()["held"] == 1


def test_releasing_a_held_task_queues_it_with_fresh_counts(store: Store) -> None:
    store.submit_tasks([sim("a"), sim("b")], now=T0)
    register(store, capacity=2)
    lease = store.lease_tasks("w1", now=T0)[0]
    store.record_result("a", worker_id="w1", lease_token=lease.lease_token, now=T0,
                        result={"success": False, "error": "bad key", "retryable": False,
                                "reason": "rejected_by_provider"})
    with pytest.raises(WrongState):
        store.release_hold("b")
    task = store.release_hold("a", now=T0 + 5)
    assert (task.status, task.held_reason, task.failures, task.worker_deaths) == (
        TaskStatus.PENDING, None, 0, 0)
    assert [lease.task.task_id for lease in store.lease_tasks("w1", now=T0 + 5)] == ["a"]
    with pytest.raises(TaskNotFound):
        store.release_hold("nope")


def test_a_held_task_can_be_cancelled(store: Store) -> None:
    store.submit_tasks([sim("a")], now=T0)
    register(store)
    lease = store.lease_tasks("w1", now=T0)[0]
    store.record_result("a", worker_id="w1", lease_token=lease.lease_token, now=T0,
                        result={"success": False, "error": "no", "retryable": False})
    assert store.get_task("a").held_reason == "not_retryable"
    assert store.cancel_task("a").status is TaskStatus.CANCELLED


def test_an_attempt_past_its_time_limit_is_ended_by_the_server(store: Store) -> None:
    store.submit_tasks([NewTask(task_id="slow", type="simulation", timeout_seconds=10.0,
                                data={"algorithm": "python", "parameters": {"num_particles": 4}})],
                       now=T0)
    register(store)
    lease = store.lease_tasks("w1", now=T0)[0]
    assert lease.timeout_seconds == 10.0
    store.heartbeat("w1", running={"slow": lease.lease_token}, now=T0 + 12)
    assert store.expire_leases(now=T0 + 14).tasks_requeued == []
    assert store.expire_leases(now=T0 + 16).tasks_requeued == ["slow"]
    task = store.get_task("slow")
    assert (task.failures, store.task_attempts("slow")[0].outcome) == (1, "timed_out")
    assert "time limit of 10 s" in task.error


def test_a_lease_carries_the_servers_default_time_limit(store: Store) -> None:
    store.submit_tasks([sim("a")], now=T0)
    register(store)
    assert store.lease_tasks("w1", now=T0)[0].timeout_seconds == store.task_timeout_seconds


# -- retry backoff and preference ----------------------------------------------------------

def test_a_retry_waits_a_backoff_and_prefers_another_worker(database_url: str) -> None:
    from elastic.store import Store
    from elastic.store.dialects import create_store_engine
    from elastic.store.migrate import upgrade_to_head
    from elastic.tasks import RetryPolicy

    engine = create_store_engine(database_url)
    upgrade_to_head(engine)
    store = Store(engine, retry=RetryPolicy(backoff_seconds=10, backoff_max_seconds=60),
                  jitter=lambda: 1.0)
    try:
        store.submit_tasks([sim("a")], now=T0)
        register(store, "w1")
        register(store, "w2")
        lease = store.lease_tasks("w1", now=T0)[0]
        store.record_result("a", worker_id="w1", lease_token=lease.lease_token, now=T0,
                            result={"success": False, "error": "flaky"})
        assert store.get_task("a").not_before == T0 + 10
        assert store.lease_tasks("w2", now=T0 + 9) == []
        assert store.lease_tasks("w1", now=T0 + 15) == []  # w1 failed it: others first
        second = store.lease_tasks("w2", now=T0 + 15)[0]
        store.record_result("a", worker_id="w2", lease_token=second.lease_token, now=T0 + 15,
                            result={"success": False, "error": "flaky"})
        assert store.get_task("a").not_before == T0 + 15 + 20  # doubled
        assert store.lease_tasks("w2", now=T0 + 40) == []
        assert [lease.task.task_id for lease in store.lease_tasks("w2", now=T0 + 56)] == ["a"]
    finally:
        engine.dispose()


def test_the_backoff_doubles_up_to_its_cap_with_jitter_between_half_and_all() -> None:
    from elastic.tasks import RetryPolicy

    policy = RetryPolicy(backoff_seconds=2, backoff_max_seconds=10)
    assert [policy.delay_seconds(n, 1.0) for n in range(1, 6)] == [2, 4, 8, 10, 10]
    assert policy.delay_seconds(1, 0.0) == 1.0
    assert policy.delay_seconds(0, 0.5) == 0
    assert RetryPolicy(backoff_seconds=0).delay_seconds(3, 0.5) == 0


# -- the orchestrators' downtime ----------------------------------------------------------

def test_downtime_shifts_clocks_but_a_silent_worker_keeps_its_silence(store: Store) -> None:
    store.submit_tasks([sim("alive"), sim("dying")], now=T0)
    register(store, "live", now=T0)
    register(store, "silent", now=T0)
    store.lease_tasks("live", now=T0)
    store.lease_tasks("silent", now=T0)
    store.heartbeat("live", now=T0 + 50)  # "silent" is quiet since T0
    store.expire_leases(now=T0 + 50)  # the last pass; down until T0 + 1050
    assert store.expire_leases(quiet_seconds=3, now=T0 + 1050).clocks_shifted_seconds == 1000
    assert store.expire_leases(now=T0 + 1055).workers_dead == []
    assert store.expire_leases(now=T0 + 1061).workers_dead == ["silent"]
    assert store.get_worker("live").is_live


def test_a_worker_dead_before_the_downtime_is_not_revived(store: Store) -> None:
    register(store, "gone", now=T0)
    assert store.expire_leases(now=T0 + 61).workers_dead == ["gone"]
    store.expire_leases(quiet_seconds=3, now=T0 + 500)
    assert store.get_worker("gone").status is WorkerStatus.DEAD


def test_a_start_while_another_orchestrator_runs_shifts_nothing(store: Store) -> None:
    register(store, "w1", now=T0)
    for second in range(11):  # the running replica's passes, every second
        assert store.expire_leases(quiet_seconds=3, now=T0 + second).clocks_shifted_seconds == 0
    assert store.expire_leases(quiet_seconds=3, now=T0 + 10.5).clocks_shifted_seconds == 0
    assert store.expire_leases(quiet_seconds=3, now=T0 + 10.6).clocks_shifted_seconds == 0
    assert store.get_worker("w1").last_heartbeat_at == T0


def test_time_without_expiry_passes_is_shifted_but_never_past_a_fresh_heartbeat(
        store: Store) -> None:
    """The server kept running but could not write (a full disk): its passes failed."""
    register(store, "quiet", now=T0)
    register(store, "heard", now=T0)
    store.submit_tasks([sim("a")], now=T0)
    store.lease_tasks("heard", now=T0)
    store.expire_leases(quiet_seconds=3, now=T0 + 1)
    store.heartbeat("heard", now=T0 + 100)  # got through while the passes did not
    report = store.expire_leases(quiet_seconds=3, now=T0 + 120)
    assert (report.clocks_shifted_seconds, report.workers_dead) == (119, [])
    assert store.get_worker("quiet").last_heartbeat_at == T0 + 119
    assert store.get_worker("heard").last_heartbeat_at == T0 + 120
    assert store.get_task("a").lease_expires_at == T0 + 120 + 30


# -- worker identity ----------------------------------------------------------------------

def test_a_live_workers_id_is_taken_over_only_with_its_secret(store: Store) -> None:
    from elastic.errors import WorkerIdTaken

    store.register_worker("w1", worker_type="evolution", capabilities={}, secret_hash="h1",
                          now=T0)
    with pytest.raises(WorkerIdTaken) as caught:
        store.register_worker("w1", worker_type="evolution", capabilities={},
                              secret_hash="h2", now=T0 + 1)
    assert caught.value.http_status == 409
    store.register_worker("w1", worker_type="evolution", capabilities={}, secret_hash="h2",
                          presented_hash="h1", now=T0 + 2)
    assert store.worker_secret_hash("w1") == "h2"
    store.register_worker("w1", worker_type="evolution", capabilities={}, secret_hash="h3",
                          now=T0 + 200)  # its holder went silent: anyone may take it
    assert store.worker_secret_hash("w1") == "h3"


def test_ended_tasks_page_by_end_time_and_a_task_ending_meanwhile_comes_last(
        store: Store) -> None:
    store.submit_tasks([sim(name) for name in "abcde"], now=T0)
    register(store, capacity=5)
    leases = {lease.task.task_id: lease for lease in store.lease_tasks("w1", limit=5, now=T0)}
    for task_id, ended_at in (("c", T0 + 1), ("a", T0 + 2), ("b", T0 + 2), ("e", T0 + 3)):
        store.record_result(task_id, worker_id="w1", lease_token=leases[task_id].lease_token,
                            result={"success": True}, now=ended_at)
    first = store.ended_tasks_page(limit=2)
    assert [task.task_id for task in first] == ["c", "a"]
    after = (first[-1].finished_at or 0.0, first[-1].seq)
    store.record_result("d", worker_id="w1", lease_token=leases["d"].lease_token,
                        result={"success": True}, now=T0 + 4)
    assert [t.task_id for t in store.ended_tasks_page(after=after, limit=10)] == ["b", "e", "d"]
    assert [t.task_id for t in store.ended_tasks_page(since=T0 + 3, limit=10)] == ["e", "d"]


def simulation_of(task_id: str, steps: int) -> NewTask:
    return NewTask(task_id=task_id, type="simulation", data={
        "algorithm": "python", "parameters": {"num_particles": 4, "num_steps": steps}})


def fail(store: Store, task_id: str, *, now: float) -> float:
    """Fail ``task_id`` until its retries are used up (each retry past its backoff); the time."""
    register(store, now=now)
    while store.get_task(task_id).status is not TaskStatus.FAILED:
        now += 100
        [lease] = store.lease_tasks("w1", now=now)
        store.record_result(task_id, worker_id="w1", lease_token=lease.lease_token, now=now,
                            result={"success": False, "error": "flaky"})
    return now


def test_a_known_id_resubmitted_with_other_content_is_reported_and_left_alone(
        store: Store) -> None:
    store.submit_tasks([simulation_of("t", 1)], now=T0)
    assert store.submit_tasks([simulation_of("t", 1)]) == [SubmitOutcome("t", created=False)]
    [outcome] = store.submit_tasks([simulation_of("t", 2)])
    assert (outcome.created, outcome.changed, outcome.replaced) == (False, True, False)
    assert store.get_task("t").data["parameters"]["num_steps"] == 1


def test_replace_requeues_a_failed_task_with_its_new_content_and_keeps_its_history(
        store: Store) -> None:
    store.submit_tasks([simulation_of("t", 1)], now=T0)
    now = fail(store, "t", now=T0)
    [outcome] = store.submit_tasks([simulation_of("t", 2)], replace=True, now=now + 1)
    assert outcome.replaced
    task = store.get_task("t")
    assert (task.status, task.failures, task.result, task.error, task.finished_at) == (
        TaskStatus.PENDING, 0, None, None, None)
    [lease] = store.lease_tasks("w1", now=now + 2)
    assert lease.task.data["parameters"]["num_steps"] == 2
    assert [attempt.outcome for attempt in store.task_attempts("t")] == ["failed"] * 3 + [
        "running"]
    [again] = store.submit_tasks([simulation_of("t", 3)], replace=True, now=now + 3)
    assert (again.changed, again.replaced) == (True, False)  # running: left as it is
    assert store.get_task("t").data["parameters"]["num_steps"] == 2


# -- retry by hand, and the dashboard's reads --------------------------------------------

def test_retry_requeues_a_failed_task_keeping_its_attempt_history(store: Store) -> None:
    store.submit_tasks([sim("a")], now=T0)
    now = fail(store, "a", now=T0)
    task = store.retry_task("a", now=now + 1)
    assert (task.status, task.failures, task.error, task.finished_at) == (
        TaskStatus.PENDING, 0, None, None)
    assert [a.error for a in store.task_attempts("a")] == ["flaky"] * 3
    [lease] = store.lease_tasks("w1", now=now + 2)
    assert (lease.task.task_id, lease.task.attempts) == ("a", 4)


def test_retry_requeues_a_cancelled_task(store: Store) -> None:
    store.submit_tasks([sim("a")], now=T0)
    store.cancel_task("a", now=T0 + 1)
    assert store.retry_task("a", now=T0 + 2).status is TaskStatus.PENDING


@pytest.mark.parametrize("status", ["pending", "assigned", "completed"])
def test_retry_of_a_task_that_is_not_failed_or_cancelled_names_its_state(
        store: Store, status: str) -> None:
    store.submit_tasks([sim("a")], now=T0)
    register(store)
    if status != "pending":
        [lease] = store.lease_tasks("w1", now=T0)
    if status == "completed":
        store.record_result("a", worker_id="w1", lease_token=lease.lease_token,
                            result={"success": True}, now=T0 + 1)
    with pytest.raises(WrongState, match=f"is {status}"):
        store.retry_task("a", now=T0 + 2)
    assert store.get_task("a").status.value == status


def test_queue_counts_by_status_and_priority(store: Store) -> None:
    store.submit_tasks([sim("a", priority=8), sim("b", priority=8), sim("c", priority=2)], now=T0)
    register(store)
    store.lease_tasks("w1", now=T0)
    counts = {(c.status, c.priority): c.count for c in store.count_queue_by_priority()}
    assert counts == {(TaskStatus.ASSIGNED, 8): 1, (TaskStatus.PENDING, 8): 1,
                      (TaskStatus.PENDING, 2): 1}


def test_the_oldest_pending_task_is_the_first_submitted_still_waiting(store: Store) -> None:
    assert store.oldest_pending_created_at() is None
    store.submit_tasks([sim("a", priority=9)], now=T0)
    store.submit_tasks([sim("b", priority=1)], now=T0 + 10)
    assert store.oldest_pending_created_at() == T0
    register(store)
    store.lease_tasks("w1", now=T0 + 11)  # takes a, the most urgent
    assert store.oldest_pending_created_at() == T0 + 10


def test_summarize_finished_counts_the_tasks_ended_in_the_span_and_their_mean_times(
        store: Store) -> None:
    store.submit_tasks([sim("a"), sim("b"), sim("c")], now=T0)
    register(store, capacity=3)
    leases = {lease.task.task_id: lease for lease in store.lease_tasks("w1", limit=3, now=T0 + 1)}
    for task_id, ended_at, success in (("a", T0 + 3, True), ("b", T0 + 5, False),
                                       ("c", T0 + 50, True)):
        store.record_result(task_id, worker_id="w1", lease_token=leases[task_id].lease_token,
                            result={"success": success, "retryable": False}, now=ended_at)
    summary = store.summarize_finished(since=T0, until=T0 + 10)
    assert (summary.completed, summary.failed) == (1, 0)  # b is held, not failed: no retry
    assert summary.mean_run_seconds == pytest.approx(2.0)
    assert summary.mean_latency_seconds == pytest.approx(3.0)
    empty = store.summarize_finished(since=T0 + 60, until=T0 + 70)
    assert (empty.completed, empty.failed, empty.mean_run_seconds) == (0, 0, None)


def test_task_lists_page_newest_first_before_a_seq_and_filter_by_type(store: Store) -> None:
    store.submit_tasks([sim(f"s{i}") for i in range(5)] + [mutation("m0")], now=T0)
    first = store.list_tasks(task_types=["simulation"], limit=2, newest_first=True)
    assert [t.task_id for t in first] == ["s4", "s3"]
    second = store.list_tasks(task_types=["simulation"], limit=2, newest_first=True,
                              before_seq=first[-1].seq)
    assert [t.task_id for t in second] == ["s2", "s1"]
    assert [t.task_id for t in store.list_tasks(task_types=["evolution_mutation"])] == ["m0"]
