"""A worker's own small HTTP server (seed 004): /health, /status, /history, /metrics."""

from __future__ import annotations

import threading
from typing import Any

import bottle

from elastic.web import json_app, listen
from elastic.worker.loop import WorkerLoop


def make_status_app(worker: WorkerLoop, *, token: str | None) -> bottle.Bottle:
    """The worker's status endpoints over ``worker``'s live state."""
    app = json_app(token=token, max_body_bytes=1024)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "stopping" if worker.stopping.is_set() else "healthy",
                "worker_id": worker.settings.worker_id}

    @app.get("/status")
    def status() -> dict[str, Any]:
        return worker.status()

    @app.get("/history")
    def history() -> list[dict[str, Any]]:
        return list(worker.history)

    @app.get("/metrics")
    def metrics() -> dict[str, Any]:
        times = [entry["execution_time"] for entry in worker.history]
        return {"tasks_completed": worker.counts["completed"],
                "tasks_failed": worker.counts["failed"],
                "results_refused": worker.counts["refused"],
                "running": len(worker.running),
                "mean_execution_time": sum(times) / len(times) if times else None}

    return app


def start_status_server(worker: WorkerLoop, *, host: str, port: int,
                        token: str | None) -> Any:
    """Serve the worker's status endpoints from a daemon thread; returns the server."""
    server = listen(make_status_app(worker, token=token), host=host, port=port, threads=2)
    threading.Thread(target=server.run, name="status-server", daemon=True).start()
    return server
