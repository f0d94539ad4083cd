"""A provider budget shared by every worker: the orchestrator keeps it, workers ask it.

``SharedLimiter`` has the interface ``complete_once`` and the worker loop use on a
``ProviderLimiter`` (``reserve``, ``settle``, ``pause_until``, ``token_allowance``, ...),
backed by the orchestrator's ``/api/providers/<name>/...`` routes
(``elastic.server.budgets``), so N workers on one API key stay within one limit.

``reserve`` blocks or fails; a request is sent only once the orchestrator granted it:

- granted: the request goes ahead;
- refused, with room again within ``max_wait_seconds``: sleep until then and ask again
  (a worker that is stopping stops waiting);
- refused for longer: raise ``SharedBudgetExhausted`` at once, so the task goes back
  to the queue for a worker whose provider can serve it now instead of being held.

The worker's own limits (its ``[providers.<name>.limits]``) still apply to itself: a
local ``ProviderLimiter`` mirrors every request this worker makes, and the allowance
is the tighter of the two. When the orchestrator cannot be asked, that local limiter
decides alone, which is logged once per switch; reads ask the orchestrator again after
``local_retry_seconds``, a reservation asks it every time (so an orchestrator that is
back counts every request sent). Times from the orchestrator are turned into this
machine's clock through the ``server_time`` of each answer.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from elastic.errors import ElasticError, NotFound
from elastic.providers.base import QuotaExhausted, RateLimited
from elastic.providers.limits import ProviderLimiter, Reservation
from elastic.transport import Transport

log = logging.getLogger("elastic.providers.shared")

DEFAULT_MAX_WAIT_SECONDS = 30.0
DEFAULT_REQUEST_TIMEOUT_SECONDS = 5.0
DEFAULT_LOCAL_RETRY_SECONDS = 5.0
MIN_WAIT_SECONDS = 0.01
STOPPING_RETRY_SECONDS = 1.0
MAX_TOKENS_SENT = 10**9
MAX_PAUSE_UNTIL = 1e11


class SharedBudgetExhausted(QuotaExhausted):
    """The budget shared by all workers has no room for this request soon enough.

    The worker hands the task back (not counted as a failed attempt), so another worker
    whose provider has room takes it; ``reset_at`` is when this provider has room again.
    """

    hand_back = True


@dataclass(eq=False)
class SharedReservation(Reservation):
    """A request counted by the orchestrator (``reservation_id``; None when the local
    budget decided) and in this worker's own limiter (``mirror``)."""

    reservation_id: str | None = None
    mirror: Reservation | None = None


class SharedLimiter:
    """A provider's budget kept by the orchestrator; the same interface as ``ProviderLimiter``.

    Args:
        provider_name: the budget's name on the orchestrator (``ollama``, ``groq``, ``gemini``).
        key_id: the fingerprint of the API key in use (``limits.key_fingerprint``): each key
            has its own budget on the orchestrator; '' for a provider used without a key.
        transport: the HTTP client to the orchestrator (with its token).
        worker_id: who asks, shown in the orchestrator's reservations.
        fallback: this worker's own limits; decides alone when the orchestrator cannot.
        max_wait_seconds: the longest ``reserve`` holds a task waiting for room.
        stopping: set when the worker stops; a waiting ``reserve`` then gives up.
    """

    def __init__(self, provider_name: str, transport: Transport, *, worker_id: str,
                 key_id: str = "", fallback: ProviderLimiter | None = None,
                 max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS,
                 request_timeout_seconds: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
                 local_retry_seconds: float = DEFAULT_LOCAL_RETRY_SECONDS,
                 stopping: threading.Event | None = None) -> None:
        self.provider_name = provider_name
        self.transport = transport
        self.worker_id = worker_id
        self.key_id = key_id
        self.fallback = fallback if fallback is not None else ProviderLimiter()
        self.max_wait_seconds = max_wait_seconds
        self.request_timeout_seconds = request_timeout_seconds
        self.local_retry_seconds = local_retry_seconds
        self.stopping = stopping if stopping is not None else threading.Event()
        self._local_until = 0.0
        self._shared: bool | None = None
        self._state_lock = threading.Lock()

    # -- the ProviderLimiter interface ---------------------------------------------------

    def reserve(self, estimated_tokens: int, now: float) -> SharedReservation:
        """Count a request of ``estimated_tokens`` once the orchestrator grants it.

        Raises:
            SharedBudgetExhausted: no room within ``max_wait_seconds``.
            RateLimited: the worker is stopping (the retry loop then sees the cancel).
        """
        tokens = max(0, estimated_tokens)
        started = time.monotonic()
        while True:
            waited = time.monotonic() - started
            # Always asked, even while reads decide locally: an orchestrator that is back
            # must count this request, or the workers together overrun the shared budget.
            answer = self._ask("POST", "/reserve", json={
                "estimated_tokens": min(tokens, MAX_TOKENS_SENT), "worker_id": self.worker_id},
                always=True)
            if answer is None or answer.get("granted"):
                mirror = self.fallback.reserve(tokens, now + waited)
                reservation_id = None if answer is None else str(answer["reservation_id"])
                return SharedReservation(now + waited, tokens, reservation_id, mirror)
            wait = max(float(answer.get("retry_after_seconds") or 0.0), MIN_WAIT_SECONDS)
            if waited + wait > self.max_wait_seconds:
                raise SharedBudgetExhausted(self._exhausted_message(answer, wait),
                                            reset_at=time.time() + wait)
            if self.stopping.wait(wait):
                raise RateLimited(f"{self.provider_name}: stopped waiting for the shared "
                                  "budget: the worker is stopping",
                                  retry_after_seconds=STOPPING_RETRY_SECONDS)

    def settle(self, reserved: Reservation, actual_tokens: int, now: float) -> None:
        """Replace a reservation's estimate with the tokens the provider reported, here and
        on the orchestrator (a reservation it no longer knows is let go quietly)."""
        tokens = max(0, actual_tokens)
        if not isinstance(reserved, SharedReservation):
            self.fallback.settle(reserved, tokens, now)
            return
        reserved.tokens = tokens
        if reserved.mirror is not None:
            self.fallback.settle(reserved.mirror, tokens, now)
        if reserved.reservation_id is not None:
            self._ask("POST", "/settle", json={"reservation_id": reserved.reservation_id,
                                               "tokens_used": min(tokens, MAX_TOKENS_SENT)},
                      missing_ok=True)

    def pause_until(self, until: float) -> None:
        """Rest the provider until ``until`` for this worker and, through the orchestrator,
        for every worker (a 429 or an exhausted quota seen here pauses it everywhere)."""
        self.fallback.pause_until(until)
        self._ask("POST", "/pause", json={"until": min(max(until, 0.0), MAX_PAUSE_UNTIL)})

    @property
    def cooldown_until(self) -> float | None:
        """Until when the provider rests (epoch seconds), or None when it does not."""
        return self.snapshot(time.time()).get("cooldown_until")

    def can_take(self, estimated_tokens: int, now: float) -> bool:
        """Whether a request of about ``estimated_tokens`` fits both budgets now."""
        return self.available_at(estimated_tokens, now) <= now

    def available_at(self, estimated_tokens: int, now: float) -> float:
        """The earliest time a request of ``estimated_tokens`` fits both budgets."""
        local = self.fallback.available_at(estimated_tokens, now)
        answer = self._ask("GET", "", params={
            "estimated_tokens": min(max(0, estimated_tokens), MAX_TOKENS_SENT)})
        if answer is None:
            return local
        shared = now + float(answer["available_at"]) - float(answer["server_time"])
        return max(local, shared)

    def token_allowance(self, now: float) -> int | None:
        """The most estimated tokens a task may need to be leased now: the tighter of the
        shared and the local allowance (0 while resting or out of requests; None: no limit)."""
        local = self.fallback.token_allowance(now)
        answer = self._ask("GET", "")
        if answer is None:
            return local
        allowances = [value for value in (local, answer.get("token_allowance")) if value is not None]
        return min(allowances) if allowances else None

    def snapshot(self, now: float) -> dict[str, Any]:
        """The shared budget as JSON-ready data (``budget: shared``), or this worker's own
        (``budget: local``) while the orchestrator cannot be asked."""
        answer = self._ask("GET", "")
        if answer is None:
            return {**self.fallback.snapshot(now), "budget": "local"}
        return {**answer["snapshot"], "budget": "shared"}

    # -- talking to the orchestrator -----------------------------------------------------

    def _ask(self, method: str, path: str, *, json: Any = None,
             params: dict[str, Any] | None = None, missing_ok: bool = False,
             always: bool = False) -> dict[str, Any] | None:
        """The orchestrator's answer for this provider's ``path``, or None to decide locally
        (without asking while a recent failure says so, unless ``always``)."""
        with self._state_lock:
            if time.monotonic() < self._local_until and not always:
                return None
        if self.key_id and method == "GET":
            params = {**(params or {}), "key_id": self.key_id}
        elif self.key_id:
            json = {**(json or {}), "key_id": self.key_id}
        try:
            answer = self.transport.request(
                method, f"/api/providers/{self.provider_name}{path}", json=json, params=params,
                timeout_seconds=self.request_timeout_seconds)
        except NotFound as error:
            if missing_ok:
                log.debug("provider %s: %s", self.provider_name, error.message)
                return None
            self._use_local(error)
            return None
        except ElasticError as error:
            self._use_local(error)
            return None
        self._use_shared()
        return answer if isinstance(answer, dict) else None

    def _use_local(self, error: ElasticError) -> None:
        """Decide locally for ``local_retry_seconds``; say so when this is a switch."""
        with self._state_lock:
            self._local_until = time.monotonic() + self.local_retry_seconds
            switched, self._shared = self._shared is not False, False
        if switched:
            log.warning("provider %s: cannot use the budget shared through the orchestrator "
                        "(%s); using this worker's own limits until it answers",
                        self.provider_name, error.message)

    def _use_shared(self) -> None:
        """Note that the orchestrator answered; say so when this is a switch."""
        with self._state_lock:
            switched, self._shared = self._shared is not True, True
        if switched:
            log.info("provider %s: using the budget shared through the orchestrator at %s",
                     self.provider_name, self.transport.server)

    def _exhausted_message(self, answer: dict[str, Any], wait_seconds: float) -> str:
        """Why a refused request cannot wait: the provider rests, or which limits are used up."""
        snapshot = answer.get("snapshot") or {}
        used_up = [name.removeprefix("remaining_") for name, value in snapshot.items()
                   if name.startswith("remaining_") and value == 0]
        if snapshot.get("cooldown_until"):
            until = datetime.fromtimestamp(snapshot["cooldown_until"], UTC).strftime("%H:%M:%S")
            reason = f"the provider rests until {until} UTC"
        else:
            reason = f"{', '.join(used_up) or 'its limits'} used up by all workers"
        return (f"{self.provider_name}: the budget shared by all workers has no room for "
                f"{wait_seconds:.0f} s ({reason}); the task goes back to the queue")


def share_budget(provider: Any, transport: Transport, *, worker_id: str,
                 stopping: threading.Event | None = None) -> SharedLimiter:
    """Give ``provider`` a ``SharedLimiter`` in place of its own limiter (kept as the
    fallback and for this worker's own limits); returns the new limiter."""
    own = provider.limiter
    if isinstance(own, SharedLimiter):
        own = own.fallback
    limiter = SharedLimiter(provider.name, transport, worker_id=worker_id,
                            key_id=getattr(provider, "key_id", ""), fallback=own,
                            stopping=stopping)
    provider.limiter = limiter
    return limiter
