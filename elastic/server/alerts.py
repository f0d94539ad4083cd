"""Alerts: what is worth telling a person, queued in the database's outbox.

``Alerts`` turns events into rows of ``alert_outbox`` (one per webhook URL, one for the
email addresses) where the server sees them: a result that fails a task for good (as a
``TaskListener``), an expiry pass that declares workers dead or fails tasks, a provider
paused through its budget, and the queue checked for stalls. Queuing is one small
insert and never raises: an alert lost to a database error is logged, the request it
rides on still succeeds. ``elastic.server.alert_sender`` sends the rows.

Events (``config.ALERT_EVENTS``): ``task.failed`` (also a task held for a person),
``worker.dead``, ``queue.stalled``
(work waiting that no online worker can run for ``unservable_grace_seconds``, or work
pending while no task started or ended for ``alert_stall_seconds``) and
``provider.paused``. The same event about the same subject is not queued again within
``alert_repeat_seconds``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from elastic.config import Config
from elastic.store import ExpiryReport, NewAlert, Store
from elastic.tasks import Lease, Task, TaskStatus, iso

log = logging.getLogger("elastic.alerts")

WEBHOOK, EMAIL = "webhook", "email"
NO_PROGRESS = "no progress"  # the subject of the queue.stalled alert for a queue standing still


class Alerts:
    """Queue alerts for the configured channels; a ``TaskListener`` of the API routes."""

    def __init__(self, store: Store, config: Config, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.unservable_since: dict[str, float] = {}

    @property
    def is_enabled(self) -> bool:
        """Whether any channel is configured (else nothing is ever queued)."""
        return bool(self.config.alert_webhook_urls or self.config.alert_emails)

    def notify(self, event: str, subject: str, text: str, *, now: float | None = None) -> int:
        """Queue ``text`` about ``subject`` for every channel, if ``event`` is wanted;
        returns how many rows were queued (0 for a repeat within alert_repeat_seconds)."""
        if not self.is_enabled or event not in self.config.alert_events:
            return 0
        line = f"elastic {event}: {text}"
        alerts = [NewAlert(event=event, subject=subject[:200], channel=WEBHOOK, target=url,
                           text=line) for url in self.config.alert_webhook_urls]
        if self.config.alert_emails:
            alerts.append(NewAlert(event=event, subject=subject[:200], channel=EMAIL,
                                   target=", ".join(self.config.alert_emails), text=line))
        try:
            return self.store.enqueue_alerts(alerts, repeat_seconds=self.config.alert_repeat_seconds,
                                             now=now)
        except Exception:  # an alert must never fail the request or loop it rides on
            log.exception("could not queue the %s alert about %s", event, subject)
            return 0

    def task_started(self, lease: Lease) -> None:
        """Nothing to tell when a task starts."""

    def task_ended(self, task: Task) -> None:
        """A result that failed a task for good (its retries used up), or held it for a
        person (a retry cannot fix it), is an alert."""
        if task.status is TaskStatus.FAILED:
            self.notify("task.failed", task.task_id, f"task {task.task_id} ({task.type}) failed "
                        f"after {task.attempts} attempt(s): {task.error}")
        elif task.status is TaskStatus.HELD:
            self._held(task.task_id, f"{task.held_reason}: {task.error}")

    def _held(self, task_id: str, why: str) -> None:
        self.notify("task.failed", task_id, f"task {task_id} held ({why}); fix the cause, then "
                    f"elastic release {task_id}")

    def expiry_ended(self, report: ExpiryReport) -> None:
        """Workers an expiry pass declared dead, and tasks it failed (time limit, lease)."""
        for worker_id in report.workers_dead:
            self.notify("worker.dead", worker_id,
                        f"worker {worker_id} stopped heartbeating; its tasks went back to the queue")
        for task_id in report.tasks_failed:
            self.notify("task.failed", task_id, f"task {task_id} failed: its retries are used up "
                        f"(elastic task {task_id})")
        for task_id in report.tasks_held:
            self._held(task_id, "worker_deaths: its attempts killed workers")

    def provider_paused(self, provider: str, key_id: str, until: float) -> None:
        """A provider budget was rested (a 429, an exhausted daily quota)."""
        key = f" (key {key_id})" if key_id else ""
        self.notify("provider.paused", f"{provider}/{key_id}",
                    f"provider {provider}{key} paused until {iso(until)}: its LLM tasks wait")

    def check_queue(self, *, now: float | None = None) -> None:
        """Alert on a stalled queue: work no online worker can run (for longer than
        unservable_grace_seconds), or pending work and no task started or ended for
        alert_stall_seconds."""
        if not self.is_enabled or "queue.stalled" not in self.config.alert_events:
            return
        now = self.clock() if now is None else now
        waiting = {work.reason: work.count for work in self.store.unservable_work()}
        self.unservable_since = {reason: self.unservable_since.get(reason, now)
                                 for reason in waiting}
        for reason, count in waiting.items():
            if now - self.unservable_since[reason] >= self.config.unservable_grace_seconds:
                self.notify("queue.stalled", reason, f"{count} task(s) wait that no online worker "
                            f"can run: {reason}", now=now)
        self._check_progress(now)

    def _check_progress(self, now: float) -> None:
        counts = self.store.queue_metrics()
        pending = sum(counts.pending_by_priority.values())
        if not pending or counts.oldest_pending_created_at is None:
            return
        last = max(counts.oldest_pending_created_at, self.store.last_task_activity_at() or 0.0)
        if now - last >= self.config.alert_stall_seconds:
            self.notify("queue.stalled", NO_PROGRESS, f"{pending} task(s) pending and no task "
                        f"started or ended since {iso(last)}", now=now)
