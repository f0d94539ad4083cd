"""Who may speak for a worker: the secret ``register`` hands out, checked on its later calls.

A worker that registers with ``"secret": true`` (``elastic worker`` always does) is
answered a ``worker_secret``; every later call about that worker (heartbeat, poll,
result, checkpoint, release, unregister, budget reserve and settle) must carry it in
the ``X-Worker-Secret`` header, or is refused with 401. The server keeps only its
SHA-256. A worker registered with the seed's plain request (no ``secret``) has none
and its calls need none, as in the seed: anyone who can reach the server may speak for
it, so run such workers only on a trusted network.

A live worker's id is not handed to another registration (409) unless that one
presents the id's current secret in the header: a restarted ``elastic worker``
presents the one it kept on disk and takes its id over at once. Without it, the id is
free once its holder has been silent ``worker_timeout_seconds`` (declared dead).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable

import bottle

from elastic.errors import Unauthorized
from elastic.store import Store
from elastic.transport import WORKER_SECRET_HEADER

# How long a checked secret's hash is trusted without reading the database again. A
# takeover through this server is seen at once; through another replica, within this.
CACHE_SECONDS = 2.0


def issue_secret(*, asked: bool | None) -> tuple[str | None, str | None]:
    """A fresh worker secret (256 random bits, URL-safe) and its hash, when ``asked``."""
    if not asked:
        return None, None
    secret = secrets.token_urlsafe(32)
    return secret, hash_secret(secret)


def hash_secret(secret: str) -> str:
    """The SHA-256 of a secret, as the store keeps it."""
    return hashlib.sha256(secret.encode()).hexdigest()


def presented_secret() -> str | None:
    """The worker secret the current request carries, if any."""
    return bottle.request.get_header(WORKER_SECRET_HEADER) or None


def presented_hash() -> str | None:
    """The hash of the worker secret the current request carries, if any."""
    secret = presented_secret()
    return None if secret is None else hash_secret(secret)


class WorkerIdentity:
    """Checks that a request about a worker carries that worker's secret."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.clock = clock
        self._known: dict[str, tuple[str | None, float]] = {}
        self._lock = threading.Lock()

    def remember(self, worker_id: str, secret_hash: str | None) -> None:
        """Note the hash a registration through this server just stored."""
        with self._lock:
            self._known[worker_id] = (secret_hash, self.clock())

    def check(self, worker_id: str, secret: str | None) -> None:
        """Pass when ``secret`` is ``worker_id``'s, or it has none (an unknown worker has
        none: the call then answers that it is not registered).

        Raises:
            Unauthorized: the secret is missing or wrong (401).
        """
        if _matches(self._expected(worker_id, fresh=False), secret):
            return
        if not _matches(self._expected(worker_id, fresh=True), secret):
            raise Unauthorized(f"worker {worker_id!r} registered with a secret: send it in "
                               f"the {WORKER_SECRET_HEADER} header (missing or wrong)")

    def _expected(self, worker_id: str, *, fresh: bool) -> str | None:
        with self._lock:
            known = self._known.get(worker_id)
        if not fresh and known is not None and self.clock() - known[1] < CACHE_SECONDS:
            return known[0]
        secret_hash = self.store.worker_secret_hash(worker_id)
        self.remember(worker_id, secret_hash)
        return secret_hash


def _matches(expected_hash: str | None, secret: str | None) -> bool:
    if expected_hash is None:
        return True
    return secret is not None and hmac.compare_digest(hash_secret(secret), expected_hash)
