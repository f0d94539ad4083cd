"""The web dashboard: its static page at ``/`` and ``/dashboard``, and the read-only JSON it polls.

The page (``elastic/server/static/``: plain HTML, JavaScript and CSS, no build step, no
CDN) is served without the token, since it holds no data: it asks for the token, keeps
it in sessionStorage and sends it as ``Authorization: Bearer`` on every API call, the
state-changing ones included (``elastic.web`` also refuses those from another site's
page). Every list here is bounded and read through an index, so the page stays fast
with a million stored tasks; task lists and pages come from ``/api/tasks`` and
``/api/tasks/status/<id>``, budgets from ``/api/providers``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import bottle

from elastic.server.api import task_summary, unservable_payload, worker_payload
from elastic.server.samples import QueueSamples
from elastic.store import Store
from elastic.tasks import Task, TaskStatus, Worker, iso
from elastic.web import QueryInteger

STATIC_FOLDER = Path(__file__).parent / "static"
PAGE_PATHS = ("/", "/dashboard")
# The page runs only its own script, talks only to this server, and cannot be framed by
# another site (whose page could trick a click on cancel or retry).
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                           "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
                           "base-uri 'none'; form-action 'none'")
MAX_RUNNING_SHOWN = 1000  # running tasks listed under their workers (a few per worker)
FAILURES_LIMIT = QueryInteger("limit", default=20, minimum=1, maximum=200,
                              description="how many of the latest failed or held tasks")


def add_routes(app: bottle.Bottle, store: Store, samples: QueueSamples) -> None:
    """Attach the dashboard's page, its files and its ``/api/dashboard/...`` routes."""

    def page() -> bottle.HTTPResponse:
        return static_response("index.html")

    for path in PAGE_PATHS:
        app.route(path, "GET", page, open=True)

    @app.get("/dashboard/static/<name>", open=True)
    def static(name: str) -> bottle.HTTPResponse:
        return static_response(name)

    @app.get("/api/dashboard/queue")
    def queue() -> dict[str, Any]:
        samples.take_if_due()
        counts = store.count_queue_by_priority()
        by_status = {status.value: sum(c.count for c in counts if c.status is status)
                     for status in TaskStatus}
        oldest = store.oldest_pending_created_at()
        return {"by_status": {**by_status, "total": sum(by_status.values())},
                "by_priority": [{"status": c.status.value, "priority": c.priority, "count": c.count}
                                for c in counts],
                "oldest_pending_age_seconds": None if oldest is None else time.time() - oldest,
                "unservable": [unservable_payload(work) for work in samples.unservable],
                "unservable_checked_at": iso(samples.last_at())}

    @app.get("/api/dashboard/workers")
    def workers() -> dict[str, Any]:
        running = store.list_tasks(statuses=[TaskStatus.ASSIGNED], limit=MAX_RUNNING_SHOWN)
        return {"workers": [worker_view(worker, running) for worker in store.list_workers()]}

    @app.get("/api/dashboard/series")
    def series() -> dict[str, Any]:
        samples.take_if_due()
        return {"interval_seconds": samples.interval_seconds,
                "samples": [sample.as_json() for sample in samples.recent()]}

    @app.get("/api/dashboard/failures")
    def failures() -> dict[str, Any]:
        failed = store.list_tasks(statuses=[TaskStatus.FAILED, TaskStatus.HELD],
                                  limit=FAILURES_LIMIT.read(), newest_first=True)
        return {"failures": [failure_view(task, store) for task in failed]}


def static_response(name: str) -> bottle.HTTPResponse:
    """A file of the dashboard, never cached stale (an upgrade shows at once), under the
    page's content security policy."""
    answer = bottle.static_file(name, root=str(STATIC_FOLDER))
    answer.set_header("Cache-Control", "no-cache")
    answer.set_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    answer.set_header("X-Content-Type-Options", "nosniff")
    return answer


def worker_view(worker: Worker, running: list[Task]) -> dict[str, Any]:
    """A worker as the dashboard shows it: what it offers and the tasks it runs now."""
    return {**worker_payload(worker), "algorithms": worker.algorithms, "models": worker.models,
            "running": [{"task_id": task.task_id, "type": task.type, "progress": task.progress,
                         "started_at": iso(task.started_at)}
                        for task in running if task.worker_id == worker.worker_id]}


def failure_view(task: Task, store: Store) -> dict[str, Any]:
    """A failed (or held) task with the error and outcome of each of its attempts."""
    attempts = [{"attempt": a.attempt, "worker_id": a.worker_id, "outcome": a.outcome,
                 "error": a.error, "ended_at": iso(a.ended_at)}
                for a in store.task_attempts(task.task_id)]
    return {**task_summary(task), "history": attempts}
