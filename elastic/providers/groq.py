"""The Groq adapter: Groq's OpenAI-compatible chat completions through the ``groq`` SDK.

``POST {GROQ_BASE_URL or https://api.groq.com}/openai/v1/chat/completions`` with the
key as a bearer token. The answer budget is sent as ``max_completion_tokens`` (Groq's
name; ``max_tokens`` is deprecated there). Tokens used are ``usage.total_tokens``.
The client is built with ``max_retries=0``: the SDK would otherwise retry 429s and
5xx twice by itself. Its ``APIStatusError`` subclasses carry ``status_code`` and the
response (for ``retry-after``); ``APIConnectionError`` covers refused connections and,
through ``APITimeoutError``, timeouts. A 429 on a per-day limit ("tokens per day
(TPD)", "requests per day (RPD)") is an exhausted quota, not a short rate limit.
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

from elastic.providers.base import (
    ChatRequest,
    Completion,
    ProviderError,
    QuotaExhausted,
    Rejected,
    SdkProvider,
    Unavailable,
    Unreachable,
    error_for_status,
    import_sdk,
    parse_retry_after,
    read_api_key,
    redact,
)
from elastic.providers.limits import key_fingerprint

KEY_VARIABLE = "GROQ_API_KEY"
DEFAULT_DAILY_PAUSE_SECONDS = 3600.0


class GroqProvider(SdkProvider):
    """Chat with a model on Groq (default ``llama-3.3-70b-versatile``)."""

    name = "groq"
    DEFAULT_MODEL = "llama-3.3-70b-versatile"
    MODEL_ALIASES: ClassVar[dict[str, str]] = {"llama-3.3-70b": "llama-3.3-70b-versatile"}

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        # The key first: it is checked in microseconds, the SDK takes a second to import.
        self._api_key = read_api_key(KEY_VARIABLE, where="https://console.groq.com/keys")
        self.key_id = key_fingerprint(self._api_key)
        self.sdk = import_sdk("groq", "groq", provider="groq")
        self.base_url = self.base_url or os.environ.get("GROQ_BASE_URL") or None
        self.client = self.sdk.Groq(api_key=self._api_key, base_url=self.base_url,
                                    max_retries=0, timeout=self.timeout_seconds)

    def send(self, request: ChatRequest) -> Completion:
        """One ``chat.completions.create`` call."""
        try:
            response = self.client.chat.completions.create(**completion_arguments(request))
        except self.sdk.GroqError as error:
            raise self.translate(error) from None
        if not response.choices:
            raise Unavailable("groq: the answer had no choices")
        tokens = response.usage.total_tokens if response.usage else 0
        return Completion(text=response.choices[0].message.content or "", tokens_used=tokens,
                          model=response.model or str(request.model))

    def probe(self) -> None:
        """``GET /openai/v1/models``: the models the key may use."""
        try:
            self.client.with_options(timeout=self.probe_timeout_seconds).models.list()
        except self.sdk.GroqError as error:
            raise self.translate(error) from None

    def translate(self, error: Exception) -> ProviderError:
        """The ``ProviderError`` for a ``groq.GroqError``."""
        if isinstance(error, self.sdk.APIStatusError):
            return self.translate_status(error)
        if isinstance(error, self.sdk.APIConnectionError):
            where = self.base_url or "api.groq.com"
            return Unreachable(f"groq: {type(error).__name__}: {error.message} ({where})")
        return Unavailable(redact(f"groq: {type(error).__name__}: {error}", self._api_key))

    def translate_status(self, error: Any) -> ProviderError:
        """The error for an HTTP error answer (``groq.APIStatusError``)."""
        status = error.status_code
        detail = redact(provider_message(error.body, error.message), self._api_key)
        if status in (401, 403):
            return Rejected(f"groq: the key in {KEY_VARIABLE} was refused: {detail} "
                            f"(HTTP {status})")
        now = time.time()
        retry_after = parse_retry_after(error.response.headers.get("retry-after"), now)
        message = f"groq: {detail} (HTTP {status})"
        if status == 429 and is_daily_limit(detail):
            pause = DEFAULT_DAILY_PAUSE_SECONDS if retry_after is None else retry_after
            return QuotaExhausted(message, reset_at=now + pause)
        return error_for_status(status, message, retry_after_seconds=retry_after)


def completion_arguments(request: ChatRequest) -> dict[str, Any]:
    """Keyword arguments for ``chat.completions.create``; unset options are left out."""
    arguments: dict[str, Any] = {"model": request.model, "messages": request.messages}
    if request.temperature is not None:
        arguments["temperature"] = request.temperature
    if request.max_tokens is not None:
        arguments["max_completion_tokens"] = request.max_tokens
    return arguments


def provider_message(body: object, fallback: str) -> str:
    """``error.message`` from an OpenAI-style error body, else ``fallback``."""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = body["error"].get("message")
        if message:
            return str(message)
    return fallback


def is_daily_limit(message: str) -> bool:
    """Whether a Groq rate-limit message is about a per-day limit (RPD or TPD)."""
    lowered = message.lower()
    return "per day" in lowered or "(rpd)" in lowered or "(tpd)" in lowered
