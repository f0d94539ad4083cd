"""Wake-ups for long polls: a waiter sleeps until the store changes or its time is up."""

from __future__ import annotations

import threading
import time


class Notifier:
    """A version counter and a condition: ``notify`` after a commit, ``wait_for_change`` to sleep.

    Within one server process this wakes long polls at once. Other processes writing
    to the same database are seen by the waiters' periodic re-check (``poll_seconds``).
    """

    def __init__(self, poll_seconds: float = 0.5) -> None:
        self.poll_seconds = poll_seconds
        self._condition = threading.Condition()
        self._version = 0

    @property
    def version(self) -> int:
        """A number that grows on every change."""
        return self._version

    def notify(self) -> None:
        """Wake every waiter."""
        with self._condition:
            self._version += 1
            self._condition.notify_all()

    def wait_for_change(self, seen_version: int, timeout_seconds: float) -> int:
        """Sleep until the version passes ``seen_version``, a poll period, or the timeout."""
        deadline = time.monotonic() + max(timeout_seconds, 0.0)
        with self._condition:
            remaining = deadline - time.monotonic()
            if self._version == seen_version and remaining > 0:
                self._condition.wait(min(remaining, self.poll_seconds))
            return self._version
