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
from elastic.tasks import NewTask, TaskStatus, WorkerStatus, can_transition

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


def test_a_non_retryable_failure_fails_at_once(store: Store) -> None:
    store.submit_tasks([sim("a")], now=T0)
    register(store)
    lease = store.lease_tasks("w1", now=T0)[0]
    task = store.record_result("a", worker_id="w1", lease_token=lease.lease_token,
                               result={"success": False, "error": "bad", "retryable": False})
    assert task.status is TaskStatus.FAILED
    assert task.attempts == 1


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
    assert (task.status, task.failures) == (TaskStatus.PENDING, 1)


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


def test_leases_renewed_at_start_survive_the_servers_downtime(store: Store) -> None:
    store.submit_tasks([sim("a")], now=T0)
    register(store)
    store.lease_tasks("w1", now=T0)
    store.extend_live_leases(now=T0 + 500)
    assert store.expire_leases(now=T0 + 510).tasks_requeued == []
    assert store.get_task("a").status is TaskStatus.ASSIGNED


def test_ended_tasks_are_exported_once(store: Store) -> None:
    store.submit_tasks([sim("a"), sim("b")], now=T0)
    register(store, capacity=2)
    for lease in store.lease_tasks("w1", limit=2, now=T0):
        store.record_result(lease.task.task_id, worker_id="w1", lease_token=lease.lease_token,
                            result={"success": True})
    assert [t.task_id for t in store.claim_tasks_to_export(now=T0 + 1)] == ["a", "b"]
    assert store.claim_tasks_to_export(now=T0 + 2) == []
    store.mark_exported(["a", "b"])
    assert store.claim_tasks_to_export(now=T0 + 1000) == []


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
