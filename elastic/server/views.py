"""The seed-004 monitoring views (/stats, /tasks, /workers), in that document's words.

``/tasks`` and ``/workers`` are top-level JSON arrays (the seed's jq examples rely on
it); a task back in the queue after a failed attempt reads ``redistributed``; a live
worker reads ``active``, any other ``inactive``. This module is the only place that
translates to those words.
"""

from __future__ import annotations

from typing import Any

import bottle

from elastic import results
from elastic.store import Store
from elastic.tasks import Task, Worker, iso, priority_word
from elastic.web import QueryInteger

TASK_VIEW_LIMIT = QueryInteger("limit", default=10_000, minimum=1, maximum=1_000_000,
                               description="how many")


def add_routes(app: bottle.Bottle, store: Store) -> None:
    """Attach the seed-004 routes to ``app``."""

    @app.get("/stats")
    def stats() -> dict[str, Any]:
        return results.stats_summary(store)

    @app.get("/tasks")
    def tasks() -> list[dict[str, Any]]:
        limit = TASK_VIEW_LIMIT.read()
        return [task_view(task) for task in store.list_tasks(limit=limit)]

    @app.get("/workers")
    def workers() -> list[dict[str, Any]]:
        return [worker_view(worker) for worker in store.list_workers()]


def task_status_word(task: Task) -> str:
    """The seed-004 status word of a task."""
    return "redistributed" if task.is_redistributed else task.status.value


def task_view(task: Task) -> dict[str, Any]:
    """A task as the seed-004 monitoring views show it."""
    return {
        "task_id": task.task_id, "type": task.type, "status": task_status_word(task),
        "algorithm": task.data.get("algorithm"), "parameters": task.data.get("parameters"),
        "priority": priority_word(task.priority), "priority_value": task.priority,
        "description": task.description, "worker_id": task.worker_id,
        "attempts": task.attempts, "progress": task.progress, "error": task.error,
        "created_at": iso(task.created_at), "completed_at": iso(task.finished_at),
        "execution_time": task.execution_time_s, "result": task.result,
    }


def worker_view(worker: Worker) -> dict[str, Any]:
    """A worker as the seed-004 monitoring views show it."""
    return {
        "id": worker.worker_id, "worker_id": worker.worker_id, "type": worker.worker_type,
        "status": "active" if worker.is_live else "inactive",
        "state": worker.status.value, "capacity": worker.capacity,
        "active_tasks": worker.active_tasks, "algorithms": worker.algorithms,
        "tasks_completed": worker.tasks_completed, "tasks_failed": worker.tasks_failed,
        "success_rate": worker.success_rate, "last_heartbeat": iso(worker.last_heartbeat_at),
    }
