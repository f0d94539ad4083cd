"""The dashboard's live charts: a ring of queue samples over the last hour, kept in memory.

Every ``SAMPLE_SECONDS`` the orchestrator counts the queue (pending, running) and the
tasks that ended since the previous sample (how many, their mean run time and their
mean time from submit to end). Each sample costs one grouped count over the queue
index and one range scan of the finished-at index; the ring holds at most an hour of
them, so the chart's answer stays small. A restarted orchestrator starts a new ring
(the charts are for watching, results/ is the record).

The same pass finds the pending work no live worker can run (``Store.unservable_work``):
it groups every pending task, too slow to repeat on each of the page's polls with
hundreds of thousands waiting, so the page shows the last pass's answer and its time.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from elastic.store import Store, UnservableWork
from elastic.tasks import TaskStatus

SAMPLE_SECONDS = 10.0
WINDOW_SECONDS = 3600.0


@dataclass(frozen=True)
class Sample:
    """The queue at ``at`` and what ended in the ``span_seconds`` before it."""

    at: float
    span_seconds: float
    pending: int
    running: int
    completed: int
    failed: int
    mean_run_seconds: float | None
    mean_latency_seconds: float | None

    def as_json(self) -> dict[str, Any]:
        """The sample's fields, plus the tasks ended per minute over its span."""
        per_minute = 60.0 * (self.completed + self.failed) / self.span_seconds
        return {**asdict(self), "ended_per_minute": per_minute}


class QueueSamples:
    """The last ``window_seconds`` of samples, one per ``interval_seconds`` (thread-safe)."""

    def __init__(self, store: Store, *, interval_seconds: float = SAMPLE_SECONDS,
                 window_seconds: float = WINDOW_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.interval_seconds = interval_seconds
        self.clock = clock
        self._ring: deque[Sample] = deque(maxlen=max(1, int(window_seconds // interval_seconds)))
        self._lock = threading.Lock()
        self.unservable: list[UnservableWork] = []

    def take(self, now: float | None = None) -> Sample:
        """Count the queue now and what ended since the previous sample, keep it, and
        find the work no live worker can run."""
        now = self.clock() if now is None else now
        with self._lock:
            since = self._ring[-1].at if self._ring else now - self.interval_seconds
            counts = {TaskStatus.PENDING: 0, TaskStatus.ASSIGNED: 0}
            for count in self.store.count_queue_by_priority():
                counts[count.status] = counts.get(count.status, 0) + count.count
            ended = self.store.summarize_finished(since=since, until=now)
            self.unservable = self.store.unservable_work()
            sample = Sample(at=now, span_seconds=max(now - since, 1e-3),
                            pending=counts[TaskStatus.PENDING],
                            running=counts[TaskStatus.ASSIGNED],
                            completed=ended.completed, failed=ended.failed,
                            mean_run_seconds=ended.mean_run_seconds,
                            mean_latency_seconds=ended.mean_latency_seconds)
            self._ring.append(sample)
            return sample

    def take_if_due(self, now: float | None = None) -> None:
        """Take a sample unless the last one is younger than the interval (a page asking
        before the background loop ran still gets a point to draw)."""
        now = self.clock() if now is None else now
        last = self.last_at()
        if last is None or now - last >= self.interval_seconds:
            self.take(now)

    def last_at(self) -> float | None:
        """When the last sample (and unservable check) was taken; None before the first."""
        with self._lock:
            return self._ring[-1].at if self._ring else None

    def recent(self) -> list[Sample]:
        """The samples kept, oldest first."""
        with self._lock:
            return list(self._ring)
