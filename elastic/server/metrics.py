"""``GET /metrics`` of ``elastic serve``: Prometheus text, through prometheus-client.

Two kinds of series. Gauges and counters read from the database at scrape time by
``QueueCollector`` (``Store.queue_metrics``: grouped counts over indexes, never every
row), so every replica on one database shows the same totals. Histograms of task
duration and of the wait from submission to start are fed in this process as workers
report results and lease tasks (``TaskListener``): each replica shows what went
through it, as Prometheus expects of a scraped instance.

Each app has its own ``CollectorRegistry`` (never the library's global one), so
several servers in one process (tests, ``elastic run``) do not collide.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import bottle
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from elastic.server.budgets import ProviderBudgets
from elastic.store import Store
from elastic.tasks import Lease, Task, TaskStatus, WorkerStatus

# Seconds: from a 50 ms LLM call to a day-long simulation.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
                    7200, 21600, 86400)
WINDOWS = ("minute", "day")
UNITS = ("requests", "tokens")


class QueueCollector(Collector):
    """Tasks, queue, attempts, workers and provider budgets, read from the store per scrape."""

    def __init__(self, store: Store, budgets: ProviderBudgets, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.budgets = budgets
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        """Every scrape-time series (prometheus-client calls this on each scrape)."""
        yield from self._task_metrics()
        yield self._worker_metric()
        yield from self._budget_metrics()

    def _task_metrics(self) -> Iterator[Metric]:
        counts = self.store.queue_metrics()
        tasks = GaugeMetricFamily("elastic_tasks", "Tasks by state and type",
                                  labels=["state", "type"])
        for (state, task_type), count in sorted(counts.tasks_by_status_and_type.items()):
            tasks.add_metric([state, task_type], count)
        yield tasks
        depth = GaugeMetricFamily("elastic_queue_depth", "Pending tasks by priority (1..10)",
                                  labels=["priority"])
        for priority, count in sorted(counts.pending_by_priority.items()):
            depth.add_metric([str(priority)], count)
        yield depth
        oldest = counts.oldest_pending_created_at
        yield GaugeMetricFamily("elastic_oldest_pending_task_age_seconds",
                                "Seconds since the oldest pending task was submitted (0: none)",
                                value=0.0 if oldest is None else max(0.0, self.clock() - oldest))
        attempts = CounterMetricFamily("elastic_task_attempts", "Task attempts by how they ended",
                                       labels=["outcome"])
        for outcome, count in sorted(counts.attempts_by_outcome.items()):
            attempts.add_metric([outcome], count)
        yield attempts
        yield CounterMetricFamily("elastic_lease_expiries", "Leases that ran out without a "
                                  "heartbeat (the worker went silent)",
                                  value=counts.attempts_by_outcome.get("expired", 0))
        yield CounterMetricFamily("elastic_task_retries", "Attempts after a task's first one",
                                  value=counts.retried_attempts)

    def _worker_metric(self) -> Metric:
        workers = self.store.list_workers()
        metric = GaugeMetricFamily("elastic_workers", "Registered workers by state",
                                   labels=["state"])
        for state in WorkerStatus:
            metric.add_metric([state.value], sum(w.status is state for w in workers))
        return metric

    def _budget_metrics(self) -> Iterator[Metric]:
        remaining = GaugeMetricFamily(
            "elastic_provider_budget_remaining", "What a provider's shared budget has left in "
            "its window (limited budgets only)", labels=["provider", "key_id", "unit", "window"])
        paused = GaugeMetricFamily("elastic_provider_paused", "1 while a provider budget rests "
                                   "(after a 429 or an exhausted quota)",
                                   labels=["provider", "key_id"])
        for provider, snapshot in self.budgets.snapshots(now=self.clock()).items():
            for key_id, budget in [("", snapshot), *snapshot.get("keys", {}).items()]:
                paused.add_metric([provider, key_id], float(budget["cooldown_until"] is not None))
                _add_remaining(remaining, provider, key_id, budget)
        yield remaining
        yield paused


def _add_remaining(metric: GaugeMetricFamily, provider: str, key_id: str,
                   budget: dict[str, Any]) -> None:
    """One sample per limited unit and window of one budget's snapshot."""
    for unit in UNITS:
        for window in WINDOWS:
            left = budget.get(f"remaining_{unit}_per_{window}")
            if left is not None:
                metric.add_metric([provider, key_id, unit, window], left)


class ServerMetrics:
    """One app's registry: the scrape-time collector and the histograms fed as tasks run."""

    def __init__(self, store: Store, budgets: ProviderBudgets) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(QueueCollector(store, budgets))
        self.duration = Histogram(
            "elastic_task_duration_seconds", "Run time of an attempt that a worker reported, by "
            "type and outcome", ["type", "outcome"], buckets=DURATION_BUCKETS,
            registry=self.registry)
        self.wait = Histogram(
            "elastic_task_submit_to_start_seconds", "Seconds from a task's submission to the "
            "start of each of its attempts, by type", ["type"], buckets=DURATION_BUCKETS,
            registry=self.registry)

    def task_started(self, lease: Lease) -> None:
        """Observe the wait of a task just leased."""
        task = lease.task
        if task.started_at is not None:
            self.wait.labels(task.type).observe(max(0.0, task.started_at - task.created_at))

    def task_ended(self, task: Task) -> None:
        """Observe the run time of an attempt whose result just arrived."""
        if task.started_at is None:
            return
        # A failed attempt that is retried has no finished_at: it ended now.
        ended_at = task.finished_at or time.time()
        outcome = "completed" if task.status is TaskStatus.COMPLETED else "failed"
        self.duration.labels(task.type, outcome).observe(max(0.0, ended_at - task.started_at))

    def render(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)


def add_routes(app: bottle.Bottle, metrics: ServerMetrics) -> None:
    """Attach ``GET /metrics`` (behind the token like every route but /health)."""

    @app.get("/metrics")
    def scrape() -> bytes:
        bottle.response.content_type = CONTENT_TYPE_LATEST
        return metrics.render()
