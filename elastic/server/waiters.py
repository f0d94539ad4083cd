"""Long polls that never starve the server: a bounded number of waiting requests.

waitress runs each request on one of ``server_threads`` threads, and a long poll
(``?wait=`` on a worker's poll or a task's status) holds its thread while it waits.
Left unbounded, enough waiting clients take every thread and a healthy worker's
heartbeat waits in line until the worker is declared dead. So at most
``max_long_polls`` requests wait at once (``server_threads - max_long_polls`` threads,
at least 4, are always left to heartbeats, leases and results); a long poll beyond
that is answered at once with the current state and ``retry_after_seconds``, and its
caller asks again after that time (with some jitter).

``LongPolls.wait`` is the one long-poll loop: the seed-000 routes use it, and a wait
over several tasks can too (read the state, and wait for the store's next change
until the read says it is ready or the time is up).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from elastic.store.notify import Notifier

Value = TypeVar("Value")

RETRY_AFTER_SECONDS = 1.0


@dataclass(frozen=True)
class Answer(Generic[Value]):
    """What a long poll answers: the state it read, and whether to ask again later.

    ``retry_after_seconds`` is set when every waiting place was taken, so the request
    was answered without waiting: the caller should ask again after that long.
    """

    value: Value
    retry_after_seconds: float | None = None


class LongPolls:
    """At most ``limit`` requests waiting for the store's changes at once."""

    def __init__(self, changes: Notifier, *, limit: int,
                 retry_after_seconds: float = RETRY_AFTER_SECONDS) -> None:
        self.changes = changes
        self.limit = limit
        self.retry_after_seconds = retry_after_seconds
        self._places = threading.BoundedSemaphore(limit)

    def wait(self, read: Callable[[], Value], is_ready: Callable[[Value], bool],
             wait_seconds: float) -> Answer[Value]:
        """``read()`` now, or again after each change until ``is_ready`` or ``wait_seconds``.

        The first read needs no waiting place; the wait does, and without a free one
        the first read is answered with ``retry_after_seconds``.
        """
        deadline = time.monotonic() + wait_seconds
        seen = self.changes.version
        value = read()
        if is_ready(value) or wait_seconds <= 0:
            return Answer(value)
        if not self._places.acquire(blocking=False):
            return Answer(value, retry_after_seconds=self.retry_after_seconds)
        try:  # a closed notifier (the server stopping) ends every wait now
            while (remaining := deadline - time.monotonic()) > 0 and not self.changes.is_closed:
                self.changes.wait_for_change(seen, remaining)
                seen = self.changes.version
                value = read()
                if is_ready(value):
                    break
            return Answer(value)
        finally:
            self._places.release()
