"""The seed-004 monitoring views (/stats, /tasks, /workers): thin routes over the Store.

``/tasks`` and ``/workers`` are top-level JSON arrays (the seed's jq examples rely on
it); the words are the seed's, translated by ``elastic.seed004``.
"""

from __future__ import annotations

from typing import Any

import bottle

from elastic import seed004
from elastic.store import Store
from elastic.web import QueryInteger

TASK_VIEW_LIMIT = QueryInteger("limit", default=10_000, minimum=1, maximum=1_000_000,
                               description="how many")


def add_routes(app: bottle.Bottle, store: Store) -> None:
    """Attach the seed-004 routes to ``app``."""

    @app.get("/stats")
    def stats() -> dict[str, Any]:
        return seed004.stats_summary(store)

    @app.get("/tasks")
    def tasks() -> list[dict[str, Any]]:
        return [seed004.task_view(task) for task in store.list_tasks(limit=TASK_VIEW_LIMIT.read())]

    @app.get("/workers")
    def workers() -> list[dict[str, Any]]:
        return [seed004.worker_view(worker) for worker in store.list_workers()]
