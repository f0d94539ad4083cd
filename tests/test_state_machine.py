"""The task state machine in ``elastic.tasks``: one table, and the store's guards read from it.

``test_store_contract.py`` records every status change its tests make (a database
trigger) and fails on any the table forbids; the tests here check the table's own
rules and that the recording sees what the store does.
"""

from __future__ import annotations

from sqlalchemy.dialects import sqlite
from status_recorder import recorded_transitions, start_recording

from elastic.store import Store
from elastic.store.store import may_become
from elastic.tasks import (
    ALLOWED_TRANSITIONS,
    FINAL_STATUSES,
    RETRYABLE_STATUSES,
    SETTLED_STATUSES,
    NewTask,
    TaskStatus,
    statuses_that_may_become,
)

T0 = 1_000_000.0
MUTATION = {"genome": {"a": 1.0}, "mutation_rate": 0.1}


def test_every_status_has_a_row_in_the_table() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(TaskStatus)


def test_an_ended_task_leaves_its_state_only_when_a_user_puts_a_failed_or_cancelled_one_back(
        ) -> None:
    assert {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED} == FINAL_STATUSES
    assert not ALLOWED_TRANSITIONS[TaskStatus.COMPLETED]
    assert {TaskStatus.FAILED, TaskStatus.CANCELLED} == RETRYABLE_STATUSES
    assert all(ALLOWED_TRANSITIONS[status] == {TaskStatus.PENDING}
               for status in RETRYABLE_STATUSES)


def test_only_a_pending_task_can_be_leased_and_only_a_leased_one_can_complete() -> None:
    assert statuses_that_may_become(TaskStatus.ASSIGNED) == (TaskStatus.PENDING,)
    assert statuses_that_may_become(TaskStatus.COMPLETED) == (TaskStatus.ASSIGNED,)
    assert statuses_that_may_become(TaskStatus.CANCELLED) == (
        TaskStatus.PENDING, TaskStatus.ASSIGNED, TaskStatus.HELD)


def test_a_held_task_waits_for_a_person_it_is_settled_but_not_ended() -> None:
    assert statuses_that_may_become(TaskStatus.HELD) == (TaskStatus.ASSIGNED,)
    assert ALLOWED_TRANSITIONS[TaskStatus.HELD] == {TaskStatus.PENDING, TaskStatus.CANCELLED}
    assert TaskStatus.HELD.is_settled and not TaskStatus.HELD.is_final
    assert FINAL_STATUSES | {TaskStatus.HELD} == SETTLED_STATUSES


def test_the_stores_update_guard_lists_the_tables_sources() -> None:
    guard = may_become(TaskStatus.PENDING).compile(dialect=sqlite.dialect(),
                                                   compile_kwargs={"literal_binds": True})
    assert str(guard) == "tasks.status IN ('assigned', 'held', 'failed', 'cancelled')"


def test_the_recorder_sees_each_status_change_the_store_makes(store: Store) -> None:
    start_recording(store)
    store.submit_tasks([NewTask(task_id=f"t{n}", type="evolution_mutation", data=MUTATION)
                        for n in range(3)], now=T0)
    store.register_worker("w1", worker_type="evolution", capabilities={}, capacity=3, now=T0)
    first, second, _ = store.lease_tasks("w1", limit=3, now=T0)
    store.record_result(first.task.task_id, worker_id="w1", lease_token=first.lease_token,
                        result={"success": True}, now=T0)
    store.release_task(second.task.task_id, worker_id="w1", lease_token=second.lease_token,
                       now=T0)
    store.cancel_task("t2", now=T0)

    assert recorded_transitions(store) == [
        ("pending", "assigned"), ("pending", "assigned"), ("pending", "assigned"),
        ("assigned", "completed"), ("assigned", "pending"), ("assigned", "cancelled")]
