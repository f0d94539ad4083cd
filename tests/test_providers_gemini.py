"""The Gemini adapter: the real ``google-genai`` SDK over real HTTP to a loopback stand-in."""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from standins.gemini_standin import (
    PER_DAY_QUOTA,
    PER_MINUTE_QUOTA,
    GeminiStandIn,
    quota_error,
    status_error,
)
from standins.server import ScriptedReply, serve_app

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
from elastic.providers.gemini import gemini_contents, next_quota_reset

KEY = "AIzaStandInSecret0123456789abcdefghij"
MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi!"},
    {"role": "assistant", "content": "Hello."},
    {"role": "system", "content": "Answer in French."},
    {"role": "user", "content": "How are you?"},
]


@pytest.fixture
def standin() -> Iterator[GeminiStandIn]:
    """A Gemini stand-in that accepts only ``KEY``."""
    with GeminiStandIn(api_key=KEY).serving() as running:
        yield running


@pytest.fixture
def provider(standin: GeminiStandIn, monkeypatch: pytest.MonkeyPatch) -> Provider:
    """A Gemini provider pointed at the stand-in through the environment."""
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("GEMINI_BASE_URL", str(standin.base_url))
    return open_provider("gemini", {"timeout_seconds": 5})


def test_a_reply_carries_the_text_model_and_tokens_the_service_reported(
        provider: Provider, standin: GeminiStandIn) -> None:
    standin.enqueue_reply("Très bien.", tokens=57, model="gemini-2.0-flash-001")

    completion = provider.complete(ChatRequest(MESSAGES, temperature=0.2, max_tokens=128))

    assert (completion.text, completion.tokens_used) == ("Très bien.", 57)
    assert completion.model == "gemini-2.0-flash-001"
    [sent] = standin.requests
    assert sent.path == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert sent.headers["x-goog-api-key"] == KEY
    assert sent.json["contents"] == [
        {"role": "user", "parts": [{"text": "Hi!"}]},
        {"role": "model", "parts": [{"text": "Hello."}]},
        {"role": "user", "parts": [{"text": "How are you?"}]},
    ]
    assert sent.json["systemInstruction"]["parts"] == [
        {"text": "Be brief.\n\nAnswer in French."}]
    assert sent.json["generationConfig"] == {"temperature": 0.2, "maxOutputTokens": 128}


def test_unset_options_are_left_out_and_the_model_is_the_settings_one(
        standin: GeminiStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("GEMINI_BASE_URL", str(standin.base_url))

    open_provider("gemini", {"model": "gemini-1.5-pro"}).complete(
        ChatRequest([{"role": "user", "content": "Hi!"}]))

    [sent] = standin.requests
    assert sent.path == "/v1beta/models/gemini-1.5-pro:generateContent"
    assert "systemInstruction" not in sent.json
    assert sent.json.get("generationConfig", {}) == {}


def test_a_429_with_retry_info_is_rate_limited_for_the_retry_delay(
        provider: Provider, standin: GeminiStandIn) -> None:
    standin.enqueue(quota_error(PER_MINUTE_QUOTA, "17s"))

    with pytest.raises(RateLimited) as caught:
        provider.complete(ChatRequest(MESSAGES))

    assert caught.value.retry_after_seconds == 17.0
    assert "RESOURCE_EXHAUSTED" in caught.value.message
    assert len(standin.requests) == 1


def test_a_per_day_quota_failure_is_exhausted_until_midnight_pacific(
        provider: Provider, standin: GeminiStandIn) -> None:
    standin.enqueue(quota_error(PER_DAY_QUOTA, "47s"))

    with pytest.raises(QuotaExhausted) as caught:
        provider.complete(ChatRequest(MESSAGES))

    assert caught.value.reset_at == next_quota_reset(time.time())
    assert 0 < caught.value.reset_at - time.time() <= 25 * 3600


@pytest.mark.parametrize(("now", "reset"), [
    (datetime(2025, 1, 15, 12, 0, tzinfo=UTC), datetime(2025, 1, 16, 8, 0, tzinfo=UTC)),
    (datetime(2025, 7, 15, 12, 0, tzinfo=UTC), datetime(2025, 7, 16, 7, 0, tzinfo=UTC)),
    (datetime(2025, 7, 16, 6, 59, tzinfo=UTC), datetime(2025, 7, 16, 7, 0, tzinfo=UTC)),
])
def test_daily_quotas_reset_at_the_next_pacific_midnight(now: datetime,
                                                         reset: datetime) -> None:
    assert next_quota_reset(now.timestamp()) == reset.timestamp()


def test_a_wrong_key_is_rejected_naming_the_variable_but_never_the_key(
        standin: GeminiStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "AIzaWrongSecret9876543210zyxwvutsrqpo"
    monkeypatch.setenv("GEMINI_API_KEY", wrong)
    monkeypatch.setenv("GEMINI_BASE_URL", str(standin.base_url))

    with pytest.raises(Rejected) as caught:
        open_provider("gemini").complete(ChatRequest(MESSAGES))

    shown = "".join(traceback.format_exception(caught.value))
    assert "GEMINI_API_KEY" in caught.value.message and "HTTP 400" in caught.value.message
    assert wrong not in shown and KEY not in shown


def test_a_401_is_rejected_without_the_key(provider: Provider, standin: GeminiStandIn) -> None:
    standin.enqueue(status_error(401, "UNAUTHENTICATED",
                                 f"Request had invalid authentication credentials: {KEY}"))

    with pytest.raises(Rejected) as caught:
        provider.complete(ChatRequest(MESSAGES))

    assert "GEMINI_API_KEY" in caught.value.message
    assert KEY not in "".join(traceback.format_exception(caught.value))


def test_a_missing_key_names_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)

    with pytest.raises(MissingApiKey, match="GEMINI_API_KEY is not set"):
        open_provider("gemini")


def test_an_unknown_model_is_rejected(provider: Provider, standin: GeminiStandIn) -> None:
    standin.enqueue(status_error(404, "NOT_FOUND", "models/gemini-9 is not found for API "
                                                   "version v1beta"))

    with pytest.raises(Rejected, match=r"gemini-9.*HTTP 404 NOT_FOUND"):
        provider.complete(ChatRequest(MESSAGES, model="gemini-9"))


@pytest.mark.parametrize(("status", "word"), [(500, "INTERNAL"), (503, "UNAVAILABLE"),
                                              (504, "DEADLINE_EXCEEDED")])
def test_a_server_error_is_unavailable(provider: Provider, standin: GeminiStandIn,
                                       status: int, word: str) -> None:
    standin.enqueue(status_error(status, word, "The service is currently unavailable."))

    with pytest.raises(Unavailable, match=f"HTTP {status} {word}"):
        provider.complete(ChatRequest(MESSAGES))

    assert len(standin.requests) == 1


def test_a_blocked_prompt_is_rejected(provider: Provider, standin: GeminiStandIn) -> None:
    standin.enqueue(ScriptedReply(200, {"promptFeedback": {"blockReason": "SAFETY"},
                                        "usageMetadata": {"promptTokenCount": 5,
                                                          "totalTokenCount": 5}}))

    with pytest.raises(Rejected, match=r"prompt blocked.*SAFETY"):
        provider.complete(ChatRequest(MESSAGES))


def test_a_timeout_is_unavailable(standin: GeminiStandIn,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("GEMINI_BASE_URL", str(standin.base_url))
    standin.enqueue_reply("too late", delay_seconds=1.0)

    with pytest.raises(Unavailable, match="Timeout"):
        open_provider("gemini", {"timeout_seconds": 0.2}).complete(ChatRequest(MESSAGES))


def test_a_refused_connection_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve_app(lambda environ, start_response: []) as closed_soon:
        pass
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("GEMINI_BASE_URL", closed_soon)

    with pytest.raises(Unavailable, match="cannot reach"):
        open_provider("gemini", {"timeout_seconds": 2}).complete(ChatRequest(MESSAGES))


def test_retries_wait_the_retry_delay_then_succeed(provider: Provider,
                                                   standin: GeminiStandIn) -> None:
    standin.enqueue(quota_error(PER_MINUTE_QUOTA, "17s"))
    standin.enqueue_reply("Bonjour.", tokens=9)
    waits: list[float] = []

    completion = complete_with_retries(provider, ChatRequest(MESSAGES), sleep=waits.append)

    assert (completion.text, completion.tokens_used) == ("Bonjour.", 9)
    assert waits == [17.0]
    assert len(standin.requests) == 2


def test_retries_give_up_at_once_on_an_exhausted_quota(provider: Provider,
                                                       standin: GeminiStandIn) -> None:
    standin.enqueue(quota_error(PER_DAY_QUOTA, "47s"))
    waits: list[float] = []

    with pytest.raises(QuotaExhausted):
        complete_with_retries(provider, ChatRequest(MESSAGES), sleep=waits.append)

    assert waits == []
    assert len(standin.requests) == 1
    assert provider.limiter.cooldown_until == next_quota_reset(time.time())  # type: ignore[attr-defined]


def test_system_messages_become_the_system_instruction() -> None:
    system, contents = gemini_contents([{"role": "user", "content": "a"}])

    assert system is None
    assert contents == [{"role": "user", "parts": [{"text": "a"}]}]
