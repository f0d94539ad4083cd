"""Routes about the fleet of workers as a whole: pruning old rows, the backlog a pool sizes by.

``POST /api/workers/prune`` deletes long-silent offline or dead workers;
``GET /api/queue/servable`` counts the pending tasks a worker with given capabilities
could lease now, which ``elastic worker --processes`` polls to grow its pool.
"""

from __future__ import annotations

from typing import Any

import bottle

from elastic.errors import InvalidInput
from elastic.store import Store
from elastic.web import field_of, read_json

MAX_PRUNE_AGE_SECONDS = 10 * 365 * 86_400.0
MAX_LIST_ITEMS = 100


def add_routes(app: bottle.Bottle, store: Store) -> None:
    """Attach the fleet routes to ``app``."""

    @app.post("/api/workers/prune")
    def prune_workers() -> dict[str, Any]:
        body = read_json()
        older_than = field_of(body, "older_than_seconds", (int, float))
        if not 0 <= older_than <= MAX_PRUNE_AGE_SECONDS:
            raise InvalidInput("field 'older_than_seconds': must be between 0 and "
                               f"{MAX_PRUNE_AGE_SECONDS:g}")
        pruned = store.prune_workers(older_than_seconds=float(older_than))
        return {"pruned": pruned, "total": len(pruned)}

    @app.get("/api/queue/servable")
    def servable_tasks() -> dict[str, Any]:
        types = query_list("types", required=True)
        pending = store.count_servable_tasks(task_types=types,
                                             algorithms=query_list("algorithms"),
                                             models=query_list("models"))
        return {"pending": pending}


def query_list(name: str, *, required: bool = False) -> list[str]:
    """A comma-separated query parameter as a list (repeats dropped).

    Raises:
        InvalidInput: naming the parameter, when required and empty or too long.
    """
    items = list(dict.fromkeys(item for item in bottle.request.query.get(name, "").split(",")
                               if item))
    if required and not items:
        raise InvalidInput(f"query parameter '{name}': give at least one, comma-separated")
    if len(items) > MAX_LIST_ITEMS:
        raise InvalidInput(f"query parameter '{name}': at most {MAX_LIST_ITEMS} items")
    return items
