"""A worker's own small HTTP server (seed 004): /health, /status, /history, and /metrics in
Prometheus text format (prometheus-client; a registry per app, never the global one)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import bottle
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

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

    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerCollector(worker))

    @app.get("/metrics")
    def metrics() -> bytes:
        bottle.response.content_type = CONTENT_TYPE_LATEST
        return generate_latest(registry)

    return app


class WorkerCollector(Collector):
    """This worker's counts, read from its loop at scrape time (Prometheus text)."""

    def __init__(self, worker: WorkerLoop) -> None:
        self.worker = worker

    def collect(self) -> Iterator[Metric]:
        """The worker's series, labelled with its id and type."""
        labels = ["worker_id", "worker_type"]
        values = [self.worker.settings.worker_id, self.worker.settings.worker_type]
        results = CounterMetricFamily("elastic_worker_results", "Results this worker reported, "
                                      "by outcome (refused: the server turned it away)",
                                      labels=[*labels, "outcome"])
        for outcome in ("completed", "failed", "refused"):
            results.add_metric([*values, outcome], self.worker.counts[outcome])
        yield results
        running = GaugeMetricFamily("elastic_worker_running_tasks", "Tasks running now",
                                    labels=labels)
        running.add_metric(values, len(self.worker.running))
        yield running
        capacity = GaugeMetricFamily("elastic_worker_capacity", "Tasks it runs at once",
                                     labels=labels)
        capacity.add_metric(values, self.worker.settings.capacity)
        yield capacity
        times = [entry["execution_time"] for entry in self.worker.history]
        recent = GaugeMetricFamily("elastic_worker_recent_task_duration_seconds",
                                   "Mean run time of the tasks in its recent history "
                                   "(/history; 0: none yet)", labels=labels)
        recent.add_metric(values, sum(times) / len(times) if times else 0.0)
        yield recent


def start_status_server(worker: WorkerLoop, *, host: str, port: int,
                        token: str | None) -> Any:
    """Serve the worker's status endpoints from a daemon thread; returns the server."""
    server = listen(make_status_app(worker, token=token), host=host, port=port, threads=2)
    threading.Thread(target=server.run, name="status-server", daemon=True).start()
    return server
