"""The seed-004 monitoring views (/stats, /tasks, /workers): thin routes over the Store.

``/workers`` also lists the declared fleet's workers that never registered, and marks
each declared one (``declared``, ``missing`` and its ``problem``).

``/tasks`` and ``/workers`` are top-level JSON arrays (the seed's jq examples rely on
it); the words are the seed's, translated by ``elastic.seed004``.
"""

from __future__ import annotations

from typing import Any

import bottle

from elastic import seed004
from elastic.server.fleet import FleetHealth
from elastic.store import Store
from elastic.web import QueryInteger

TASK_VIEW_LIMIT = QueryInteger("limit", default=10_000, minimum=1, maximum=1_000_000,
                               description="how many")


def add_routes(app: bottle.Bottle, store: Store, fleet_health: FleetHealth) -> None:
    """Attach the seed-004 routes to ``app``."""

    @app.get("/stats")
    def stats() -> dict[str, Any]:
        return seed004.stats_summary(store)

    @app.get("/tasks")
    def tasks() -> list[dict[str, Any]]:
        return [seed004.task_view(task) for task in store.list_tasks(limit=TASK_VIEW_LIMIT.read())]

    @app.get("/workers")
    def workers() -> list[dict[str, Any]]:
        found = store.list_workers()
        declared = {entry["worker_id"]: entry for entry in fleet_health.view(found)}
        return ([seed004.worker_view(worker, declared.pop(worker.worker_id, None))
                 for worker in found]
                + [seed004.declared_worker_view(entry) for entry in declared.values()])
