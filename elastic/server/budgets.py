"""Provider budgets held by the orchestrator, shared by every worker that calls a provider.

Each worker process used to count its own requests, so N workers on one API key could
send N times the limit. Here the orchestrator keeps one ``ProviderLimiter`` per provider
name, built from its own ``[providers.<name>.limits]``, and workers ask it before every
call (``elastic.providers.shared_limits.SharedLimiter``):

- ``POST /api/providers/<name>/reserve`` checks the budget and counts the request in
  one step, under a per-provider lock, so two workers never both take the last slot;
- ``POST /api/providers/<name>/settle`` replaces the estimate with the tokens used;
- ``POST /api/providers/<name>/pause`` rests the provider for everyone after a 429 or
  an exhausted daily quota seen by one worker;
- ``GET /api/providers`` and ``GET /api/providers/<name>`` show the budgets.

Budgets live in memory: a restarted orchestrator starts with empty windows.
Install with ``budgets.add_routes(app, budgets.ProviderBudgets.from_config(config))``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import bottle

from elastic.config import Config
from elastic.errors import ConfigError, InvalidInput, NotFound
from elastic.providers.limits import DAY_SECONDS, ProviderLimiter, Reservation
from elastic.tasks import MAX_ESTIMATED_TOKENS, MAX_ID_LENGTH
from elastic.web import QueryInteger, field_of, read_json

MAX_PAUSE_UNTIL = 1e11  # epoch seconds, about the year 5138: anything later is a mistake
MAX_OPEN_RESERVATIONS = 100_000
ESTIMATED_TOKENS = QueryInteger("estimated_tokens", default=0, minimum=0,
                                maximum=MAX_ESTIMATED_TOKENS,
                                description="the size of the request asked about (default 0)")


@dataclass(frozen=True)
class OpenReservation:
    """A granted request not settled yet: which provider, which worker, its limiter entry."""

    provider: str
    worker_id: str
    entry: Reservation


class UnknownBudget(NotFound):
    """No provider budget has that name."""


class ProviderBudgets:
    """One ``ProviderLimiter`` per provider name, and the reservations granted from them."""

    def __init__(self, limiters: Mapping[str, ProviderLimiter]) -> None:
        self._limiters = dict(limiters)
        self._locks = {name: threading.Lock() for name in self._limiters}
        self._open: OrderedDict[str, OpenReservation] = OrderedDict()
        self._open_lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Config) -> ProviderBudgets:
        """A budget for every known provider and every ``[providers.<name>]`` in ``config``,
        limited by its ``[providers.<name>.limits]`` (unlimited without one).

        Raises:
            ConfigError: naming a bad ``providers.<name>.limits`` key or value.
        """
        from elastic.providers import PROVIDERS

        limiters = {}
        for name in sorted({*PROVIDERS, *config.providers}):
            limits = config.provider_settings(name).get("limits")
            if limits is not None and not isinstance(limits, Mapping):
                raise ConfigError(f"providers.{name}.limits", config.config_path,
                                  "a table of limits", limits)
            limiters[name] = ProviderLimiter.from_settings(
                limits, key_prefix=f"providers.{name}.limits", source=config.config_path)
        return cls(limiters)

    @property
    def names(self) -> list[str]:
        """The provider names, sorted."""
        return sorted(self._limiters)

    def limiter_of(self, name: str) -> ProviderLimiter:
        """The limiter of provider ``name``.

        Raises:
            UnknownBudget: naming the known providers (404).
        """
        try:
            return self._limiters[name]
        except KeyError:
            known = ", ".join(self.names)
            raise UnknownBudget(f"unknown provider {name!r} (known: {known})") from None

    def reserve(self, name: str, estimated_tokens: int, *, worker_id: str,
                now: float | None = None) -> dict[str, Any]:
        """Count one request of ``estimated_tokens`` if it fits now; else say when it will.

        Checking and counting happen under the provider's lock, so concurrent workers
        never both get the last slot. Returns ``granted`` with ``reservation_id``, or
        ``retry_at`` (epoch seconds) and ``retry_after_seconds``; both with ``snapshot``.
        """
        now = time.time() if now is None else now
        limiter = self.limiter_of(name)
        with self._locks[name]:
            available_at = limiter.available_at(estimated_tokens, now)
            entry = limiter.reserve(estimated_tokens, now) if available_at <= now else None
        answer: dict[str, Any] = {"granted": entry is not None, "server_time": now}
        if entry is None:
            answer.update(retry_at=available_at, retry_after_seconds=available_at - now)
        else:
            answer["reservation_id"] = self._remember(OpenReservation(name, worker_id, entry), now)
        answer["snapshot"] = limiter.snapshot(now)
        return answer

    def settle(self, name: str, reservation_id: str, tokens_used: int, *,
               now: float | None = None) -> dict[str, Any]:
        """Replace a granted request's estimate with the tokens the provider reported.

        Raises:
            NotFound: no open reservation of that provider has that id (settled already,
                or granted before the orchestrator restarted).
        """
        now = time.time() if now is None else now
        limiter = self.limiter_of(name)
        with self._open_lock:
            found = self._open.get(reservation_id)
            if found is None or found.provider != name:
                raise NotFound(f"no open reservation {reservation_id!r} for provider {name!r} "
                               "(settled already, or the orchestrator restarted)")
            del self._open[reservation_id]
        limiter.settle(found.entry, tokens_used, now)
        return {"settled": True, "server_time": now, "snapshot": limiter.snapshot(now)}

    def pause(self, name: str, until: float, *, now: float | None = None) -> dict[str, Any]:
        """Rest provider ``name`` for every worker until ``until`` (a later pause wins)."""
        now = time.time() if now is None else now
        limiter = self.limiter_of(name)
        limiter.pause_until(until)
        snapshot = limiter.snapshot(now)
        return {"cooldown_until": snapshot["cooldown_until"], "server_time": now,
                "snapshot": snapshot}

    def availability(self, name: str, estimated_tokens: int, *,
                     now: float | None = None) -> dict[str, Any]:
        """Provider ``name``'s budget, when a request of ``estimated_tokens`` fits, and the
        most estimated tokens a worker may lease a task for now (None: no limit)."""
        now = time.time() if now is None else now
        limiter = self.limiter_of(name)
        return {"provider": name, "server_time": now,
                "available_at": limiter.available_at(estimated_tokens, now),
                "token_allowance": limiter.token_allowance(now),
                "snapshot": limiter.snapshot(now)}

    def snapshots(self, *, now: float | None = None) -> dict[str, dict[str, Any]]:
        """Every provider's budget (``ProviderLimiter.snapshot``) by name."""
        now = time.time() if now is None else now
        return {name: self._limiters[name].snapshot(now) for name in self.names}

    def _remember(self, reservation: OpenReservation, now: float) -> str:
        """Keep a granted reservation until it is settled; forget the oldest ones after a
        day or beyond ``MAX_OPEN_RESERVATIONS`` (their workers died before settling)."""
        reservation_id = uuid.uuid4().hex
        with self._open_lock:
            self._open[reservation_id] = reservation
            while self._open:
                oldest = next(iter(self._open.values()))
                if len(self._open) <= MAX_OPEN_RESERVATIONS and oldest.entry.at > now - DAY_SECONDS:
                    break
                self._open.popitem(last=False)
        return reservation_id


def add_routes(app: bottle.Bottle, budgets: ProviderBudgets) -> None:
    """Attach the ``/api/providers`` routes (described by ``BUDGET_PATHS``) to ``app``."""

    @app.get("/api/providers")
    def list_budgets() -> dict[str, Any]:
        return {"providers": budgets.snapshots(), "server_time": time.time()}

    @app.get("/api/providers/<name>")
    def show_budget(name: str) -> dict[str, Any]:
        return budgets.availability(name, ESTIMATED_TOKENS.read())

    @app.post("/api/providers/<name>/reserve")
    def reserve_budget(name: str) -> dict[str, Any]:
        body = read_json()
        estimated = bounded_integer(body, "estimated_tokens")
        worker_id = bounded_string(body, "worker_id")
        return budgets.reserve(name, estimated, worker_id=worker_id)

    @app.post("/api/providers/<name>/settle")
    def settle_budget(name: str) -> dict[str, Any]:
        body = read_json()
        reservation_id = bounded_string(body, "reservation_id")
        return budgets.settle(name, reservation_id, bounded_integer(body, "tokens_used"))

    @app.post("/api/providers/<name>/pause")
    def pause_budget(name: str) -> dict[str, Any]:
        body = read_json()
        until = field_of(body, "until", (int, float))
        if not 0 <= until <= MAX_PAUSE_UNTIL:  # NaN fails this too
            raise InvalidInput(f"field 'until': must be epoch seconds between 0 and {MAX_PAUSE_UNTIL:g}")
        return budgets.pause(name, float(until))


def bounded_integer(body: dict[str, Any], name: str) -> int:
    """``body[name]`` as an integer from 0 to ``MAX_ESTIMATED_TOKENS``, or InvalidInput naming it."""
    value = field_of(body, name, int)
    if not 0 <= value <= MAX_ESTIMATED_TOKENS:
        raise InvalidInput(f"field '{name}': must be between 0 and {MAX_ESTIMATED_TOKENS}")
    return value


def bounded_string(body: dict[str, Any], name: str) -> str:
    """``body[name]`` as a string of 1 to ``MAX_ID_LENGTH`` characters, or InvalidInput."""
    value = field_of(body, name, str)
    if not 1 <= len(value) <= MAX_ID_LENGTH:
        raise InvalidInput(f"field '{name}': must be 1 to {MAX_ID_LENGTH} characters")
    return value
