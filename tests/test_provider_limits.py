"""The provider budget (requests/tokens per minute and day, cooldown) and the retry policy.

Time is always passed in, so nothing here sleeps.
"""

from __future__ import annotations

import json
import threading

import pytest

from elastic.errors import ConfigError, TaskCancelled
from elastic.providers.base import (
    BACKOFF_CAP_SECONDS,
    MAX_RATE_LIMIT_WAIT_SECONDS,
    ChatRequest,
    Completion,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    Rejected,
    Unavailable,
    complete_with_retries,
    next_delay,
)
from elastic.providers.limits import DAY_SECONDS, ProviderLimiter

REQUEST = ChatRequest([{"role": "user", "content": "hi"}], max_tokens=100)


def test_requests_per_minute_slide_with_time() -> None:
    limiter = ProviderLimiter(requests_per_minute=2)
    limiter.reserve(10, now=0.0)
    limiter.reserve(10, now=10.0)

    assert not limiter.can_take(10, now=30.0)
    assert limiter.available_at(10, now=30.0) == 60.0
    assert limiter.can_take(10, now=60.0)


def test_tokens_per_minute_count_what_was_settled_not_the_estimate() -> None:
    limiter = ProviderLimiter(tokens_per_minute=1000)
    reservation = limiter.reserve(800, now=0.0)
    assert not limiter.can_take(500, now=1.0)

    limiter.settle(reservation, 300, now=2.0)

    assert limiter.can_take(500, now=2.0)
    assert limiter.snapshot(2.0)["remaining_tokens_per_minute"] == 700


def test_a_request_larger_than_the_whole_budget_fits_only_an_empty_window() -> None:
    limiter = ProviderLimiter(tokens_per_minute=1000)
    assert limiter.can_take(5000, now=0.0)

    limiter.reserve(5000, now=0.0)

    assert not limiter.can_take(5000, now=59.0)
    assert limiter.available_at(5000, now=59.0) == 60.0


def test_daily_limits_use_a_sliding_day() -> None:
    limiter = ProviderLimiter(requests_per_day=2, tokens_per_day=1000)
    first = limiter.reserve(400, now=0.0)
    limiter.settle(first, 400, now=1.0)
    limiter.reserve(100, now=3600.0)

    assert not limiter.can_take(1, now=7200.0)
    assert limiter.available_at(1, now=7200.0) == DAY_SECONDS
    assert limiter.can_take(900, now=DAY_SECONDS)


def test_a_cooldown_blocks_until_its_end_and_is_never_shortened() -> None:
    limiter = ProviderLimiter()
    limiter.pause_until(100.0)
    limiter.pause_until(50.0)

    assert limiter.cooldown_until == 100.0
    assert not limiter.can_take(1, now=99.0)
    assert limiter.can_take(1, now=100.0)
    assert limiter.snapshot(99.0)["cooldown_until"] == 100.0
    assert limiter.snapshot(101.0)["cooldown_until"] is None


def test_without_limits_everything_fits() -> None:
    limiter = ProviderLimiter()
    for second in range(1000):
        limiter.reserve(10_000, now=float(second))

    assert limiter.can_take(10_000, now=1000.0)
    assert limiter.snapshot(1000.0)["remaining_tokens_per_minute"] is None


def test_the_snapshot_is_json_ready_and_says_what_remains() -> None:
    limiter = ProviderLimiter(requests_per_minute=30, tokens_per_minute=6000,
                              requests_per_day=1000, tokens_per_day=500_000)
    limiter.settle(limiter.reserve(900, now=0.0), 250, now=1.0)

    snapshot = json.loads(json.dumps(limiter.snapshot(1.0)))

    assert snapshot == {
        "cooldown_until": None,
        "requests_per_minute": 30, "remaining_requests_per_minute": 29,
        "tokens_per_minute": 6000, "remaining_tokens_per_minute": 5750,
        "requests_per_day": 1000, "remaining_requests_per_day": 999,
        "tokens_per_day": 500_000, "remaining_tokens_per_day": 499_750,
    }


def test_reservations_from_racing_threads_are_all_counted() -> None:
    limiter = ProviderLimiter(requests_per_minute=1000, tokens_per_minute=1_000_000)
    barrier = threading.Barrier(8)

    def reserve_many() -> None:
        barrier.wait()
        for _ in range(100):
            limiter.settle(limiter.reserve(50, now=5.0), 10, now=5.0)

    threads = [threading.Thread(target=reserve_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    snapshot = limiter.snapshot(5.0)
    assert snapshot["remaining_requests_per_minute"] == 200
    assert snapshot["remaining_tokens_per_minute"] == 1_000_000 - 8000


@pytest.mark.parametrize(("settings", "key"), [
    ({"request_per_minute": 3}, "limits.request_per_minute"),
    ({"tokens_per_day": 0}, "limits.tokens_per_day"),
    ({"requests_per_minute": "many"}, "limits.requests_per_minute"),
    ({"tokens_per_minute": True}, "limits.tokens_per_minute"),
])
def test_bad_limit_settings_are_config_errors_naming_the_key(settings: dict[str, object],
                                                             key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ProviderLimiter.from_settings(settings)

    assert caught.value.key == key


# -- the retry policy -----------------------------------------------------------------------

def test_a_rejection_or_an_exhausted_quota_is_never_retried() -> None:
    assert next_delay(Rejected("bad key"), 1) is None
    assert next_delay(QuotaExhausted("daily", reset_at=1e10), 1) is None


def test_a_rate_limit_waits_what_the_provider_asked() -> None:
    assert next_delay(RateLimited("slow", retry_after_seconds=17.0), 1) == 17.0
    assert next_delay(RateLimited("slow", retry_after_seconds=0.5), 3) == 0.5


def test_a_rate_limit_longer_than_the_maximum_wait_gives_up() -> None:
    too_long = RateLimited("slow", retry_after_seconds=MAX_RATE_LIMIT_WAIT_SECONDS + 1)

    assert next_delay(too_long, 1) is None


def test_unavailable_backs_off_exponentially_up_to_the_cap() -> None:
    delays = [next_delay(Unavailable("down"), attempt, max_attempts=20)
              for attempt in range(1, 9)]

    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, BACKOFF_CAP_SECONDS, BACKOFF_CAP_SECONDS,
                      BACKOFF_CAP_SECONDS]


def test_nothing_is_retried_after_the_last_attempt() -> None:
    assert next_delay(Unavailable("down"), 5, max_attempts=5) is None
    assert next_delay(RateLimited("slow", retry_after_seconds=1.0), 5, max_attempts=5) is None


class ScriptedProvider:
    """A provider that raises or answers from a script (for the loop alone; the adapters
    are tested over HTTP)."""

    name = "scripted"
    default_model = "scripted-1"

    def __init__(self, *outcomes: ProviderError | str) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.limiter = ProviderLimiter(requests_per_minute=100)

    def complete(self, request: ChatRequest) -> Completion:
        """Play the next outcome."""
        self.calls += 1
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, ProviderError):
            raise outcome
        return Completion(outcome, 5, self.default_model)


def test_cancellation_is_checked_between_waits() -> None:
    provider = ScriptedProvider(Unavailable("down"), Unavailable("down"), "late")
    cancelled = threading.Event()

    def check_cancelled() -> None:
        if cancelled.is_set():
            raise TaskCancelled("cancelled")

    with pytest.raises(TaskCancelled):
        complete_with_retries(provider, REQUEST, sleep=lambda seconds: cancelled.set(),
                              check_cancelled=check_cancelled)

    assert provider.calls == 1


def test_a_rate_limit_puts_the_provider_in_cooldown() -> None:
    provider = ScriptedProvider(RateLimited("slow", retry_after_seconds=20.0), "ok")

    complete_with_retries(provider, REQUEST, sleep=lambda seconds: None, clock=lambda: 500.0)

    assert provider.limiter.cooldown_until == 520.0
    assert provider.limiter.snapshot(500.0)["remaining_requests_per_minute"] == 98


def test_a_provider_without_a_limiter_is_still_retried() -> None:
    provider = ScriptedProvider(Unavailable("down"), "ok")
    del provider.limiter
    waits: list[float] = []

    assert complete_with_retries(provider, REQUEST, sleep=waits.append).text == "ok"
    assert waits == [1.0]
