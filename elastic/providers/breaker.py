"""A circuit breaker for one LLM backend: stop sending it work while it is down.

- **closed**: calls go through. ``failure_threshold`` calls in a row that got no answer
  at all (``Unreachable``: nothing listens, the network is down, a timeout) open it;
  any answer resets the count, an error answer too (a busy Ollama's 503 is alive).
- **open**: no call goes through; the worker leases no LLM task (it keeps taking the
  others) and a task caught by the opening is handed back, not failed. A health probe
  (the provider's cheapest call: its list of models) is due ``probe_seconds`` later.
  A probe answered with any error but "unavailable" (a refused key) counts as up.
- **half_open**: a probe is running. It closes the breaker when it is answered, or
  opens it again with twice the wait (up to ``MAX_PROBE_SECONDS``).

The state is JSON-ready (``snapshot``) for the worker's heartbeat, so ``elastic
status`` and the dashboard show a dead backend. It knows no provider or SDK: callers
pass the error messages and a probe. Thread-safe; the clock is a parameter.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from elastic.tasks import iso

log = logging.getLogger("elastic.providers.breaker")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
DEFAULT_FAILURE_THRESHOLD = 3
DEFAULT_PROBE_SECONDS = 5.0
MAX_PROBE_SECONDS = 60.0


class CircuitBreaker:
    """Whether one provider's backend is up, from its recent answers and health probes.

    Args:
        name: the provider's name, for messages.
        failure_threshold: calls in a row without an answer that open the breaker.
        probe_seconds: the wait before the first probe once open (it doubles after
            each failed probe, up to ``MAX_PROBE_SECONDS``).
        on_change: called (without arguments) after every change of state.
        clock: seconds since the epoch.
    """

    def __init__(self, name: str, *, failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
                 probe_seconds: float = DEFAULT_PROBE_SECONDS,
                 on_change: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.probe_seconds = probe_seconds
        self.on_change = on_change
        self.clock = clock
        self.state = CLOSED
        self.since: float | None = None
        self.error: str | None = None
        self.next_probe_at: float | None = None
        self._failures = 0
        self._probe_delay = probe_seconds
        self._lock = threading.Lock()

    @property
    def is_closed(self) -> bool:
        """Whether calls go through."""
        return self.state == CLOSED

    def down_message(self) -> str:
        """Why no call goes through, for a handed-back task."""
        return (f"{self.name} is down ({self.error}); the task goes back to the queue for "
                "a worker whose backend answers")

    def record_success(self) -> None:
        """An answer came back: the backend is up."""
        with self._lock:
            self._failures = 0
            changed = self.state != CLOSED
            if changed:
                self._close()
        if changed:
            self.on_change()

    def record_failure(self, error: str) -> None:
        """A call failed because the backend did not answer (``error`` says how); enough
        in a row open the breaker."""
        with self._lock:
            self._failures += 1
            opening = self.state == CLOSED and self._failures >= self.failure_threshold
            if opening:
                self._open(error, why=f"{self._failures} calls failed in a row")
        if opening:
            self.on_change()

    def seconds_until_probe(self, now: float | None = None) -> float | None:
        """How long until a probe is due (0: now), or None while closed or probing."""
        if self.state != OPEN or self.next_probe_at is None:
            return None
        return max(0.0, self.next_probe_at - (self.clock() if now is None else now))

    def is_ready(self, probe: Callable[[], str | None]) -> bool:
        """Whether calls go through now, running ``probe`` first when one is due.

        ``probe`` returns None when the backend answered, else why it did not. Only one
        caller probes at a time; the others get False meanwhile.
        """
        with self._lock:
            if self.state != OPEN or self.clock() < (self.next_probe_at or 0.0):
                return self.state == CLOSED
            self.state = HALF_OPEN
        self.on_change()
        self.check(probe)
        return self.is_closed

    def check(self, probe: Callable[[], str | None]) -> None:
        """Run ``probe`` now and take its outcome: closed if answered, else open."""
        error = probe()
        if error is None:
            self.record_success()
            return
        with self._lock:
            self._open(error, why="the health check failed")
        self.on_change()

    def snapshot(self) -> dict[str, Any]:
        """The state for heartbeats: ``{"state": "closed"}``, or with ``since``, ``error``
        and ``next_probe_at`` (ISO times) while the backend is down."""
        if self.state == CLOSED:
            return {"state": CLOSED}
        return {"state": self.state, "since": iso(self.since), "error": self.error,
                "next_probe_at": iso(self.next_probe_at)}

    def _open(self, error: str, *, why: str) -> None:
        now = self.clock()
        if self.state == CLOSED:
            self.since, self._probe_delay = now, self.probe_seconds
        else:
            self._probe_delay = min(self._probe_delay * 2, MAX_PROBE_SECONDS)
        self.state, self.error = OPEN, error
        self.next_probe_at = now + self._probe_delay
        log.warning("%s is down (%s: %s): no LLM task is leased until it answers; "
                    "checking again in %.0f s", self.name, why, error, self._probe_delay)

    def _close(self) -> None:
        log.info("%s answers again: LLM tasks are leased again", self.name)
        self.state, self.since, self.error, self.next_probe_at = CLOSED, None, None, None
