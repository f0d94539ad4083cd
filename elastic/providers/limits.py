"""A per-provider budget: requests and tokens per minute and per day, and a cooldown.

``BudgetLimits`` is the arithmetic of the sliding windows ("per minute" is the 60
seconds before ``now``, "per day" the 24 hours before it) over any list of counted
requests. ``ProviderLimiter`` is one worker's own budget in memory: a worker asks
``can_take(estimated_tokens, now)`` before it leases an LLM task;
``complete_with_retries`` calls ``reserve`` before each call and ``settle`` with the
tokens the provider reported after it, and sets the cooldown (``pause_until``) when
the provider says it is rate limited or out of daily quota. The budget shared by all
workers is kept by the orchestrator in its database (``elastic.server.budgets``) and
decided with the same ``BudgetLimits``. Time is always a parameter (epoch seconds),
so tests never sleep. Thread-safe.

``key_fingerprint`` names the budget of one API key without revealing the key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from elastic.errors import ConfigError

MINUTE_SECONDS = 60.0
DAY_SECONDS = 86_400.0
LIMIT_NAMES = ("requests_per_minute", "tokens_per_minute", "requests_per_day", "tokens_per_day")


def key_fingerprint(api_key: str | None) -> str:
    """A short one-way fingerprint of an API key, naming its budget ('' for no key).

    Free tiers limit each key, so the orchestrator keeps one budget per provider and
    key; workers send this instead of the key, which never leaves the worker (a
    keyed BLAKE2b hash of a high-entropy secret tells nothing about the key).
    """
    if not api_key:
        return ""
    return hashlib.blake2b(api_key.encode(), digest_size=8, person=b"elastic-key-id").hexdigest()


@dataclass(eq=False)
class Reservation:
    """One request's entry in the budget: when it started and the tokens it counts for."""

    at: float
    tokens: int


class Counted(Protocol):
    """A request as a budget counts it (a ``Reservation``, or a row the orchestrator stored)."""

    @property
    def at(self) -> float:
        """When the request started (epoch seconds)."""
        ...

    @property
    def tokens(self) -> int:
        """The tokens it counts for."""
        ...


@dataclass(frozen=True)
class _Window:
    """One sliding window: its length and its request and token limits (None: unlimited)."""

    name: str
    seconds: float
    max_requests: int | None
    max_tokens: int | None


@dataclass(frozen=True, kw_only=True)
class BudgetLimits:
    """A provider's limits and the arithmetic of its sliding windows, over any list of
    counted requests (oldest first) and a cooldown; every limit is optional.

    The worker's in-memory ``ProviderLimiter`` and the budgets the orchestrator keeps
    in its database both decide with these methods.
    """

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    requests_per_day: int | None = None
    tokens_per_day: int | None = None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None, *, key_prefix: str = "limits",
                      source: str = "provider settings") -> BudgetLimits:
        """Build from a mapping of ``LIMIT_NAMES`` to positive integers (or None).

        Raises:
            ConfigError: naming an unknown key or a value that is not a positive integer.
        """
        limits: dict[str, int | None] = {}
        for key, value in (settings or {}).items():
            if key not in LIMIT_NAMES:
                wanted = f"one of {', '.join(LIMIT_NAMES)}"
                raise ConfigError(f"{key_prefix}.{key}", source, wanted)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ConfigError(f"{key_prefix}.{key}", source, "a positive integer", value)
            limits[key] = value
        return cls(**limits)

    @property
    def windows(self) -> tuple[_Window, ...]:
        """The minute and the day window."""
        return (_Window("minute", MINUTE_SECONDS, self.requests_per_minute, self.tokens_per_minute),
                _Window("day", DAY_SECONDS, self.requests_per_day, self.tokens_per_day))

    @property
    def horizon_seconds(self) -> float:
        """How far back requests matter: the longest window that has a limit."""
        return max((w.seconds for w in self.windows if (w.max_requests or w.max_tokens)),
                   default=MINUTE_SECONDS)

    def available_at(self, usage: Sequence[Counted], cooldown_until: float | None,
                     estimated_tokens: int, now: float) -> float:
        """The earliest time a request of ``estimated_tokens`` fits, if nothing else is sent.

        A request larger than a whole token limit fits a window that is empty, so it
        is tried once instead of waiting forever.
        """
        moments = [now] + [_window_frees_at(w, usage, estimated_tokens, now) for w in self.windows]
        if cooldown_until is not None:
            moments.append(cooldown_until)
        return max(moments)

    def token_allowance(self, usage: Sequence[Counted], cooldown_until: float | None,
                        now: float) -> int | None:
        """The most estimated tokens a task may need to be taken now: 0 while cooling down
        or out of requests, else what is left of the tightest token window (None: no limit)."""
        if self.available_at(usage, cooldown_until, 0, now) > now:
            return 0
        remaining = [value for key, value in self.snapshot(usage, cooldown_until, now).items()
                     if key.startswith("remaining_tokens_") and value is not None]
        return min(remaining) if remaining else None

    def snapshot(self, usage: Sequence[Counted], cooldown_until: float | None,
                 now: float) -> dict[str, Any]:
        """The budget as JSON-ready data: cooldown (None when not resting), limits and what
        remains of each (None for an unlimited one)."""
        cooling = cooldown_until is not None and cooldown_until > now
        result: dict[str, Any] = {"cooldown_until": cooldown_until if cooling else None}
        for window in self.windows:
            inside = [r for r in usage if r.at > now - window.seconds]
            result[f"requests_per_{window.name}"] = window.max_requests
            result[f"tokens_per_{window.name}"] = window.max_tokens
            result[f"remaining_requests_per_{window.name}"] = _remaining(
                window.max_requests, len(inside))
            result[f"remaining_tokens_per_{window.name}"] = _remaining(
                window.max_tokens, sum(r.tokens for r in inside))
        return result


class ProviderLimiter:
    """One worker's own budget for a provider: ``BudgetLimits`` over the requests it made."""

    def __init__(self, *, requests_per_minute: int | None = None,
                 tokens_per_minute: int | None = None, requests_per_day: int | None = None,
                 tokens_per_day: int | None = None) -> None:
        self.limits = BudgetLimits(requests_per_minute=requests_per_minute,
                                   tokens_per_minute=tokens_per_minute,
                                   requests_per_day=requests_per_day, tokens_per_day=tokens_per_day)
        self._usage: deque[Reservation] = deque()
        self._cooldown_until: float | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None, *, key_prefix: str = "limits",
                      source: str = "provider settings") -> ProviderLimiter:
        """Build from a mapping of ``LIMIT_NAMES`` to positive integers (or None).

        Raises:
            ConfigError: naming an unknown key or a value that is not a positive integer.
        """
        limits = BudgetLimits.from_settings(settings, key_prefix=key_prefix, source=source)
        return cls(**dataclasses.asdict(limits))

    @property
    def cooldown_until(self) -> float | None:
        """Until when the provider rests (epoch seconds), or None if it was never paused."""
        with self._lock:
            return self._cooldown_until

    def pause_until(self, until: float) -> None:
        """Rest until ``until``; an earlier end than the current one changes nothing."""
        with self._lock:
            if self._cooldown_until is None or until > self._cooldown_until:
                self._cooldown_until = until

    def can_take(self, estimated_tokens: int, now: float) -> bool:
        """Whether a request of about ``estimated_tokens`` fits every window now."""
        return self.available_at(estimated_tokens, now) <= now

    def available_at(self, estimated_tokens: int, now: float) -> float:
        """The earliest time a request of ``estimated_tokens`` fits, if nothing else is sent."""
        with self._lock:
            self._prune(now)
            return self.limits.available_at(self._usage, self._cooldown_until,
                                            estimated_tokens, now)

    def token_allowance(self, now: float) -> int | None:
        """The most estimated tokens a task may need to be taken now (see ``BudgetLimits``)."""
        with self._lock:
            self._prune(now)
            return self.limits.token_allowance(self._usage, self._cooldown_until, now)

    def reserve(self, estimated_tokens: int, now: float) -> Reservation:
        """Count a request starting now for ``estimated_tokens`` until it is settled."""
        reservation = Reservation(now, max(0, estimated_tokens))
        with self._lock:
            self._prune(now)
            self._usage.append(reservation)
        return reservation

    def settle(self, reserved: Reservation, actual_tokens: int, now: float) -> None:
        """Replace a reservation's estimate with the tokens the provider reported."""
        with self._lock:
            reserved.tokens = max(0, actual_tokens)
            self._prune(now)

    def snapshot(self, now: float) -> dict[str, Any]:
        """The budget as JSON-ready data (see ``BudgetLimits.snapshot``)."""
        with self._lock:
            self._prune(now)
            return self.limits.snapshot(self._usage, self._cooldown_until, now)

    def _prune(self, now: float) -> None:
        """Forget usage older than the longest window that has a limit (lock held)."""
        horizon = self.limits.horizon_seconds
        while self._usage and self._usage[0].at <= now - horizon:
            self._usage.popleft()


def _window_frees_at(window: _Window, usage: Sequence[Counted], estimated_tokens: int,
                     now: float) -> float:
    """When ``window`` has room for one more request of ``estimated_tokens``."""
    inside = [r for r in usage if r.at > now - window.seconds]
    frees_at = now
    if window.max_requests is not None and len(inside) >= window.max_requests:
        oldest_to_drop = inside[len(inside) - window.max_requests]
        frees_at = max(frees_at, oldest_to_drop.at + window.seconds)
    if window.max_tokens is not None:
        used = sum(r.tokens for r in inside)
        for reservation in inside:
            if not used or used + estimated_tokens <= window.max_tokens:
                break
            used -= reservation.tokens
            frees_at = max(frees_at, reservation.at + window.seconds)
    return frees_at


def _remaining(limit: int | None, used: int) -> int | None:
    """What is left of ``limit`` after ``used``; None for no limit."""
    return None if limit is None else max(0, limit - used)
