"""The worker loop stepped by hand against an in-process orchestrator over real HTTP.

Worker behaviour that a separate process adds nothing to (leasing, reporting, heartbeats,
cancel, hand-back) is tested here: fast, and a failure shows the loop's own traceback.
Signals and kill -9 stay in the process tests (test_end_to_end.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from conftest import wait_until

from elastic.executors import ExecutionContext
from elastic.tasks import NewTask, TaskStatus

MUTATION = {"genome": {"param1": 0.5}, "mutation_rate": 0.1, "seed": 3}


class UntilCancelled:
    """An executor that runs until its task is cancelled, saying when it has started."""

    name = "evolution_mutation"

    def __init__(self) -> None:
        self.started = threading.Event()

    def validate(self, data: Mapping[str, Any]) -> Mapping[str, Any]:
        """Anything goes."""
        return data

    def run(self, params: Mapping[str, Any], context: ExecutionContext) -> dict[str, Any]:
        """Report progress until the task is cancelled (raises TaskCancelled)."""
        self.started.set()
        while True:
            context.report_progress(0.5)
            context.cancelled.wait(0.01)


def test_a_stepped_worker_leases_runs_and_reports_one_task(
        start_orchestrator: Callable[..., Any], make_worker_loop: Callable[..., Any]) -> None:
    orchestrator = start_orchestrator()
    orchestrator.store.submit_tasks([NewTask(task_id="m1", type="evolution_mutation",
                                             data=MUTATION)])
    loop = make_worker_loop(orchestrator.url)
    loop.register()
    assert loop.run_once() is True
    task = orchestrator.store.get_task("m1")
    assert task.status is TaskStatus.COMPLETED
    assert set(task.result["genome"]) == {"param1"}
    assert loop.run_once() is False


def test_a_cancel_reaches_the_running_task_at_the_next_heartbeat(
        start_orchestrator: Callable[..., Any], make_worker_loop: Callable[..., Any]) -> None:
    orchestrator = start_orchestrator()
    orchestrator.store.submit_tasks([NewTask(task_id="c1", type="evolution_mutation",
                                             data=MUTATION)])
    executor = UntilCancelled()
    loop = make_worker_loop(orchestrator.url, executors={"evolution_mutation": executor})
    loop.register()
    runner = threading.Thread(target=loop.run_once)
    runner.start()
    assert executor.started.wait(10)
    orchestrator.store.cancel_task("c1")
    assert loop.send_heartbeat() == ["c1"]
    runner.join(10)
    assert not runner.is_alive()
    assert orchestrator.store.get_task("c1").status is TaskStatus.CANCELLED
    assert loop.running == {}


def test_a_stopping_worker_hands_its_task_back_uncounted(
        start_orchestrator: Callable[..., Any], make_worker_loop: Callable[..., Any]) -> None:
    orchestrator = start_orchestrator()
    orchestrator.store.submit_tasks([NewTask(task_id="h1", type="evolution_mutation",
                                             data=MUTATION)])
    executor = UntilCancelled()
    loop = make_worker_loop(orchestrator.url, executors={"evolution_mutation": executor})
    worker = threading.Thread(target=loop.run)
    worker.start()
    assert executor.started.wait(10)
    loop.stop()
    worker.join(15)
    assert not worker.is_alive()
    task = wait_until(lambda: (t := orchestrator.store.get_task("h1")).status
                      is TaskStatus.PENDING and t, message="the task back in the queue")
    assert (task.attempts, task.failures) == (0, 0)
    assert [a.outcome for a in orchestrator.store.task_attempts("h1")] == ["handed_back"]


def count_heartbeats(loop: Any) -> list[float]:
    """Record when each heartbeat the loop's own thread sends goes out (monotonic seconds)."""
    sent: list[float] = []
    original = loop.send_heartbeat

    def send() -> list[str]:
        sent.append(time.monotonic())
        return original()

    loop.send_heartbeat = send
    return sent


def test_a_cancel_reaches_a_task_started_while_the_idle_heartbeat_slept_within_a_second(
        start_orchestrator: Callable[..., Any], make_worker_loop: Callable[..., Any]) -> None:
    orchestrator = start_orchestrator()
    executor = UntilCancelled()
    loop = make_worker_loop(orchestrator.url, executors={"evolution_mutation": executor},
                            heartbeat_interval_seconds=30.0)
    sent = count_heartbeats(loop)
    worker = threading.Thread(target=loop.run)
    worker.start()
    wait_until(lambda: sent, message="the first heartbeat (then it sleeps 30 s while idle)")
    orchestrator.store.submit_tasks([NewTask(task_id="late", type="evolution_mutation",
                                             data=MUTATION)])
    assert executor.started.wait(10)
    cancelled_at = time.monotonic()
    orchestrator.store.cancel_task("late")
    wait_until(lambda: not loop.running, timeout=10, interval=0.01,
               message="the worker to stop the cancelled task")
    # One busy heartbeat (0.5 s) on an idle machine; the bound leaves room for a loaded one
    # and still fails if the heartbeat slept its 30 s idle interval.
    assert time.monotonic() - cancelled_at < 5.0
    loop.stop()
    worker.join(10)


class BigCheckpoint:
    """An executor that saves a checkpoint too big for the server's body limit, then ends."""

    name = "evolution_mutation"

    def validate(self, data: Mapping[str, Any]) -> Mapping[str, Any]:
        """Anything goes."""
        return data

    def run(self, params: Mapping[str, Any], context: ExecutionContext) -> dict[str, Any]:
        """Checkpoint twice (the second is not even sent), then succeed."""
        for _ in range(2):
            context.save_checkpoint({"state": "x" * 4096})
        return {"genome": {"param1": 0.5}}


def test_a_refused_checkpoint_is_reported_with_its_reason_and_the_task_still_completes(
        start_orchestrator: Callable[..., Any], make_worker_loop: Callable[..., Any],
        caplog: Any) -> None:
    orchestrator = start_orchestrator(max_body_bytes=1024)
    orchestrator.store.submit_tasks([NewTask(task_id="big", type="evolution_mutation",
                                             data=MUTATION)])
    loop = make_worker_loop(orchestrator.url, executors={"evolution_mutation": BigCheckpoint()})
    loop.register()
    assert loop.run_once() is True
    task = orchestrator.store.get_task("big")
    assert (task.status, task.attempts) == (TaskStatus.COMPLETED, 1)
    assert "over the limit of 1024 bytes" in task.result["checkpoint_error"]
    assert task.checkpoint is None
    assert [record.message for record in caplog.records
            if "checkpoint" in record.message and "big" in record.message]
