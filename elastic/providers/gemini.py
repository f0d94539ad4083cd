"""The Gemini adapter: the Gemini API through Google's Gen AI SDK (``google-genai``).

``POST {base}/v1beta/models/{model}:generateContent`` with the key in the
``x-goog-api-key`` header. The API version is pinned to ``v1beta`` (google-genai 3.x
would otherwise pick ``v1``). System messages become ``systemInstruction``; the
others become ``contents`` with roles ``user`` and ``model``. Temperature and the
answer budget go in ``generationConfig`` (``temperature``, ``maxOutputTokens``).
Tokens used are ``usageMetadata.totalTokenCount``.

The SDK does not retry unless given ``retry_options``; it is given
``attempts=1`` so that it never does. Error answers raise ``errors.APIError``
(``ClientError`` 4xx, ``ServerError`` 5xx) with ``code`` and ``details`` (the whole
JSON body); transport failures come through as httpx/httpx2 exceptions. A 429 whose
``QuotaFailure`` names a per-day quota is an exhausted quota until midnight Pacific
time (when Gemini's daily quotas reset); any other 429 is a rate limit for its
``RetryInfo.retryDelay``.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from elastic.providers.base import (
    ChatRequest,
    Completion,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    Rejected,
    SdkProvider,
    Unreachable,
    error_for_status,
    import_sdk,
    read_api_key,
    redact,
    transport_errors,
)
from elastic.providers.limits import key_fingerprint

KEY_VARIABLE = "GEMINI_API_KEY"
API_VERSION = "v1beta"
QUOTA_TIMEZONE = "America/Los_Angeles"
PACIFIC_STANDARD_TIME = timezone(timedelta(hours=-8))
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"


class GeminiProvider(SdkProvider):
    """Chat with a Gemini model (default ``gemini-2.0-flash``)."""

    name = "gemini"
    DEFAULT_MODEL = "gemini-2.0-flash"

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        # The key first: it is checked in microseconds, the SDK takes seconds to import.
        self._api_key = read_api_key(KEY_VARIABLE, where="https://aistudio.google.com/apikey")
        self.key_id = key_fingerprint(self._api_key)
        genai = import_sdk("google.genai", "google-genai", provider="gemini")
        self.types = import_sdk("google.genai.types", "google-genai", provider="gemini")
        self.errors = import_sdk("google.genai.errors", "google-genai", provider="gemini")
        self.base_url = self.base_url or os.environ.get("GEMINI_BASE_URL") or None
        options = self.types.HttpOptions(
            base_url=self.base_url, api_version=API_VERSION,
            timeout=round(self.timeout_seconds * 1000),
            retry_options=self.types.HttpRetryOptions(attempts=1))
        self.client = genai.Client(api_key=self._api_key, vertexai=False, http_options=options)

    def send(self, request: ChatRequest) -> Completion:
        """One ``models.generate_content`` call."""
        system, contents = gemini_contents(request.messages)
        config = self.types.GenerateContentConfig(system_instruction=system,
                                                  temperature=request.temperature,
                                                  max_output_tokens=request.max_tokens)
        try:
            response = self.client.models.generate_content(model=request.model,
                                                           contents=contents, config=config)
        except (self.errors.APIError, *transport_errors()) as error:
            raise self.translate(error) from None
        if response.text is None:
            raise Rejected(f"gemini: the answer has no text ({why_no_text(response)})")
        usage = response.usage_metadata
        tokens = (usage.total_token_count or 0) if usage else 0
        return Completion(text=response.text, tokens_used=tokens,
                          model=response.model_version or str(request.model))

    def probe(self) -> None:
        """``GET /v1beta/models``: the first page of the models the key may use."""
        config = {"page_size": 1,
                  "http_options": {"timeout": round(self.probe_timeout_seconds * 1000)}}
        try:
            self.client.models.list(config=config)
        except (self.errors.APIError, *transport_errors()) as error:
            raise self.translate(error) from None

    def translate(self, error: Exception) -> ProviderError:
        """The ``ProviderError`` for an ``APIError`` or a transport failure."""
        if not isinstance(error, self.errors.APIError):
            where = self.base_url or "generativelanguage.googleapis.com"
            return Unreachable(f"gemini: cannot reach {where}: {type(error).__name__}: {error}")
        status = error.code or 500
        body = error.details if isinstance(error.details, dict) else {}
        detail = redact(error.message or error.status or "no message", self._api_key)
        if status in (401, 403) or "API_KEY_INVALID" in error_reasons(body):
            return Rejected(f"gemini: the key in {KEY_VARIABLE} was refused: {detail} "
                            f"(HTTP {status})")
        status_word = f" {error.status}" if error.status else ""
        message = f"gemini: {detail} (HTTP {status}{status_word})"
        if status == 429:
            return quota_error(body, message, now=time.time())
        return error_for_status(status, message)


def gemini_contents(messages: list[dict[str, str]]) -> tuple[str | None, list[dict[str, Any]]]:
    """Split chat messages into Gemini's system instruction (system messages joined by a
    blank line, or None) and ``contents`` (assistant -> ``model``, user -> ``user``)."""
    system = [m["content"] for m in messages if m["role"] == "system"]
    contents = [{"role": "model" if m["role"] == "assistant" else "user",
                 "parts": [{"text": m["content"]}]}
                for m in messages if m["role"] != "system"]
    return ("\n\n".join(system) if system else None), contents


def quota_error(body: dict[str, Any], message: str, *, now: float) -> ProviderError:
    """A 429's meaning: a per-day ``QuotaFailure`` is ``QuotaExhausted`` until the next
    midnight Pacific; otherwise ``RateLimited`` for ``RetryInfo.retryDelay``."""
    details = error_details(body)
    quota_ids = [violation.get("quotaId", "")
                 for detail in details if detail.get("@type") == QUOTA_FAILURE
                 for violation in detail.get("violations", [])]
    if any("PerDay" in quota_id for quota_id in quota_ids):
        return QuotaExhausted(message, reset_at=next_quota_reset(now))
    delays = [parse_duration(detail.get("retryDelay"))
              for detail in details if detail.get("@type") == RETRY_INFO]
    return RateLimited(message, retry_after_seconds=next(
        (delay for delay in delays if delay is not None), None))


def error_details(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``error.details`` list of a google.rpc ``Status`` body (dicts only)."""
    error = body.get("error", body)
    details = error.get("details") if isinstance(error, dict) else None
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def error_reasons(body: dict[str, Any]) -> list[str]:
    """The ``ErrorInfo.reason`` values of an error body (e.g. ``API_KEY_INVALID``)."""
    return [str(d.get("reason")) for d in error_details(body) if d.get("@type") == ERROR_INFO]


def parse_duration(value: object) -> float | None:
    """Seconds from a protobuf JSON ``Duration`` such as ``"17s"`` or ``"0.5s"``, or None."""
    if not isinstance(value, str) or not value.endswith("s"):
        return None
    try:
        return max(0.0, float(value[:-1]))
    except ValueError:
        return None


def next_quota_reset(now: float) -> float:
    """The next midnight in Pacific time after ``now`` (epoch seconds), when Gemini's daily
    quotas reset. Without a time-zone database, Pacific standard time (UTC-8) is used."""
    try:
        zone: Any = ZoneInfo(QUOTA_TIMEZONE)
    except ZoneInfoNotFoundError:
        zone = PACIFIC_STANDARD_TIME
    today = datetime.fromtimestamp(now, zone).date()
    midnight = datetime.min.time()
    return datetime.combine(today + timedelta(days=1), midnight, tzinfo=zone).timestamp()


def why_no_text(response: Any) -> str:
    """The block reason or finish reason of an answer without text."""
    feedback = getattr(response, "prompt_feedback", None)
    if feedback is not None and feedback.block_reason:
        return f"prompt blocked: {feedback.block_reason}"
    candidates = response.candidates or []
    if candidates and candidates[0].finish_reason:
        return f"finish reason {candidates[0].finish_reason}"
    return "no candidates"
