"""The Groq adapter: the real ``groq`` SDK over real HTTP to a loopback stand-in."""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterator

import pytest
from standins.groq_standin import GroqStandIn, daily_limit_reached, error_body, model_not_found
from standins.server import serve_app

from elastic.providers import ChatRequest, open_provider
from elastic.providers.base import (
    MissingApiKey,
    Provider,
    QuotaExhausted,
    RateLimited,
    Rejected,
    Unavailable,
    complete_with_retries,
)

KEY = "gsk_standin_secret_0123456789abcdef"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}]


@pytest.fixture
def standin() -> Iterator[GroqStandIn]:
    """A Groq stand-in that accepts only ``KEY``."""
    with GroqStandIn(api_key=KEY).serving() as running:
        yield running


@pytest.fixture
def provider(standin: GroqStandIn, monkeypatch: pytest.MonkeyPatch) -> Provider:
    """A Groq provider pointed at the stand-in through the environment."""
    monkeypatch.setenv("GROQ_API_KEY", KEY)
    monkeypatch.setenv("GROQ_BASE_URL", str(standin.base_url))
    return open_provider("groq", {"timeout_seconds": 5})


def test_a_reply_carries_the_text_model_and_tokens_the_service_reported(
        provider: Provider, standin: GroqStandIn) -> None:
    standin.enqueue_reply("Hello there.", tokens=42, model="llama-3.1-8b-instant")

    completion = provider.complete(ChatRequest(MESSAGES, model="llama-3.1-8b-instant",
                                               temperature=0.3, max_tokens=64))

    assert (completion.text, completion.tokens_used) == ("Hello there.", 42)
    assert completion.model == "llama-3.1-8b-instant"
    [sent] = standin.requests
    assert (sent.method, sent.path) == ("POST", "/openai/v1/chat/completions")
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.json == {"model": "llama-3.1-8b-instant", "messages": MESSAGES,
                         "temperature": 0.3, "max_completion_tokens": 64}


def test_unset_options_come_from_the_settings_or_are_left_out(
        standin: GroqStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROQ_API_KEY", KEY)
    monkeypatch.setenv("GROQ_BASE_URL", str(standin.base_url))
    plain = open_provider("groq")
    tuned = open_provider("groq", {"model": "gemma2-9b-it", "temperature": 0.5,
                                   "max_tokens": 10})

    plain.complete(ChatRequest(MESSAGES))
    tuned.complete(ChatRequest(MESSAGES))

    assert standin.requests[0].json == {"model": "llama-3.3-70b-versatile", "messages": MESSAGES}
    assert standin.requests[1].json == {"model": "gemma2-9b-it", "messages": MESSAGES,
                                        "temperature": 0.5, "max_completion_tokens": 10}


def test_a_429_is_rate_limited_for_the_retry_after_seconds_and_not_retried_by_the_sdk(
        provider: Provider, standin: GroqStandIn) -> None:
    standin.enqueue_error(429, error_body("Rate limit reached on requests per minute (RPM)",
                                          "requests", "rate_limit_exceeded"),
                          {"retry-after": "7"})

    with pytest.raises(RateLimited) as caught:
        provider.complete(ChatRequest(MESSAGES))

    assert caught.value.retry_after_seconds == 7.0
    assert len(standin.requests) == 1


def test_a_per_day_429_is_an_exhausted_quota_until_retry_after(
        provider: Provider, standin: GroqStandIn) -> None:
    standin.enqueue(daily_limit_reached())

    with pytest.raises(QuotaExhausted) as caught:
        provider.complete(ChatRequest(MESSAGES))

    assert caught.value.reset_at == pytest.approx(time.time() + 578, abs=5)
    assert "tokens per day" in caught.value.message


def test_a_wrong_key_is_rejected_naming_the_variable_but_never_the_key(
        standin: GroqStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "gsk_wrong_secret_fedcba9876543210"
    monkeypatch.setenv("GROQ_API_KEY", wrong)
    monkeypatch.setenv("GROQ_BASE_URL", str(standin.base_url))

    with pytest.raises(Rejected) as caught:
        open_provider("groq").complete(ChatRequest(MESSAGES))

    shown = "".join(traceback.format_exception(caught.value))
    assert "GROQ_API_KEY" in caught.value.message and "HTTP 401" in caught.value.message
    assert wrong not in shown and KEY not in shown
    assert len(standin.requests) == 1


def test_a_missing_key_names_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GROQ_API_KEY", raising=False)

    with pytest.raises(MissingApiKey, match="GROQ_API_KEY is not set"):
        open_provider("groq")


def test_an_unknown_model_is_rejected(provider: Provider, standin: GroqStandIn) -> None:
    standin.enqueue(model_not_found("llama-9000"))

    with pytest.raises(Rejected, match=r"llama-9000.*HTTP 404"):
        provider.complete(ChatRequest(MESSAGES, model="llama-9000"))


def test_a_bad_request_is_rejected(provider: Provider, standin: GroqStandIn) -> None:
    standin.enqueue_error(400, error_body("'messages' must be non-empty",
                                          "invalid_request_error", "invalid_value"))

    with pytest.raises(Rejected, match="HTTP 400"):
        provider.complete(ChatRequest(MESSAGES))


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_server_error_is_unavailable(provider: Provider, standin: GroqStandIn,
                                       status: int) -> None:
    standin.enqueue_error(status, error_body("internal error", "internal_server_error", "x"))

    with pytest.raises(Unavailable, match=f"HTTP {status}"):
        provider.complete(ChatRequest(MESSAGES))

    assert len(standin.requests) == 1


def test_a_timeout_is_unavailable(standin: GroqStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROQ_API_KEY", KEY)
    monkeypatch.setenv("GROQ_BASE_URL", str(standin.base_url))
    standin.enqueue_reply("too late", delay_seconds=1.0)

    with pytest.raises(Unavailable, match="APITimeoutError"):
        open_provider("groq", {"timeout_seconds": 0.2}).complete(ChatRequest(MESSAGES))


def test_a_refused_connection_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve_app(lambda environ, start_response: []) as closed_soon:
        pass
    monkeypatch.setenv("GROQ_API_KEY", KEY)
    monkeypatch.setenv("GROQ_BASE_URL", closed_soon)

    with pytest.raises(Unavailable, match="APIConnectionError"):
        open_provider("groq", {"timeout_seconds": 2}).complete(ChatRequest(MESSAGES))


def test_retries_wait_the_retry_after_then_succeed(provider: Provider,
                                                   standin: GroqStandIn) -> None:
    standin.enqueue_error(429, error_body("slow down", "requests", "rate_limit_exceeded"),
                          {"retry-after": "3"})
    standin.enqueue_reply("finally", tokens=12)
    waits: list[float] = []

    completion = complete_with_retries(provider, ChatRequest(MESSAGES), sleep=waits.append)

    assert completion.text == "finally"
    assert waits == [3.0]
    assert len(standin.requests) == 2


def test_retries_back_off_on_server_errors(provider: Provider, standin: GroqStandIn) -> None:
    for _ in range(2):
        standin.enqueue_error(503, error_body("over capacity", "service_unavailable", "x"))
    waits: list[float] = []

    complete_with_retries(provider, ChatRequest(MESSAGES), sleep=waits.append)

    assert waits == [1.0, 2.0]
    assert len(standin.requests) == 3


def test_retries_give_up_at_once_on_a_rejection(provider: Provider,
                                                standin: GroqStandIn) -> None:
    standin.enqueue(model_not_found("nope"))
    waits: list[float] = []

    with pytest.raises(Rejected):
        complete_with_retries(provider, ChatRequest(MESSAGES, model="nope"), sleep=waits.append)

    assert waits == []
    assert len(standin.requests) == 1


def test_the_limiter_counts_the_tokens_used_and_rests_after_a_rate_limit(
        provider: Provider, standin: GroqStandIn) -> None:
    standin.enqueue_error(429, error_body("slow down", "requests", "rate_limit_exceeded"),
                          {"retry-after": "30"})
    standin.enqueue_reply("ok", tokens=40)
    limiter = open_provider("groq", {"limits": {"tokens_per_minute": 1000,
                                                "requests_per_minute": 10}}).limiter
    provider.limiter = limiter  # type: ignore[attr-defined]

    complete_with_retries(provider, ChatRequest(MESSAGES), sleep=lambda seconds: None,
                          clock=lambda: 1000.0)

    snapshot = limiter.snapshot(1000.0)
    assert snapshot["remaining_tokens_per_minute"] == 960
    assert snapshot["remaining_requests_per_minute"] == 8
    assert snapshot["cooldown_until"] == 1030.0


def test_the_standin_rate_limits_past_its_requests_per_minute(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with GroqStandIn(api_key=KEY, max_requests_per_minute=2).serving() as busy:
        monkeypatch.setenv("GROQ_API_KEY", KEY)
        monkeypatch.setenv("GROQ_BASE_URL", str(busy.base_url))
        provider = open_provider("groq")
        provider.complete(ChatRequest(MESSAGES))
        provider.complete(ChatRequest(MESSAGES))

        with pytest.raises(RateLimited) as caught:
            provider.complete(ChatRequest(MESSAGES))

        assert caught.value.retry_after_seconds == 2.0
        assert busy.requests_in_last_minute() == 3


def test_the_seeds_short_model_name_is_sent_as_groqs_real_one(
        provider: Provider, standin: GroqStandIn) -> None:
    provider.complete(ChatRequest(MESSAGES, model="llama-3.3-70b"))
    assert standin.requests[-1].json["model"] == "llama-3.3-70b-versatile"
