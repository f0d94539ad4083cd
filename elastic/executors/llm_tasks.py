"""The LLM task types: ``agent_action`` (a chat) and ``code_generation`` (a prompt for code).

Both send one chat request through the worker's provider (``context.provider``) with
the shared retry policy, and answer ``success``, ``output``, ``tokens_used``,
``model`` and ``provider``; ``code_generation`` adds ``code``, the code block taken
from the answer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from elastic.errors import InvalidTask
from elastic.executors.base import ExecutionContext
from elastic.providers.base import (
    ChatRequest,
    Completion,
    NoProvider,
    Provider,
    complete_with_retries,
)
from elastic.tasks import MAX_ESTIMATED_TOKENS

ROLES = ("system", "user", "assistant")
DEFAULT_LANGUAGE = "python"
MAX_TEMPERATURE = 2.0
LANGUAGE_ALIASES = {
    "py": "python", "python3": "python", "js": "javascript", "ts": "typescript",
    "sh": "bash", "shell": "bash", "c++": "cpp", "rs": "rust", "golang": "go",
}
FENCED_BLOCK = re.compile(
    r"^[ ]{0,3}(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n]*)\n"
    r"(?P<code>.*?)(?:^[ ]{0,3}(?P=fence)[ \t]*$|\Z)",
    re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class CodeRequest:
    """A validated code_generation task: the chat to send and the language asked for."""

    chat: ChatRequest
    language: str


class AgentAction:
    """``agent_action``: send ``messages`` to the worker's LLM and return its answer."""

    name = "agent_action"

    def validate(self, data: Mapping[str, Any]) -> ChatRequest:
        """``messages`` (required), ``model``, ``temperature`` and ``max_tokens``."""
        require_object(data)
        return ChatRequest(validate_messages(data.get("messages")), **validate_options(data))

    def run(self, params: ChatRequest, context: ExecutionContext) -> dict[str, Any]:
        """One chat call through ``context.provider``."""
        provider = provider_of(context, self.name)
        return llm_result(ask(provider, params, context), provider)


class CodeGeneration:
    """``code_generation``: ask the worker's LLM for code; the result adds ``code``."""

    name = "code_generation"

    def validate(self, data: Mapping[str, Any]) -> CodeRequest:
        """``prompt`` (required), ``language`` (default python), ``model``, ``temperature``
        and ``max_tokens``."""
        require_object(data)
        prompt = data.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidTask("must be a non-empty string", field="prompt")
        language = data.get("language", DEFAULT_LANGUAGE)
        if not isinstance(language, str) or not language.strip():
            raise InvalidTask("must be a language name such as python", field="language")
        language = language.strip()
        chat = ChatRequest(code_messages(prompt, language), **validate_options(data))
        return CodeRequest(chat, language)

    def run(self, params: CodeRequest, context: ExecutionContext) -> dict[str, Any]:
        """One chat call, and the code block taken from its answer."""
        provider = provider_of(context, self.name)
        completion = ask(provider, params.chat, context)
        return {**llm_result(completion, provider),
                "code": extract_code(completion.text, params.language)}


def require_object(data: object) -> None:
    """Raise ``InvalidTask`` unless the task's data is a JSON object."""
    if not isinstance(data, Mapping):
        raise InvalidTask("must be a JSON object", field="data")


def validate_messages(value: object) -> list[dict[str, str]]:
    """The chat messages as plain ``{"role", "content"}`` dicts.

    Raises:
        InvalidTask: naming the message and field, e.g. ``messages[1].role``.
    """
    if not isinstance(value, list) or not value:
        raise InvalidTask("must be a non-empty list of {role, content} objects",
                          field="messages")
    messages = [validate_message(item, index) for index, item in enumerate(value)]
    if all(message["role"] == "system" for message in messages):
        raise InvalidTask("needs at least one user or assistant message", field="messages")
    return messages


def validate_message(item: object, index: int) -> dict[str, str]:
    """One message, checked; ``index`` locates it in the error."""
    where = f"messages[{index}]"
    if not isinstance(item, Mapping):
        raise InvalidTask("must be an object with role and content", field=where)
    role = item.get("role")
    if role not in ROLES:
        raise InvalidTask(f"must be one of {', '.join(ROLES)}, got {role!r}",
                          field=f"{where}.role")
    content = item.get("content")
    if not isinstance(content, str):
        raise InvalidTask("must be a string", field=f"{where}.content")
    return {"role": role, "content": content}


def validate_options(data: Mapping[str, Any]) -> dict[str, Any]:
    """``model``, ``temperature`` and ``max_tokens`` (each optional), checked."""
    model = data.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise InvalidTask("must be a model name", field="model")
    temperature = data.get("temperature")
    if temperature is not None and not (is_number(temperature)
                                        and 0 <= temperature <= MAX_TEMPERATURE):
        raise InvalidTask("must be a number from 0 to 2", field="temperature")
    max_tokens = data.get("max_tokens")
    if max_tokens is not None and not (isinstance(max_tokens, int) and not isinstance(
            max_tokens, bool) and 1 <= max_tokens <= MAX_ESTIMATED_TOKENS):
        raise InvalidTask(f"must be an integer from 1 to {MAX_ESTIMATED_TOKENS}",
                          field="max_tokens")
    return {"model": model, "temperature": temperature, "max_tokens": max_tokens}


def is_number(value: object) -> bool:
    """Whether ``value`` is an int or a float (a bool is not a number here)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def code_messages(prompt: str, language: str) -> list[dict[str, str]]:
    """The chat for a code_generation prompt: a system message asking for one fenced
    block in ``language``, then the prompt."""
    system = (f"You write {language} code. Answer with the complete code in a single fenced "
              f"code block tagged {language}, followed by at most a short explanation.")
    return [{"role": "system", "content": system}, {"role": "user", "content": prompt}]


def extract_code(text: str, language: str) -> str:
    """The first fenced code block of ``text`` tagged with ``language`` (or an alias), else
    its first fenced block, else the whole text (stripped). An unclosed last block counts."""
    blocks = [(normal_language(m.group("info")), m.group("code"))
              for m in FENCED_BLOCK.finditer(text)]
    wanted = normal_language(language)
    for tag, code in blocks:
        if tag == wanted:
            return code.rstrip("\n")
    return blocks[0][1].rstrip("\n") if blocks else text.strip()


def normal_language(info: str) -> str:
    """A fence's language tag (its first word) in lower case, aliases resolved."""
    words = info.strip().split()
    tag = words[0].lower().lstrip(".{") if words else ""
    return LANGUAGE_ALIASES.get(tag, tag)


def provider_of(context: ExecutionContext, task_type: str) -> Provider:
    """The worker's LLM provider.

    Raises:
        NoProvider: when the worker has none.
    """
    if context.provider is None:
        raise NoProvider(f"this worker has no LLM provider, so it cannot run {task_type} "
                         "(start it with --type deepseek, groq or gemini)")
    return context.provider


def ask(provider: Provider, request: ChatRequest, context: ExecutionContext) -> Completion:
    """The provider's answer, with the shared retry policy; a cancel wakes the waits."""
    return complete_with_retries(provider, request, sleep=context.cancelled.wait,
                                 check_cancelled=context.check_cancelled)


def llm_result(completion: Completion, provider: Provider) -> dict[str, Any]:
    """The result fields every LLM task has."""
    return {"success": True, "output": completion.text, "tokens_used": completion.tokens_used,
            "model": completion.model, "provider": provider.name}
