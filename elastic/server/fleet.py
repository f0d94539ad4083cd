"""The fleet of workers as a whole: the declared fleet and its health, pruning, the backlog.

Workers may be declared in elastic.toml (``[[workers]]``: id, address of the worker's
``--port``, capacity, kernels or models). ``FleetHealth`` checks each declared worker's
``/health`` every ``HEALTH_CHECK_SECONDS`` (the seed's 5 s) from a loop of the
orchestrator, and ``GET /api/fleet`` shows each declared worker with whether it is
registered and live and whether its status port answers: one that is not both is
``missing`` (``elastic status`` and the ``/workers`` view show those). With
``allow_undeclared_workers = false`` a registration under an undeclared id is refused
(403 naming the id). Health is kept in memory: each replica checks for itself.

``POST /api/workers/prune`` deletes long-silent offline or dead workers;
``GET /api/queue/servable`` counts the pending tasks a worker with given capabilities
could lease now, which ``elastic worker --processes`` polls to grow its pool.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import bottle
import requests

from elastic.config import Config, DeclaredWorker
from elastic.errors import InvalidInput, UndeclaredWorker
from elastic.store import Store
from elastic.tasks import Worker
from elastic.web import field_of, read_json

MAX_PRUNE_AGE_SECONDS = 10 * 365 * 86_400.0
MAX_LIST_CHARACTERS = 2000
HEALTH_CHECK_SECONDS = 5.0  # the seed's interval
HEALTH_TIMEOUT_SECONDS = 2.0
MAX_PARALLEL_CHECKS = 16


@dataclass(frozen=True)
class HealthCheck:
    """The last answer of a declared worker's /health."""

    is_reachable: bool
    checked_at: float
    error: str | None = None


class FleetHealth:
    """The declared workers and the last health check of each."""

    def __init__(self, declared: Sequence[DeclaredWorker], *, token: str | None) -> None:
        self.declared = tuple(declared)
        self.token = token
        self._checks: dict[str, HealthCheck] = {}
        self._lock = threading.Lock()

    def check_all(self) -> None:
        """Ask every declared worker's /health once, in parallel."""
        if not self.declared:
            return
        with ThreadPoolExecutor(min(MAX_PARALLEL_CHECKS, len(self.declared))) as pool:
            checks = list(pool.map(self.check, self.declared))
        with self._lock:
            self._checks.update(zip((w.worker_id for w in self.declared), checks, strict=True))

    def check(self, declared: DeclaredWorker) -> HealthCheck:
        """Ask one declared worker's /health."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            answer = requests.get(f"http://{declared.address}/health", headers=headers,
                                  timeout=HEALTH_TIMEOUT_SECONDS)
        except requests.RequestException as exc:
            return HealthCheck(False, time.time(), f"no answer ({type(exc).__name__})")
        if answer.status_code != 200:
            return HealthCheck(False, time.time(), f"/health answered {answer.status_code}")
        return HealthCheck(True, time.time())

    def view(self, registered: Sequence[Worker]) -> list[dict[str, Any]]:
        """Each declared worker with its registration, its last health check and whether
        it is missing (not live, or its status port not answering)."""
        by_id = {worker.worker_id: worker for worker in registered}
        with self._lock:
            checks = dict(self._checks)
        return [_declared_view(declared, by_id.get(declared.worker_id),
                               checks.get(declared.worker_id)) for declared in self.declared]


def _declared_view(declared: DeclaredWorker, worker: Worker | None,
                   check: HealthCheck | None) -> dict[str, Any]:
    is_live = worker is not None and worker.is_live
    problems = [] if is_live else ["not registered" if worker is None
                                   else f"registered but {worker.status.value}"]
    if check is not None and not check.is_reachable:
        problems.append(f"{declared.address}/health: {check.error}")
    return {"worker_id": declared.worker_id, "address": declared.address,
            "capacity": declared.capacity, "algorithms": list(declared.algorithms),
            "models": list(declared.models),
            "status": None if worker is None else worker.status.value,
            "reachable": None if check is None else check.is_reachable,
            "checked_at": None if check is None else check.checked_at,
            "missing": bool(problems), "problem": "; ".join(problems) or None}


def refuse_undeclared(config: Config, worker_id: str) -> None:
    """Pass unless undeclared workers are refused and ``worker_id`` is not declared.

    Raises:
        UndeclaredWorker: naming the id (403).
    """
    if config.allow_undeclared_workers:
        return
    if worker_id not in {declared.worker_id for declared in config.workers}:
        raise UndeclaredWorker(f"worker id {worker_id!r} is not in the declared fleet "
                               "([[workers]] in the orchestrator's elastic.toml) and "
                               "allow_undeclared_workers is false")


def add_routes(app: bottle.Bottle, store: Store, health: FleetHealth) -> None:
    """Attach the fleet routes to ``app``."""

    @app.get("/api/fleet")
    def fleet() -> dict[str, Any]:
        declared = health.view(store.list_workers())
        return {"workers": declared,
                "missing": [entry["worker_id"] for entry in declared if entry["missing"]]}

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
        InvalidInput: naming the parameter, when required and empty, too long or
            holding a NUL.
    """
    raw = bottle.request.query.get(name, "")
    if len(raw) > MAX_LIST_CHARACTERS or "\x00" in raw:
        raise InvalidInput(f"query parameter '{name}': at most {MAX_LIST_CHARACTERS} "
                           "characters, without NUL")
    items = list(dict.fromkeys(item for item in raw.split(",") if item))
    if required and not items:
        raise InvalidInput(f"query parameter '{name}': give at least one, comma-separated")
    return items
