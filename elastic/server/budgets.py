"""Provider budgets kept by the orchestrator, shared by every worker and every replica.

Each worker process used to count its own requests, so N workers on one API key could
send N times the limit. Here the orchestrator keeps one budget per provider and API key
in its database (``Store.reserve_provider_request`` and friends), limited by its own
``[providers.<name>.limits]``, and workers ask it before every call
(``elastic.providers.shared_limits.SharedLimiter``):

- ``POST /api/providers/<name>/reserve`` checks the budget and counts the request in
  one transaction holding the budget's row lock, so two workers never both take the
  last slot, even through two replicas;
- ``POST /api/providers/<name>/settle`` replaces the estimate with the tokens used;
- ``POST /api/providers/<name>/pause`` rests the provider for everyone after a 429 or
  an exhausted daily quota seen by one worker;
- ``GET /api/providers`` and ``GET /api/providers/<name>`` show the budgets.

A budget is named by ``key_id``, the fingerprint of the API key the worker uses
(``elastic.providers.limits.key_fingerprint``; the key itself is never sent), or ''
for a provider used without a key. A pause without ``key_id`` rests every key of the
provider. Budgets survive a restart of the orchestrator, as everything in the database.
Install with ``budgets.add_routes(app, budgets.ProviderBudgets.from_config(store, config))``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import bottle

from elastic.config import Config
from elastic.errors import ConfigError, InvalidInput, NotFound
from elastic.providers.limits import BudgetLimits
from elastic.server.identity import WorkerIdentity, presented_secret
from elastic.store import BudgetUsage, Store
from elastic.tasks import MAX_ESTIMATED_TOKENS, MAX_ID_LENGTH
from elastic.web import QueryInteger, field_of, read_json

MAX_PAUSE_UNTIL = 1e11  # epoch seconds, about the year 5138: anything later is a mistake
ESTIMATED_TOKENS = QueryInteger("estimated_tokens", default=0, minimum=0,
                                maximum=MAX_ESTIMATED_TOKENS,
                                description="the size of the request asked about (default 0)")
KEY_ID_PATTERN = re.compile(r"[0-9a-f]{0,64}")
KEY_ID_SCHEMA = {"type": "string", "pattern": f"^{KEY_ID_PATTERN.pattern}$",
                 "description": "the API key's fingerprint naming its budget (default '': no key)"}


class UnknownBudget(NotFound):
    """No provider budget has that name."""


class ProviderBudgets:
    """The budgets of every provider and API key, kept in ``store`` under ``limits``."""

    def __init__(self, store: Store, limits: Mapping[str, BudgetLimits]) -> None:
        self.store = store
        self._limits = dict(limits)

    @classmethod
    def from_config(cls, store: Store, config: Config) -> ProviderBudgets:
        """A budget for every known provider and every ``[providers.<name>]`` in ``config``,
        limited by its ``[providers.<name>.limits]`` (unlimited without one).

        Raises:
            ConfigError: naming a bad ``providers.<name>.limits`` key or value.
        """
        from elastic.providers import PROVIDERS

        limits = {}
        for name in sorted({*PROVIDERS, *config.providers}):
            settings = config.provider_settings(name).get("limits")
            if settings is not None and not isinstance(settings, Mapping):
                raise ConfigError(f"providers.{name}.limits", config.config_path,
                                  "a table of limits", settings)
            limits[name] = BudgetLimits.from_settings(
                settings, key_prefix=f"providers.{name}.limits", source=config.config_path)
        return cls(store, limits)

    @property
    def names(self) -> list[str]:
        """The provider names, sorted."""
        return sorted(self._limits)

    def limits_of(self, name: str) -> BudgetLimits:
        """The limits of provider ``name``.

        Raises:
            UnknownBudget: naming the known providers (404).
        """
        try:
            return self._limits[name]
        except KeyError:
            known = ", ".join(self.names)
            raise UnknownBudget(f"unknown provider {name!r} (known: {known})") from None

    def reserve(self, name: str, estimated_tokens: int, *, worker_id: str, key_id: str = "",
                now: float | None = None) -> dict[str, Any]:
        """Count one request of ``estimated_tokens`` if it fits now; else say when it will.

        Returns ``granted`` with ``reservation_id``, or ``retry_at`` (epoch seconds) and
        ``retry_after_seconds``; both with ``snapshot``.
        """
        now = time.time() if now is None else now
        limits = self.limits_of(name)
        outcome = self.store.reserve_provider_request(
            name, key_id, worker_id=worker_id, tokens=estimated_tokens,
            since=now - limits.horizon_seconds, now=now,
            available_at=lambda usage: limits.available_at(
                usage.requests, usage.cooldown_until, estimated_tokens, now))
        answer: dict[str, Any] = {"granted": outcome.reservation_id is not None,
                                  "server_time": now}
        if outcome.reservation_id is None:
            answer.update(retry_at=outcome.available_at,
                          retry_after_seconds=outcome.available_at - now)
        else:
            answer["reservation_id"] = outcome.reservation_id
        answer["snapshot"] = self._snapshot(limits, outcome.usage, now)
        return answer

    def settle(self, name: str, reservation_id: str, tokens_used: int, *,
               key_id: str = "", now: float | None = None) -> dict[str, Any]:
        """Replace a granted request's estimate with the tokens the provider reported.

        Raises:
            NotFound: no request of that provider has that reservation id.
        """
        now = time.time() if now is None else now
        limits = self.limits_of(name)
        if not self.store.settle_provider_request(name, reservation_id, tokens_used):
            raise NotFound(f"no open reservation {reservation_id!r} for provider {name!r}")
        return {"settled": True, "server_time": now,
                "snapshot": self._snapshot(limits, self._usage(name, key_id, now), now)}

    def pause(self, name: str, until: float, *, key_id: str = "",
              now: float | None = None) -> dict[str, Any]:
        """Rest provider ``name`` (one key's budget, or with key '' every key) until ``until``
        (a later pause wins)."""
        now = time.time() if now is None else now
        limits = self.limits_of(name)
        self.store.pause_provider_budget(name, key_id, until)
        snapshot = self._snapshot(limits, self._usage(name, key_id, now), now)
        return {"cooldown_until": snapshot["cooldown_until"], "server_time": now,
                "snapshot": snapshot}

    def availability(self, name: str, estimated_tokens: int, *, key_id: str = "",
                     now: float | None = None) -> dict[str, Any]:
        """A budget, when a request of ``estimated_tokens`` fits, and the most estimated
        tokens a worker may lease a task for now (None: no limit)."""
        now = time.time() if now is None else now
        limits = self.limits_of(name)
        usage = self._usage(name, key_id, now)
        return {"provider": name, "key_id": key_id, "server_time": now,
                "available_at": limits.available_at(usage.requests, usage.cooldown_until,
                                                    estimated_tokens, now),
                "token_allowance": limits.token_allowance(usage.requests, usage.cooldown_until,
                                                          now),
                "snapshot": self._snapshot(limits, usage, now)}

    def snapshots(self, *, now: float | None = None) -> dict[str, dict[str, Any]]:
        """Every provider's budget without a key, and under ``keys`` each key's, by name."""
        now = time.time() if now is None else now
        horizon = max(limits.horizon_seconds for limits in self._limits.values())
        used: dict[str, dict[str, BudgetUsage]] = {}
        for usage in self.store.list_provider_budgets(since=now - horizon):
            used.setdefault(usage.provider, {})[usage.key_id] = usage
        shown = {}
        for name in self.names:
            limits, keys = self.limits_of(name), used.get(name, {})
            own = keys.get("") or BudgetUsage(name, "", None, ())
            shown[name] = {**self._snapshot(limits, own, now), "keys": {
                key_id: self._snapshot(limits, usage, now)
                for key_id, usage in keys.items() if key_id}}
        return shown

    def _usage(self, name: str, key_id: str, now: float) -> BudgetUsage:
        return self.store.provider_budget_usage(
            name, key_id, since=now - self.limits_of(name).horizon_seconds)

    @staticmethod
    def _snapshot(limits: BudgetLimits, usage: BudgetUsage, now: float) -> dict[str, Any]:
        return limits.snapshot(usage.requests, usage.cooldown_until, now)


def add_routes(app: bottle.Bottle, budgets: ProviderBudgets, *, identity: WorkerIdentity,
               on_pause: Callable[[str, str, float], None] | None = None) -> None:
    """Attach the ``/api/providers`` routes (described by ``BUDGET_PATHS``) to ``app``.

    Reserving and settling speak for a worker: they carry its secret, if it has one.
    ``on_pause(provider, key_id, until)`` hears of every pause (an alert).
    """

    @app.get("/api/providers")
    def list_budgets() -> dict[str, Any]:
        return {"providers": budgets.snapshots(), "server_time": time.time()}

    @app.get("/api/providers/<name>")
    def show_budget(name: str) -> dict[str, Any]:
        key_id = checked_key_id(bottle.request.query.get("key_id") or "", "query parameter")
        return budgets.availability(name, ESTIMATED_TOKENS.read(), key_id=key_id)

    @app.post("/api/providers/<name>/reserve")
    def reserve_budget(name: str) -> dict[str, Any]:
        body = read_json()
        estimated = bounded_integer(body, "estimated_tokens")
        worker_id = bounded_string(body, "worker_id")
        identity.check(worker_id, presented_secret())
        return budgets.reserve(name, estimated, worker_id=worker_id, key_id=body_key_id(body))

    @app.post("/api/providers/<name>/settle")
    def settle_budget(name: str) -> dict[str, Any]:
        body = read_json()
        reservation_id = bounded_string(body, "reservation_id")
        holder = budgets.store.provider_request_holder(reservation_id)
        if holder is not None:
            identity.check(holder, presented_secret())
        return budgets.settle(name, reservation_id, bounded_integer(body, "tokens_used"),
                              key_id=body_key_id(body))

    @app.post("/api/providers/<name>/pause")
    def pause_budget(name: str) -> dict[str, Any]:
        body = read_json()
        until = field_of(body, "until", (int, float))
        if not 0 <= until <= MAX_PAUSE_UNTIL:  # NaN fails this too
            raise InvalidInput(f"field 'until': must be epoch seconds between 0 and {MAX_PAUSE_UNTIL:g}")
        key_id = body_key_id(body)
        answer = budgets.pause(name, float(until), key_id=key_id)
        if on_pause is not None:
            on_pause(name, key_id, float(until))
        return answer


def body_key_id(body: dict[str, Any]) -> str:
    """The optional ``key_id`` field of a request body ('' when absent)."""
    return checked_key_id(field_of(body, "key_id", str, required=False, default=""), "field")


def checked_key_id(value: str, where: str) -> str:
    """``value`` if it is an API key's fingerprint (up to 64 lowercase hex digits), else
    InvalidInput: a worker sends the fingerprint, never the key (which is not echoed)."""
    if not KEY_ID_PATTERN.fullmatch(value):
        raise InvalidInput(f"{where} 'key_id': expected the API key's fingerprint (up to 64 "
                           "lowercase hex digits), not the key itself")
    return value


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
