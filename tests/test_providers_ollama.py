"""The Ollama adapter: the real ``ollama`` SDK over real HTTP to a loopback stand-in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from standins.ollama_standin import OllamaStandIn, model_not_found
from standins.server import ScriptedReply, serve_app

from elastic.providers import ChatRequest, open_provider
from elastic.providers.base import (
    DEFAULT_RETRY_AFTER_SECONDS,
    Provider,
    RateLimited,
    Rejected,
    Unavailable,
    complete_with_retries,
)

MESSAGES = [{"role": "system", "content": "You write code."},
            {"role": "user", "content": "Reverse a string in Python."}]


@pytest.fixture
def standin() -> Iterator[OllamaStandIn]:
    """An Ollama stand-in."""
    with OllamaStandIn().serving() as running:
        yield running


@pytest.fixture
def provider(standin: OllamaStandIn, monkeypatch: pytest.MonkeyPatch) -> Provider:
    """An Ollama provider found through ``OLLAMA_HOST``."""
    monkeypatch.setenv("OLLAMA_HOST", str(standin.base_url))
    return open_provider("ollama", {"timeout_seconds": 5})


def test_a_reply_carries_the_text_and_the_prompt_plus_answer_tokens(
        provider: Provider, standin: OllamaStandIn) -> None:
    standin.enqueue_reply("s[::-1]", tokens=30, prompt_tokens=18, model="deepseek-coder:6.7b")

    completion = provider.complete(ChatRequest(MESSAGES, temperature=0.7, max_tokens=200))

    assert (completion.text, completion.tokens_used) == ("s[::-1]", 30)
    assert completion.model == "deepseek-coder:6.7b"
    [sent] = standin.requests
    assert (sent.method, sent.path) == ("POST", "/api/chat")
    assert sent.json["model"] == "deepseek-coder:6.7b"
    assert sent.json["messages"] == MESSAGES
    assert sent.json["stream"] is False
    assert sent.json["options"] == {"temperature": 0.7, "num_predict": 200}


def test_the_settings_give_the_default_model_and_options(
        standin: OllamaStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", str(standin.base_url))
    provider = open_provider("ollama", {"model": "qwen2.5-coder:1.5b", "temperature": 0.1})

    completion = provider.complete(ChatRequest(MESSAGES))

    [sent] = standin.requests
    assert sent.json["model"] == "qwen2.5-coder:1.5b"
    assert sent.json["options"] == {"temperature": 0.1}
    assert completion.text == "echo: Reverse a string in Python."


def test_a_base_url_setting_wins_over_ollama_host(
        standin: OllamaStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "http://127.0.0.1:9")

    open_provider("ollama", {"base_url": str(standin.base_url)}).complete(ChatRequest(MESSAGES))

    assert len(standin.requests) == 1


def test_a_cached_prompt_without_prompt_eval_count_counts_the_answer_tokens(
        provider: Provider, standin: OllamaStandIn) -> None:
    standin.enqueue(ScriptedReply(200, {
        "model": "deepseek-coder:6.7b", "created_at": "2025-01-01T00:00:00Z",
        "message": {"role": "assistant", "content": "ok"}, "done": True, "eval_count": 7}))

    assert provider.complete(ChatRequest(MESSAGES)).tokens_used == 7


def test_a_model_that_is_not_pulled_is_rejected(provider: Provider,
                                                standin: OllamaStandIn) -> None:
    standin.enqueue(model_not_found("llama9"))

    with pytest.raises(Rejected, match=r'model "llama9" not found.*HTTP 404'):
        provider.complete(ChatRequest(MESSAGES, model="llama9"))


def test_a_401_from_an_authenticating_proxy_is_rejected(provider: Provider,
                                                        standin: OllamaStandIn) -> None:
    standin.enqueue_error(401, {"error": "unauthorized"})

    with pytest.raises(Rejected, match="HTTP 401"):
        provider.complete(ChatRequest(MESSAGES))


def test_a_429_is_rate_limited_for_the_default_wait(provider: Provider,
                                                    standin: OllamaStandIn) -> None:
    standin.enqueue_error(429, {"error": "too many requests"}, {"retry-after": "3"})

    with pytest.raises(RateLimited) as caught:
        provider.complete(ChatRequest(MESSAGES))

    assert caught.value.retry_after_seconds == DEFAULT_RETRY_AFTER_SECONDS


@pytest.mark.parametrize("status", [500, 503])
def test_a_server_error_is_unavailable(provider: Provider, standin: OllamaStandIn,
                                       status: int) -> None:
    standin.enqueue_error(status, {"error": "server busy, please try again."})

    with pytest.raises(Unavailable, match=f"server busy.*HTTP {status}"):
        provider.complete(ChatRequest(MESSAGES))


def test_a_timeout_is_unavailable(standin: OllamaStandIn,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", str(standin.base_url))
    standin.enqueue_reply("too late", delay_seconds=1.0)

    with pytest.raises(Unavailable, match="ReadTimeout"):
        open_provider("ollama", {"timeout_seconds": 0.2}).complete(ChatRequest(MESSAGES))


def test_a_refused_connection_is_unavailable_naming_the_host(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with serve_app(lambda environ, start_response: []) as closed_soon:
        pass
    monkeypatch.setenv("OLLAMA_HOST", closed_soon)

    with pytest.raises(Unavailable, match=f"cannot reach {closed_soon}"):
        open_provider("ollama", {"timeout_seconds": 2}).complete(ChatRequest(MESSAGES))


def test_retries_back_off_while_the_server_is_busy(provider: Provider,
                                                   standin: OllamaStandIn) -> None:
    for _ in range(3):
        standin.enqueue_error(503, {"error": "server busy"})
    waits: list[float] = []

    completion = complete_with_retries(provider, ChatRequest(MESSAGES), sleep=waits.append)

    assert completion.text.startswith("echo:")
    assert waits == [1.0, 2.0, 4.0]
    assert len(standin.requests) == 4


def test_retries_stop_after_max_attempts(provider: Provider, standin: OllamaStandIn) -> None:
    for _ in range(3):
        standin.enqueue_error(500, {"error": "boom"})
    waits: list[float] = []

    with pytest.raises(Unavailable):
        complete_with_retries(provider, ChatRequest(MESSAGES), max_attempts=3,
                              sleep=waits.append)

    assert waits == [1.0, 2.0]
    assert len(standin.requests) == 3


def test_the_standin_counts_requests_per_minute(provider: Provider,
                                                standin: OllamaStandIn) -> None:
    for _ in range(3):
        provider.complete(ChatRequest(MESSAGES))

    assert standin.requests_in_last_minute() == 3
