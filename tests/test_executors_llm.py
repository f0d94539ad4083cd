"""agent_action and code_generation: validation, and runs through real providers on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from standins.groq_standin import GroqStandIn, error_body
from standins.ollama_standin import OllamaStandIn

from elastic.errors import InvalidTask, TaskCancelled
from elastic.executors import get_executor
from elastic.executors.base import ExecutionContext
from elastic.executors.llm_tasks import AgentAction, CodeGeneration, CodeRequest, extract_code
from elastic.providers import ChatRequest, open_provider
from elastic.providers.base import NoProvider, Provider

USER = {"role": "user", "content": "Summarise the genome."}


@pytest.fixture
def standin() -> Iterator[OllamaStandIn]:
    """An Ollama stand-in."""
    with OllamaStandIn().serving() as running:
        yield running


@pytest.fixture
def provider(standin: OllamaStandIn, monkeypatch: pytest.MonkeyPatch) -> Provider:
    """The provider a deepseek worker has: Ollama, found through ``OLLAMA_HOST``."""
    monkeypatch.setenv("OLLAMA_HOST", str(standin.base_url))
    return open_provider("ollama", {"timeout_seconds": 5})


def context_with(provider: Provider | None) -> ExecutionContext:
    """An execution context for one task."""
    return ExecutionContext(task_id="task-1", provider=provider)


# -- validation -----------------------------------------------------------------------------

def test_an_agent_action_becomes_a_chat_request() -> None:
    data = {"messages": [{"role": "system", "content": "Be brief."}, USER],
            "model": "llama-3.3-70b", "temperature": 0.8, "max_tokens": 300}

    request = AgentAction().validate(data)

    assert request == ChatRequest(data["messages"], model="llama-3.3-70b", temperature=0.8,
                                  max_tokens=300)


def test_the_seed_example_is_valid_with_integer_temperature_and_no_max_tokens() -> None:
    request = AgentAction().validate({"messages": [USER], "temperature": 1})

    assert (request.model, request.temperature, request.max_tokens) == (None, 1, None)


@pytest.mark.parametrize(("data", "field"), [
    ({}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": "hello"}, "messages"),
    ({"messages": [USER, {"role": "robot", "content": "beep"}]}, "messages[1].role"),
    ({"messages": [{"role": "user"}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": 42}]}, "messages[0].content"),
    ({"messages": [USER, USER, "hi"]}, "messages[2]"),
    ({"messages": [{"role": "system", "content": "only rules"}]}, "messages"),
    ({"messages": [USER], "model": ""}, "model"),
    ({"messages": [USER], "model": 7}, "model"),
    ({"messages": [USER], "temperature": 2.5}, "temperature"),
    ({"messages": [USER], "temperature": -0.1}, "temperature"),
    ({"messages": [USER], "temperature": True}, "temperature"),
    ({"messages": [USER], "temperature": "hot"}, "temperature"),
    ({"messages": [USER], "max_tokens": 0}, "max_tokens"),
    ({"messages": [USER], "max_tokens": 1.5}, "max_tokens"),
])
def test_a_bad_agent_action_names_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidTask) as caught:
        AgentAction().validate(data)

    assert caught.value.field == field
    assert f"field '{field}'" in caught.value.message


def test_task_data_that_is_not_an_object_is_invalid() -> None:
    with pytest.raises(InvalidTask) as caught:
        AgentAction().validate(["not", "an", "object"])  # type: ignore[arg-type]

    assert caught.value.field == "data"


def test_a_code_generation_defaults_to_python_and_asks_for_one_block() -> None:
    params = CodeGeneration().validate({"prompt": "Reverse a string."})

    assert params.language == "python"
    system, user = params.chat.messages
    assert system["role"] == "system" and "python" in system["content"]
    assert user == {"role": "user", "content": "Reverse a string."}


@pytest.mark.parametrize(("data", "field"), [
    ({}, "prompt"),
    ({"prompt": "   "}, "prompt"),
    ({"prompt": ["a"]}, "prompt"),
    ({"prompt": "x", "language": 3}, "language"),
    ({"prompt": "x", "language": ""}, "language"),
    ({"prompt": "x", "max_tokens": -1}, "max_tokens"),
])
def test_a_bad_code_generation_names_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidTask) as caught:
        CodeGeneration().validate(data)

    assert caught.value.field == field


def test_both_task_types_are_registered() -> None:
    assert isinstance(get_executor("agent_action"), AgentAction)
    assert isinstance(get_executor("code_generation"), CodeGeneration)


# -- code extraction ------------------------------------------------------------------------

@pytest.mark.parametrize(("answer", "language", "code"), [
    ("Here:\n```python\ndef f():\n    return 1\n```\nDone.", "python", "def f():\n    return 1"),
    ("```\nplain\n```\nthen\n```py\nx = 1\n```", "python", "x = 1"),
    ("```bash\nls\n```\n```rust\nfn main() {}\n```", "rust", "fn main() {}"),
    ("```js\nlet a = 1;\n```", "python", "let a = 1;"),
    ("No fences at all.\n", "python", "No fences at all."),
    ("```python\ncut off by max_tokens", "python", "cut off by max_tokens"),
    ("~~~~python\nprint('```')\n~~~~", "python", "print('```')"),
])
def test_the_code_is_the_first_block_in_the_language_else_the_first_else_all(
        answer: str, language: str, code: str) -> None:
    assert extract_code(answer, language) == code


# -- runs -----------------------------------------------------------------------------------

def test_an_agent_action_answers_with_the_provider_output_and_tokens(
        provider: Provider, standin: OllamaStandIn) -> None:
    standin.enqueue_reply("The genome favours speed.", tokens=77)
    executor = AgentAction()

    result = executor.run(executor.validate({"messages": [USER], "temperature": 0.4}),
                          context_with(provider))

    assert result == {"success": True, "output": "The genome favours speed.",
                      "tokens_used": 77, "model": "deepseek-coder:6.7b", "provider": "ollama"}
    [sent] = standin.requests
    assert sent.json["messages"] == [USER]
    assert sent.json["options"] == {"temperature": 0.4}


def test_a_code_generation_answers_with_the_code_block(provider: Provider,
                                                       standin: OllamaStandIn) -> None:
    standin.enqueue_reply("Sure:\n```go\nfunc Rev() {}\n```\nIt reverses.", tokens=40)
    executor = CodeGeneration()
    params: CodeRequest = executor.validate({"prompt": "Reverse a string.", "language": "go"})

    result = executor.run(params, context_with(provider))

    assert result["code"] == "func Rev() {}"
    assert result["output"].startswith("Sure:")
    assert (result["tokens_used"], result["provider"]) == (40, "ollama")
    assert "go" in standin.requests[0].json["messages"][0]["content"]


def test_a_worker_without_a_provider_cannot_run_llm_tasks() -> None:
    executor = AgentAction()

    with pytest.raises(NoProvider, match="this worker has no LLM provider"):
        executor.run(executor.validate({"messages": [USER]}), context_with(None))


def test_a_task_cancelled_before_the_call_sends_nothing(provider: Provider,
                                                        standin: OllamaStandIn) -> None:
    context = context_with(provider)
    context.cancelled.set()
    executor = AgentAction()

    with pytest.raises(TaskCancelled):
        executor.run(executor.validate({"messages": [USER]}), context)

    assert standin.requests == []


def test_a_cancel_wakes_a_task_waiting_out_a_rate_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    with GroqStandIn().serving() as groq:
        groq.enqueue_error(429, error_body("slow down", "requests", "rate_limit_exceeded"),
                           {"retry-after": "60"})
        monkeypatch.setenv("GROQ_API_KEY", "gsk_standin")
        monkeypatch.setenv("GROQ_BASE_URL", str(groq.base_url))
        context = context_with(open_provider("groq"))
        executor = CodeGeneration()
        threading.Timer(0.2, context.cancelled.set).start()

        with pytest.raises(TaskCancelled):
            executor.run(executor.validate({"prompt": "Reverse a string."}), context)

        assert len(groq.requests) == 1
