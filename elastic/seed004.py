"""The seed-004 shaper: tasks, workers, statistics and results in that document's words.

The seed-004 monitoring views (``/stats``, ``/tasks``, ``/workers``) and the results
files speak the seed's language, which its jq examples rely on: a task back in the
queue after a failed attempt reads ``redistributed``; a live worker reads ``active``
(any other ``inactive``); statistics have a ``tasks_summary``. The seed has no word
for a task held for a person (``elastic release``): it reads ``held`` here too, with
its ``held_reason``; failed-like words would hide that it can still run. This module is
the only place that translates to those words; it shapes records and does no I/O of its own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from elastic.tasks import Task, TaskStatus, Worker, WorkerStatus, finite_json, iso, priority_word

if TYPE_CHECKING:
    from elastic.store import Store

REDISTRIBUTED = "redistributed"


def task_status_word(task: Task) -> str:
    """The seed-004 status word of a task."""
    return REDISTRIBUTED if task.is_redistributed else task.status.value


def worker_status_word(worker: Worker) -> str:
    """The seed-004 status word of a worker: ``active`` while live, else ``inactive``."""
    return "active" if worker.is_live else "inactive"


def task_view(task: Task) -> dict[str, Any]:
    """A task as the seed-004 monitoring views show it."""
    return {
        "task_id": task.task_id, "type": task.type, "status": task_status_word(task),
        "algorithm": task.data.get("algorithm"), "parameters": task.data.get("parameters"),
        "priority": priority_word(task.priority), "priority_value": task.priority,
        "description": task.description, "worker_id": task.worker_id,
        "attempts": task.attempts, "progress": task.progress, "error": task.error,
        "held_reason": task.held_reason,
        "created_at": iso(task.created_at), "completed_at": iso(task.finished_at),
        "execution_time": task.execution_time_s, "result": task.result,
    }


def worker_view(worker: Worker, declared: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A worker as the seed-004 monitoring views show it; ``declared``: its entry in the
    declared fleet (``GET /api/fleet``), if it is declared."""
    view = {
        "id": worker.worker_id, "worker_id": worker.worker_id, "type": worker.worker_type,
        "status": worker_status_word(worker),
        "state": worker.status.value, "capacity": worker.capacity,
        "active_tasks": worker.active_tasks, "algorithms": worker.algorithms,
        "tasks_completed": worker.tasks_completed, "tasks_failed": worker.tasks_failed,
        "success_rate": worker.success_rate, "last_heartbeat": iso(worker.last_heartbeat_at),
    }
    if declared is not None:
        view.update(declared=True, missing=declared["missing"], problem=declared["problem"])
    return view


def declared_worker_view(declared: Mapping[str, Any]) -> dict[str, Any]:
    """A declared worker that never registered, as the seed-004 ``/workers`` view shows it."""
    return {"id": declared["worker_id"], "worker_id": declared["worker_id"], "type": None,
            "status": "inactive", "state": "missing", "capacity": declared["capacity"],
            "active_tasks": 0, "algorithms": declared["algorithms"], "tasks_completed": 0,
            "tasks_failed": 0, "success_rate": None, "last_heartbeat": None,
            "declared": True, "missing": True, "problem": declared["problem"]}


def tasks_summary(counts: Mapping[str, int]) -> dict[str, int]:
    """Task counts in the seed-004 words, from ``Store.count_tasks``'s counts.

    ``pending`` counts only tasks never tried; ``redistributed`` those back in the
    queue after a failed attempt.
    """
    summary = {"total": counts.get("total", 0),
               "pending": counts.get("pending", 0) - counts.get(REDISTRIBUTED, 0),
               REDISTRIBUTED: counts.get(REDISTRIBUTED, 0)}
    return summary | {status.value: counts.get(status.value, 0)
                      for status in TaskStatus if status is not TaskStatus.PENDING}


def stats_summary(store: Store) -> dict[str, Any]:
    """The seed-004 statistics: ``orchestrator_stats``, ``tasks_summary``, ``workers_summary``."""
    counts = store.count_tasks()
    workers = store.list_workers()
    active = sum(worker.is_live for worker in workers)
    return {
        "orchestrator_stats": {
            "total_tasks": counts["total"], "completed_tasks": counts["completed"],
            "failed_tasks": counts["failed"], "pending_tasks": counts["pending"],
            "running_tasks": counts["assigned"], "cancelled_tasks": counts["cancelled"],
            "held_tasks": counts["held"],
            "active_workers": active,
            "total_execution_time": round(store.total_execution_seconds(), 3),
        },
        "tasks_summary": tasks_summary(counts),
        "workers_summary": {
            "total": len(workers), "active": active, "inactive": len(workers) - active,
            "by_status": _workers_by_status(workers),
        },
    }


def _workers_by_status(workers: Sequence[Worker]) -> dict[str, int]:
    counted = Counter(worker.status.value for worker in workers)
    return {status.value: counted[status.value] for status in WorkerStatus}


def task_result_entry(task: Task) -> dict[str, Any]:
    """One entry of ``task_results`` in the seed's format (plus a few useful extras).

    ``parameters`` is a simulation's parameters, or the whole ``data`` of other task
    types; ``result`` is what the worker reported, with the task's ``status`` (and
    ``error``) filled in when the worker did not say.
    """
    result = dict(task.result or {})
    result.setdefault("status", task.status.value)
    if task.error:
        result.setdefault("error", task.error)
    is_simulation = task.type == "simulation"
    return finite_json({
        "task_id": task.task_id, "type": task.type, "status": task.status.value,
        "algorithm": task.data.get("algorithm") if is_simulation else None,
        "parameters": task.data.get("parameters") if is_simulation else task.data,
        "execution_time": _rounded(task.execution_time_s), "result": result,
        "worker_id": task.worker_id, "completed_at": iso(task.finished_at),
        "priority": priority_word(task.priority), "priority_value": task.priority,
        "description": task.description, "source": task.source, "attempts": task.attempts,
        "created_at": iso(task.created_at), "error": task.error,
        "held_reason": task.held_reason,
    })


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def results_document(store: Store, tasks: Sequence[Task], *, now: float) -> dict[str, Any]:
    """The seed-004 results document for ``tasks``: timestamp, stats, task_results."""
    return {
        "timestamp": iso(now),
        "orchestrator_stats": stats_summary(store)["orchestrator_stats"],
        "task_results": [task_result_entry(task) for task in tasks],
    }
