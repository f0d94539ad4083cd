"""Wake-ups for long polls: a waiter sleeps until the store changes or its time is up.

``Notifier`` wakes waiters of this process at once; changes written by other
processes are seen at the waiters' periodic re-check (``poll_seconds``).
``PostgresNotifier`` also hears the other processes: every write transaction that
changes what a waiter may be waiting for sends ``NOTIFY`` before it commits
(``announce``), and one dedicated psycopg connection per process ``LISTEN``\\ s for
it, so a worker long-polling on one replica wakes milliseconds after a submit on
another (procrastinate and pgqueuer do the same). While that connection is down the
waiters fall back to re-checking the database every ``poll_seconds``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy.engine import Connection

log = logging.getLogger("elastic.store.notify")

POLL_SECONDS = 0.5
LISTENING_POLL_SECONDS = 5.0
CHANNEL = "elastic_changes"
LISTEN_CONNECT_TIMEOUT_SECONDS = 5
LISTEN_WAKE_SECONDS = 1.0
MAX_RECONNECT_SECONDS = 10.0


class Notifier:
    """A version counter and a condition: ``notify`` after a commit, ``wait_for_change`` to sleep.

    Within one server process this wakes long polls at once. Other processes writing
    to the same database are seen by the waiters' periodic re-check (``poll_seconds``).
    """

    def __init__(self, poll_seconds: float = POLL_SECONDS) -> None:
        self.poll_seconds = poll_seconds
        self._condition = threading.Condition()
        self._version = 0
        self._closed = False

    @property
    def version(self) -> int:
        """A number that grows on every change."""
        return self._version

    @property
    def is_closed(self) -> bool:
        """Whether ``close`` was called: waiting is over for good."""
        return self._closed

    def close(self) -> None:
        """Wake every waiter and let none wait again (the server is stopping, or the store
        closing); a subclass also lets go of what it holds."""
        with self._condition:
            self._closed = True
            self._version += 1
            self._condition.notify_all()

    def notify(self) -> None:
        """Wake every waiter."""
        with self._condition:
            self._version += 1
            self._condition.notify_all()

    def announce(self, connection: Connection) -> None:
        """Tell other processes, from inside the write transaction on ``connection``, that
        it changed something (nothing to do here: they re-check every ``poll_seconds``)."""

    def wait_for_change(self, seen_version: int, timeout_seconds: float) -> int:
        """Sleep until the version passes ``seen_version``, a poll period, or the timeout."""
        deadline = time.monotonic() + max(timeout_seconds, 0.0)
        with self._condition:
            remaining = deadline - time.monotonic()
            if self._version == seen_version and remaining > 0 and not self._closed:
                self._condition.wait(min(remaining, self._poll_period()))
            return self._version

    def _poll_period(self) -> float:
        return self.poll_seconds


class PostgresNotifier(Notifier):
    """A ``Notifier`` that also hears other processes through PostgreSQL LISTEN/NOTIFY.

    The listening connection is opened by the first waiter (a process that never
    long-polls, such as ``elastic ingest``, opens none) and reopened after a failure,
    with a backoff; while it is down, waiters re-check every ``poll_seconds``.

    Args:
        conninfo: a libpq connection string or URL for the dedicated connection.
        listening_poll_seconds: the re-check period while listening (a safety net).
    """

    def __init__(self, conninfo: str, *, poll_seconds: float = POLL_SECONDS,
                 listening_poll_seconds: float = LISTENING_POLL_SECONDS) -> None:
        super().__init__(poll_seconds)
        self.conninfo = conninfo
        self.listening_poll_seconds = listening_poll_seconds
        self._listening = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    @property
    def is_listening(self) -> bool:
        """Whether the LISTEN connection is up (waiters then wake on other processes' changes)."""
        return self._listening.is_set()

    def announce(self, connection: Connection) -> None:
        """``NOTIFY`` in the write transaction: PostgreSQL delivers it once it commits."""
        connection.exec_driver_sql(f"NOTIFY {CHANNEL}")

    def wait_for_change(self, seen_version: int, timeout_seconds: float) -> int:
        """As ``Notifier.wait_for_change``, starting the listener on first use."""
        self.start_listening()
        return super().wait_for_change(seen_version, timeout_seconds)

    def _poll_period(self) -> float:
        return self.listening_poll_seconds if self._listening.is_set() else self.poll_seconds

    def start_listening(self) -> None:
        """Start the listening thread, unless it runs already or the notifier was closed."""
        with self._start_lock:
            if self._thread is not None or self._stopping.is_set():
                return
            self._thread = threading.Thread(target=self._listen_forever, daemon=True,
                                            name="elastic-listen")
            self._thread.start()

    def close(self) -> None:
        """Wake the waiters, stop listening and close the dedicated connection."""
        super().close()
        with self._start_lock:
            self._stopping.set()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=LISTEN_WAKE_SECONDS + LISTEN_CONNECT_TIMEOUT_SECONDS + 1)

    def _listen_forever(self) -> None:
        """Listen; after a failure, wake the waiters (they re-check) and try again later."""
        delay = 0.5
        while not self._stopping.is_set():
            try:
                self._listen_once()
            except Exception as exc:  # any driver or network failure: fall back to polling
                was_listening = self._listening.is_set()
                self._listening.clear()
                if was_listening or delay == 0.5:  # once per outage
                    log.warning("not listening for changes from other processes (%s); "
                                "re-checking every %.1f s until it works again",
                                _first_line(exc), self.poll_seconds)
                delay = 0.5 if was_listening else delay
                self.notify()
                self._stopping.wait(delay)
                delay = min(delay * 2, MAX_RECONNECT_SECONDS)
        self._listening.clear()

    def _listen_once(self) -> None:
        """One dedicated connection's life: LISTEN, then wake waiters at each notification."""
        import psycopg

        with psycopg.connect(self.conninfo, autocommit=True,
                             connect_timeout=LISTEN_CONNECT_TIMEOUT_SECONDS) as connection:
            connection.execute(f"LISTEN {CHANNEL}")
            self.notify()  # what changed before we listened is re-checked now
            self._listening.set()
            while not self._stopping.is_set():
                for _ in connection.notifies(timeout=LISTEN_WAKE_SECONDS):
                    self.notify()


def _first_line(error: Any) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
