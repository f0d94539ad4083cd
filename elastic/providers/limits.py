"""A per-provider budget: requests and tokens per minute and per day, and a cooldown.

A worker asks ``can_take(estimated_tokens, now)`` before it leases an LLM task;
``complete_with_retries`` calls ``reserve`` before each call and ``settle`` with the
tokens the provider reported after it, and sets the cooldown (``pause_until``) when
the provider says it is rate limited or out of daily quota. Windows slide: "per
minute" is the 60 seconds before ``now``, "per day" the 24 hours before it. Time is
always a parameter (epoch seconds), so tests never sleep. Thread-safe.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from elastic.errors import ConfigError

MINUTE_SECONDS = 60.0
DAY_SECONDS = 86_400.0
LIMIT_NAMES = ("requests_per_minute", "tokens_per_minute", "requests_per_day", "tokens_per_day")


@dataclass(eq=False)
class Reservation:
    """One request's entry in the budget: when it started and the tokens it counts for."""

    at: float
    tokens: int


@dataclass(frozen=True)
class _Window:
    """One sliding window: its length and its request and token limits (None: unlimited)."""

    name: str
    seconds: float
    max_requests: int | None
    max_tokens: int | None


class ProviderLimiter:
    """The request/token budget and cooldown of one provider; every limit is optional."""

    def __init__(self, *, requests_per_minute: int | None = None,
                 tokens_per_minute: int | None = None, requests_per_day: int | None = None,
                 tokens_per_day: int | None = None) -> None:
        self._windows = (
            _Window("minute", MINUTE_SECONDS, requests_per_minute, tokens_per_minute),
            _Window("day", DAY_SECONDS, requests_per_day, tokens_per_day),
        )
        self._horizon_seconds = max(
            (w.seconds for w in self._windows if (w.max_requests or w.max_tokens)),
            default=MINUTE_SECONDS)
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
        """Whether a request of about ``estimated_tokens`` fits every window now.

        A request larger than a whole token limit fits a window that is empty, so it
        is tried once instead of waiting forever.
        """
        return self.available_at(estimated_tokens, now) <= now

    def available_at(self, estimated_tokens: int, now: float) -> float:
        """The earliest time a request of ``estimated_tokens`` fits, if nothing else is sent."""
        with self._lock:
            self._prune(now)
            moments = [now] + [self._window_frees_at(w, estimated_tokens, now)
                               for w in self._windows]
            if self._cooldown_until is not None:
                moments.append(self._cooldown_until)
            return max(moments)

    def token_allowance(self, now: float) -> int | None:
        """The most estimated tokens a task may need to be taken now: 0 while cooling down
        or out of requests, else what is left of the tightest token window (None: no limit)."""
        if not self.can_take(0, now):
            return 0
        remaining = [value for key, value in self.snapshot(now).items()
                     if key.startswith("remaining_tokens_") and value is not None]
        return min(remaining) if remaining else None

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
        """The budget as JSON-ready data: cooldown (None when not resting), limits and what
        remains of each (None for an unlimited one)."""
        with self._lock:
            self._prune(now)
            cooling = self._cooldown_until is not None and self._cooldown_until > now
            result: dict[str, Any] = {"cooldown_until": self._cooldown_until if cooling else None}
            for window in self._windows:
                requests, tokens = self._used(window, now)
                result[f"requests_per_{window.name}"] = window.max_requests
                result[f"tokens_per_{window.name}"] = window.max_tokens
                result[f"remaining_requests_per_{window.name}"] = _remaining(
                    window.max_requests, requests)
                result[f"remaining_tokens_per_{window.name}"] = _remaining(
                    window.max_tokens, tokens)
            return result

    def _window_frees_at(self, window: _Window, estimated_tokens: int, now: float) -> float:
        """When ``window`` has room for one more request of ``estimated_tokens`` (lock held)."""
        inside = [r for r in self._usage if r.at > now - window.seconds]
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

    def _used(self, window: _Window, now: float) -> tuple[int, int]:
        """(requests, tokens) counted in ``window`` at ``now`` (lock held)."""
        inside = [r for r in self._usage if r.at > now - window.seconds]
        return len(inside), sum(r.tokens for r in inside)

    def _prune(self, now: float) -> None:
        """Forget usage older than the longest window that has a limit (lock held)."""
        while self._usage and self._usage[0].at <= now - self._horizon_seconds:
            self._usage.popleft()


def _remaining(limit: int | None, used: int) -> int | None:
    """What is left of ``limit`` after ``used``; None for no limit."""
    return None if limit is None else max(0, limit - used)
