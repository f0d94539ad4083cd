"""A batch of tasks and an orchestrator over HTTP: queued, then followed until it has ended.

``ServerQueue`` queues tasks through ``POST /api/tasks/submit`` with the same
``submit_tasks`` as the ``Store`` (so ``elastic ingest`` takes a folder into either),
each file's tasks under its name as their source.

``follow_batch`` is ``elastic submit --wait``. The orchestrator may go away (a
restart, a network blip): the wait goes on, trying again with backoff, and each round
says so. Tasks that no online worker can run (a model nobody offers, a kernel not
built on any worker) get ``grace_seconds`` for such a worker to appear (one may be
starting); then the wait gives up on them, saying why, and follows the rest. Which
tasks those are comes from ``/api/stats``'s ``unservable`` groups, matched to the
batch by ``Requirement`` (the lease rule's one place).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from elastic.errors import ServerUnreachable
from elastic.tasks import NewTask, Requirement, SubmitOutcome
from elastic.transport import Transport, task_status_path

STATUS_IDS_PER_REQUEST = 100
WAKE_UP_SECONDS = 1.0
FIRST_RETRY_SECONDS = 0.5
MAX_RETRY_SECONDS = 10.0


class ServerQueue:
    """The orchestrator's queue, reached over ``transport``."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def submit_tasks(self, new_tasks: Sequence[NewTask], *,
                     replace: bool = False) -> list[SubmitOutcome]:
        """Queue tasks (a file's whole, or not at all) as ``Store.submit_tasks`` does; one
        request per source (file name) the tasks carry."""
        by_source: dict[str | None, list[NewTask]] = {}
        for task in new_tasks:
            by_source.setdefault(task.source, []).append(task)
        outcomes = []
        for source, tasks in by_source.items():
            answer = self.transport.post("/api/tasks/submit", {
                "source": source, "replace": replace,
                "tasks": [task_body(task) for task in tasks]})
            known, changed, replaced = (set(answer.get(name, []))
                                        for name in ("known", "changed", "replaced"))
            outcomes += [SubmitOutcome(task_id, task_id not in known, changed=task_id in changed,
                                       replaced=task_id in replaced)
                         for task_id in answer["task_ids"]]
        return outcomes


def task_body(task: NewTask) -> dict[str, Any]:
    """A task as ``/api/tasks/submit`` takes it."""
    return {"task_id": task.task_id, "type": task.type, "data": task.data,
            "priority": task.priority, "description": task.description,
            "timeout_seconds": task.timeout_seconds}


@dataclass
class BatchState:
    """What is known of a batch after a round.

    ``tasks``: each task's summary (``/api/tasks``, seed-000 words) once read; ``ended``:
    those that ended or are held (settled: they will not move by themselves);
    ``unservable``: pending tasks no online worker can run now, with why; ``given_up``:
    those the wait stopped following; ``unreachable``: why the orchestrator could not be
    asked, while it cannot (``retry_in_seconds`` until the next try).
    """

    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)
    unservable: dict[str, str] = field(default_factory=dict)
    given_up: dict[str, str] = field(default_factory=dict)
    unreachable: str | None = None
    retry_in_seconds: float | None = None

    @property
    def statuses(self) -> dict[str, str]:
        """Each task's status word."""
        return {task_id: task["status"] for task_id, task in self.tasks.items()}

    @property
    def all_completed(self) -> bool:
        """Whether every task of the batch completed."""
        return not self.given_up and set(self.statuses.values()) <= {"completed"}

    def given_up_reasons(self) -> list[tuple[str, list[str]]]:
        """Each reason the wait gave up for, with the tasks it gave up on."""
        grouped: dict[str, list[str]] = {}
        for task_id, reason in self.given_up.items():
            grouped.setdefault(reason, []).append(task_id)
        return list(grouped.items())

    def counts(self) -> Counter[str]:
        """Tasks per status word."""
        return Counter(self.statuses.values())


def follow_batch(transport: Transport, requirements: Mapping[str, Requirement], *,
                 grace_seconds: float, on_round: Callable[[BatchState], None],
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Any] = time.sleep) -> BatchState:
    """Follow the tasks ``requirements`` names until each ended or was given up on.

    Args:
        requirements: each task's id and what a worker needs to run it.
        grace_seconds: how long a task may stay unservable before the wait gives up on it.
        on_round: called after each round (and each failed try) with the state.
    """
    state = BatchState()
    unservable_since: dict[str, float] = {}
    delay = FIRST_RETRY_SECONDS
    while len(state.ended) + len(state.given_up) < len(requirements):
        try:
            read_round(transport, requirements, state)
        except ServerUnreachable as error:
            state.unreachable, state.retry_in_seconds = error.message, delay
            on_round(state)
            sleep(delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)
            continue
        state.unreachable, state.retry_in_seconds, delay = None, None, FIRST_RETRY_SECONDS
        give_up_after_grace(state, unservable_since, now=clock(), grace_seconds=grace_seconds)
        on_round(state)
    return state


def read_round(transport: Transport, requirements: Mapping[str, Requirement],
               state: BatchState) -> None:
    """One round: wait up to a second for a change, then read the open tasks' states."""
    open_ids = [task_id for task_id in requirements
                if task_id not in state.ended and task_id not in state.given_up]
    transport.get(task_status_path(open_ids[0]), params={"wait": WAKE_UP_SECONDS})
    for start in range(0, len(open_ids), STATUS_IDS_PER_REQUEST):
        chunk = open_ids[start:start + STATUS_IDS_PER_REQUEST]
        answer = transport.get("/api/tasks", params={"id": chunk, "limit": len(chunk)})
        for task in answer["tasks"]:
            state.tasks[task["task_id"]] = task
            if task["finished_at"] is not None:  # ended, or held
                state.ended.add(task["task_id"])
    why = {Requirement(task_type=group["type"], algorithm=group["algorithm"],
                       model=group["model"]): group["reason"]
           for group in transport.get("/api/stats").get("unservable", [])}
    statuses = state.statuses
    state.unservable = {task_id: why[need] for task_id, need in requirements.items()
                        if statuses.get(task_id) == "pending" and need in why}


def give_up_after_grace(state: BatchState, unservable_since: dict[str, float], *,
                        now: float, grace_seconds: float) -> None:
    """Give up on the tasks unservable for ``grace_seconds`` in a row."""
    for task_id in list(unservable_since):
        if task_id not in state.unservable:
            del unservable_since[task_id]
    for task_id, reason in state.unservable.items():
        since = unservable_since.setdefault(task_id, now)
        if now - since >= grace_seconds:
            state.given_up[task_id] = reason
