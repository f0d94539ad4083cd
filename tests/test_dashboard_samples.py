"""The dashboard's chart samples (``QueueSamples``) on each database, with the clock in hand."""

from __future__ import annotations

from elastic.server.samples import QueueSamples
from elastic.store import Store
from elastic.tasks import NewTask

T0 = 2_000_000.0


def _mutation(task_id: str) -> NewTask:
    return NewTask(task_id=task_id, type="evolution_mutation", priority=5,
                   data={"genome": {"a": 1.0}, "mutation_rate": 0.1})


def test_a_sample_counts_the_queue_and_what_ended_since_the_previous_one(store: Store) -> None:
    samples = QueueSamples(store, interval_seconds=10, clock=lambda: T0)
    store.submit_tasks([_mutation("a"), _mutation("b"), _mutation("c")], now=T0)
    store.register_worker("w1", worker_type="evolution", capabilities={}, capacity=2, now=T0)
    leases = store.lease_tasks("w1", limit=2, now=T0 + 1)
    first = samples.take(now=T0 + 5)
    assert (first.pending, first.running, first.completed, first.failed) == (1, 2, 0, 0)
    store.record_result(leases[0].task.task_id, worker_id="w1", lease_token=leases[0].lease_token,
                        result={"success": True}, now=T0 + 9)
    second = samples.take(now=T0 + 15)
    assert (second.pending, second.running, second.completed, second.span_seconds) == (1, 1, 1, 10)
    assert second.mean_run_seconds == 8 and second.mean_latency_seconds == 9
    assert second.as_json()["ended_per_minute"] == 6.0
    assert samples.unservable == []  # w1 can run every one


def test_the_ring_keeps_only_the_window_and_take_if_due_waits_for_the_interval(
        store: Store) -> None:
    samples = QueueSamples(store, interval_seconds=10, window_seconds=30)
    for step in range(5):
        samples.take(now=T0 + 10 * step)
    assert [sample.at for sample in samples.recent()] == [T0 + 20, T0 + 30, T0 + 40]
    samples.take_if_due(now=T0 + 45)
    assert samples.last_at() == T0 + 40
    samples.take_if_due(now=T0 + 50)
    assert samples.last_at() == T0 + 50


def test_the_sample_pass_names_work_no_live_worker_can_run(store: Store) -> None:
    store.submit_tasks([_mutation("a")], now=T0)
    samples = QueueSamples(store)
    samples.take(now=T0 + 1)
    [work] = samples.unservable
    assert (work.requirement.task_type, work.count) == ("evolution_mutation", 1)
    assert "evolution_mutation" in work.reason
