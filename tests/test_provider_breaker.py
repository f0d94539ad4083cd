"""A dead LLM backend: the circuit breaker, and the providers' health probes over their real SDKs.

The breaker's rules run on a hand-driven clock; the probes and the hand-back run the
real SDKs against the loopback stand-ins, and against a port where nothing listens
(the backend down), which a stand-in then takes (the backend back).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import free_port
from standins.gemini_standin import GeminiStandIn
from standins.groq_standin import GroqStandIn
from standins.ollama_standin import OllamaStandIn

from elastic.providers import ChatRequest, open_provider
from elastic.providers.base import BackendDown, Unreachable, complete_with_retries
from elastic.providers.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker

MESSAGES = [{"role": "user", "content": "Say hello."}]
KEYS = {"GROQ_API_KEY": "gsk_breaker_test_key", "GEMINI_API_KEY": "AIza-breaker-test-key"}
URL_VARIABLES = {"ollama": "OLLAMA_HOST", "groq": "GROQ_BASE_URL", "gemini": "GEMINI_BASE_URL"}
STAND_INS: dict[str, Callable[[], Any]] = {
    "ollama": OllamaStandIn, "groq": GroqStandIn, "gemini": GeminiStandIn}


class Clock:
    """Seconds since the epoch, moved by hand."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def breaker_on(clock: Clock, changes: list[str] | None = None) -> CircuitBreaker:
    breaker = CircuitBreaker("ollama", failure_threshold=3, probe_seconds=5.0, clock=clock)
    if changes is not None:
        breaker.on_change = lambda: changes.append(breaker.state)
    return breaker


# -- the rules -----------------------------------------------------------------------------

def test_three_unavailable_errors_in_a_row_open_the_breaker_and_an_answer_resets_the_count() -> None:
    clock, changes = Clock(), []
    breaker = breaker_on(clock, changes)
    for _ in range(2):
        breaker.record_failure("cannot reach")
    breaker.record_success()
    for _ in range(2):
        breaker.record_failure("cannot reach")
    assert breaker.is_closed and changes == []
    breaker.record_failure("cannot reach 127.0.0.1:11434")
    assert breaker.state == OPEN and changes == [OPEN]
    assert breaker.snapshot() == {
        "state": OPEN, "since": "2023-11-14T22:13:20.000+00:00",
        "error": "cannot reach 127.0.0.1:11434", "next_probe_at": "2023-11-14T22:13:25.000+00:00"}


def test_an_open_breaker_probes_when_due_backs_off_while_down_and_closes_once_answered() -> None:
    clock, changes, probes = Clock(), [], []
    breaker = breaker_on(clock, changes)
    breaker.check(lambda: "connection refused")
    assert breaker.state == OPEN

    def probe(answer: str | None) -> Callable[[], str | None]:
        def run() -> str | None:
            probes.append(breaker.state)
            return answer
        return run

    clock.now += 4.9
    assert breaker.is_ready(probe(None)) is False and probes == []
    assert breaker.seconds_until_probe() == pytest.approx(0.1)
    clock.now += 0.1
    assert breaker.is_ready(probe("still refused")) is False
    assert probes == [HALF_OPEN] and breaker.seconds_until_probe() == pytest.approx(10.0)
    clock.now += 10
    assert breaker.is_ready(probe(None)) is True
    assert breaker.snapshot() == {"state": CLOSED}
    assert changes == [OPEN, HALF_OPEN, OPEN, HALF_OPEN, CLOSED]


# -- the providers' probes and the hand-back, over the real SDKs -------------------------------

@pytest.mark.parametrize("name", ["ollama", "groq", "gemini"])
def test_each_providers_health_probe_tells_a_dead_backend_from_a_live_one(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, key in KEYS.items():
        monkeypatch.setenv(variable, key)
    port = free_port()
    monkeypatch.setenv(URL_VARIABLES[name], f"http://127.0.0.1:{port}")
    provider = open_provider(name, {"timeout_seconds": 5})
    problem = provider.health_problem()
    assert problem is not None and name in problem, problem
    with STAND_INS[name]().serving(port=port) as stand_in:
        assert provider.health_problem() is None
        assert stand_in.requests == []  # a probe is no chat: nothing counted, no tokens


def test_a_task_caught_by_a_dead_backend_is_handed_back_after_three_tries_then_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv("OLLAMA_HOST", f"http://127.0.0.1:{port}")
    provider = open_provider("ollama", {"timeout_seconds": 5})
    waits: list[float] = []
    with pytest.raises(BackendDown) as caught:
        complete_with_retries(provider, ChatRequest(MESSAGES), sleep=waits.append)
    assert caught.value.hand_back and isinstance(caught.value.__cause__, Unreachable)
    assert "ollama" in caught.value.message and len(waits) == 2  # three calls, two waits
    with pytest.raises(BackendDown):
        complete_with_retries(provider, ChatRequest(MESSAGES), sleep=waits.append)
    assert len(waits) == 2  # not even tried
    assert provider.status()["breaker"]["state"] == OPEN
    with OllamaStandIn().serving(port=port) as stand_in:
        provider.breaker.check(provider.health_problem)
        stand_in.enqueue_reply("hello")
        assert complete_with_retries(provider, ChatRequest(MESSAGES)).text == "hello"
    assert provider.status()["breaker"] == {"state": CLOSED}
