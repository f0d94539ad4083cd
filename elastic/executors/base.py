"""The executor protocol: how a worker runs one task type.

An executor validates a task's ``data`` (raising ``InvalidTask`` that names the
field) and runs it, reporting progress through an ``ExecutionContext``. It knows
nothing of HTTP, the database or which worker it runs in.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from elastic.errors import TaskCancelled


@dataclass(kw_only=True)
class ExecutionContext:
    """What a running task may use: progress, checkpoints, cancellation, an LLM provider.

    ``report_progress`` and ``save_checkpoint`` are cheap to call often; the worker
    batches what they record into its heartbeats. Both raise ``TaskCancelled`` once
    the task has been cancelled, so a long loop stops at its next report.
    ``time_limit_seconds`` is how long the task may run (None: no limit); an executor
    that can tell beforehand that it would take longer refuses the task.
    """

    task_id: str
    resume_from: dict[str, Any] | None = None
    provider: Any = None
    checkpoint_interval_seconds: float = 30.0
    time_limit_seconds: float | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    on_progress: Callable[[float], None] = lambda fraction: None
    on_checkpoint: Callable[[dict[str, Any]], None] = lambda state: None

    def check_cancelled(self) -> None:
        """Raise ``TaskCancelled`` if the task was cancelled."""
        if self.cancelled.is_set():
            raise TaskCancelled(f"task {self.task_id} was cancelled")

    def report_progress(self, fraction: float) -> None:
        """Record the fraction of the work done (0..1)."""
        self.check_cancelled()
        self.on_progress(min(max(fraction, 0.0), 1.0))

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Record a JSON-ready state from which a later attempt can resume."""
        self.check_cancelled()
        self.on_checkpoint(state)


class Executor(Protocol):
    """Runs one task type."""

    name: str

    def validate(self, data: Mapping[str, Any]) -> Any:
        """Check ``data`` and return the parameters ``run`` takes.

        Raises:
            InvalidTask: naming the field that is wrong.
        """
        ...

    def run(self, params: Any, context: ExecutionContext) -> dict[str, Any]:
        """Do the work and return the result (it always has ``success``)."""
        ...
