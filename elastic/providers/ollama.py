"""The Ollama adapter: a local (or LAN) Ollama server through the ``ollama`` SDK.

``POST /api/chat`` with ``stream: false``; temperature and the answer budget go in
``options`` (``temperature``, ``num_predict``). Tokens used are the server's
``prompt_eval_count + eval_count``. The host is ``OLLAMA_HOST`` (the SDK's own rule;
default ``http://127.0.0.1:11434``) unless a base URL is configured; the SDK itself
sends ``OLLAMA_API_KEY`` as a bearer token when that is set. The SDK never
retries; it raises ``ollama.ResponseError`` (with ``status_code``) for an error
answer, the built-in ``ConnectionError`` when nothing listens, and lets httpx's
timeouts through.
"""

from __future__ import annotations

import os
from typing import Any

from elastic.providers.base import (
    ChatRequest,
    Completion,
    ProviderError,
    SdkProvider,
    Unreachable,
    error_for_status,
    import_sdk,
    redact,
    transport_errors,
)
from elastic.providers.limits import key_fingerprint

DEFAULT_HOST = "http://127.0.0.1:11434"


class OllamaProvider(SdkProvider):
    """Chat with a model served by Ollama (default ``deepseek-coder:6.7b``)."""

    name = "ollama"
    DEFAULT_MODEL = "deepseek-coder:6.7b"

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.sdk = import_sdk("ollama", "ollama", provider="ollama")
        self.host = self.base_url or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST
        self.key_id = key_fingerprint(os.environ.get("OLLAMA_API_KEY"))
        self.client = self.sdk.Client(host=self.host, timeout=self.timeout_seconds)
        self.probe_client = self.sdk.Client(host=self.host, timeout=self.probe_timeout_seconds)

    def send(self, request: ChatRequest) -> Completion:
        """One non-streaming ``/api/chat`` call."""
        try:
            response = self.client.chat(model=request.model, messages=request.messages,
                                        options=chat_options(request), stream=False)
        except Exception as error:
            raise self.translated(error) from None
        tokens = (response.prompt_eval_count or 0) + (response.eval_count or 0)
        return Completion(text=response.message.content or "", tokens_used=tokens,
                          model=response.model or str(request.model))

    def probe(self) -> None:
        """``GET /api/tags``: the models this Ollama has pulled."""
        try:
            self.probe_client.list()
        except Exception as error:
            raise self.translated(error) from None

    def translated(self, error: Exception) -> Exception:
        """The ``ProviderError`` for an SDK exception, or ``error`` itself if not the SDK's."""
        return self.translate(error) or error

    def translate(self, error: Exception) -> ProviderError | None:
        """The ``ProviderError`` for an SDK exception, or None for one that is not the SDK's."""
        if isinstance(error, self.sdk.ResponseError):
            status = error.status_code if error.status_code > 0 else 502
            detail = redact(error.error, os.environ.get("OLLAMA_API_KEY"))
            return error_for_status(status, f"ollama: {detail} (HTTP {error.status_code})")
        if isinstance(error, (ConnectionError, *transport_errors())):
            return Unreachable(f"ollama: cannot reach {self.host}: "
                               f"{type(error).__name__}: {error}")
        return None


def chat_options(request: ChatRequest) -> dict[str, Any]:
    """Ollama ``options`` for the request: ``temperature`` and ``num_predict`` when set."""
    options: dict[str, Any] = {}
    if request.temperature is not None:
        options["temperature"] = request.temperature
    if request.max_tokens is not None:
        options["num_predict"] = request.max_tokens
    return options
