"""The provider protocol: one chat call to one LLM service, and the retry policy around it.

An adapter (``ollama.py``, ``groq.py``, ``gemini.py``) builds one SDK call from a
``ChatRequest`` and turns that SDK's exceptions into the ``ProviderError``s below
(``Unreachable`` when no answer came at all); nothing else. Whether and when to try
again is decided here, once, by the pure function ``next_delay``, and applied by
``complete_with_retries``; whether the backend is up, by the circuit breaker
(``breaker.py``) that ``complete_once`` keeps informed. SDK-internal retries are
switched off in every adapter so that this is the only retry policy.

API keys come from the environment only. They never appear in an error message, a
log line or a result: adapters pass every provider message through ``redact``.
"""

from __future__ import annotations

import dataclasses
import email.utils
import importlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar, Protocol

from elastic import tasks
from elastic.errors import ElasticError
from elastic.providers.breaker import (
    DEFAULT_FAILURE_THRESHOLD,
    DEFAULT_PROBE_SECONDS,
    CircuitBreaker,
)
from elastic.providers.limits import ProviderLimiter
from elastic.worker_types import install_hint

logger = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_TIMEOUT_SECONDS = 120.0
PROBE_TIMEOUT_SECONDS = 10.0  # a health probe answers fast or the backend counts as down
DEFAULT_RETRY_AFTER_SECONDS = 5.0
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 30.0
MAX_RATE_LIMIT_WAIT_SECONDS = 120.0
RETRYABLE_CLIENT_STATUSES = frozenset({408, 409, 425, 498})


@dataclass(frozen=True)
class ChatRequest:
    """One chat call: the messages (``{"role", "content"}``, roles system/user/assistant)
    and optional overrides of the provider's default model, temperature and answer budget."""

    messages: list[dict[str, str]]
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class Completion:
    """The answer: its text, the tokens the provider reported using, the model that answered."""

    text: str
    tokens_used: int
    model: str


class ProviderError(ElasticError):
    """The LLM provider could not answer."""


class RateLimited(ProviderError):
    """The provider is rate limiting us; try again after ``retry_after_seconds``.

    When the provider gave no hint, ``retry_after_seconds`` is ``DEFAULT_RETRY_AFTER_SECONDS``.
    """

    def __init__(self, message: str | None = None, *,
                 retry_after_seconds: float | None = None) -> None:
        hinted = retry_after_seconds is not None and retry_after_seconds >= 0
        self.retry_after_seconds = retry_after_seconds if hinted else DEFAULT_RETRY_AFTER_SECONDS
        super().__init__(message)


class QuotaExhausted(ProviderError):
    """The provider's daily quota is used up; pause it until ``reset_at`` (epoch seconds)."""

    def __init__(self, message: str | None = None, *, reset_at: float) -> None:
        self.reset_at = reset_at
        super().__init__(message)


class Unavailable(ProviderError):
    """The provider timed out, failed (5xx) or could not be reached; worth trying again."""


class Unreachable(Unavailable):
    """The provider could not be reached or did not answer in time (nothing listens, the
    network is down, a timeout): what the circuit breaker counts (an error answer, even
    a 5xx, shows the backend is up)."""


class BackendDown(Unavailable):
    """The provider's backend is down (its circuit breaker is open): the task goes back to
    the queue, not counted as a failed attempt, for a worker whose backend answers."""

    hand_back = True


class Rejected(ProviderError):
    """The provider refused the request (bad key, unknown model, bad request); do not retry."""

    retryable = False
    held_reason = "rejected_by_provider"


class MissingApiKey(Rejected):
    """The API key is not set in the environment."""

    exit_code = 2


class MissingSdk(Rejected):
    """The provider's SDK is not installed."""

    exit_code = 2


class UnknownProvider(ElasticError):
    """No LLM provider has that name."""

    exit_code = 2


class NoProvider(ElasticError):
    """This worker has no LLM provider: start it with --type deepseek, groq or gemini."""


class Provider(Protocol):
    """One LLM service behind one SDK.

    ``complete`` makes exactly one call (no retries) and raises only ``ProviderError``s:
    ``RateLimited``, ``QuotaExhausted``, ``Unavailable`` or ``Rejected``. The adapters
    also carry a ``limiter`` (their request and token budget, see ``limits.py``) and a
    ``breaker`` (whether their backend is up, see ``breaker.py``), which
    ``complete_with_retries`` keeps up to date when a provider has them, ``status()``
    and ``health_problem()``.
    """

    name: str
    default_model: str

    def complete(self, request: ChatRequest) -> Completion:
        """Send ``request`` once and return the answer."""
        ...


class SdkProvider:
    """What the adapters share: settings defaults, the limiter and the SDK-call seam.

    ``complete`` fills the request's unset model, temperature and max_tokens from the
    provider's settings and hands it to ``send``, which each adapter implements.
    """

    name: str = ""
    # Names the budget of the API key in use (``limits.key_fingerprint``; '' for none).
    key_id: str = ""
    DEFAULT_MODEL: ClassVar[str] = ""
    # Names users write (the seed's) for the provider's real model names.
    MODEL_ALIASES: ClassVar[dict[str, str]] = {}

    def __init__(self, *, model: str | None = None, temperature: float | None = None,
                 max_tokens: int | None = None,
                 timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
                 base_url: str | None = None, limiter: ProviderLimiter | None = None,
                 models: list[str] | None = None,
                 breaker_failures: int = DEFAULT_FAILURE_THRESHOLD,
                 breaker_probe_seconds: float = DEFAULT_PROBE_SECONDS) -> None:
        self.default_model = model or self.DEFAULT_MODEL
        self.models = list(models) if models else [self.default_model, *self.MODEL_ALIASES]
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout_seconds = timeout_seconds
        self.probe_timeout_seconds = min(timeout_seconds, PROBE_TIMEOUT_SECONDS)
        self.base_url = base_url
        self.limiter = limiter if limiter is not None else ProviderLimiter()
        self.breaker = CircuitBreaker(self.name, failure_threshold=breaker_failures,
                                      probe_seconds=breaker_probe_seconds)

    def complete(self, request: ChatRequest) -> Completion:
        """Send ``request`` once, with the provider's defaults for what it leaves unset."""
        return self.send(self.with_defaults(request))

    def with_defaults(self, request: ChatRequest) -> ChatRequest:
        """``request`` with its unset model, temperature and max_tokens filled in."""
        return dataclasses.replace(
            request,
            model=self.MODEL_ALIASES.get(request.model or "", request.model) or self.default_model,
            temperature=self.temperature if request.temperature is None else request.temperature,
            max_tokens=self.max_tokens if request.max_tokens is None else request.max_tokens,
        )

    def send(self, request: ChatRequest) -> Completion:
        """Make the one SDK call for a request whose model is set."""
        raise NotImplementedError

    def probe(self) -> None:
        """Make the backend's cheapest call (its list of models), raising what ``send``
        would; each adapter implements it."""
        raise NotImplementedError

    def health_problem(self) -> str | None:
        """Why the backend does not answer its health probe, or None when it does (an
        answer with an error, such as a refused key, shows that it is up)."""
        try:
            self.probe()
        except Unreachable as error:
            return error.message
        except ProviderError:
            return None
        return None

    def status(self, now: float | None = None) -> dict[str, Any]:
        """JSON-ready state for heartbeats: the provider, its default model, its budget
        and whether its backend is up (``breaker``)."""
        snapshot = self.limiter.snapshot(time.time() if now is None else now)
        return {"provider": self.name, "default_model": self.default_model, **snapshot,
                "breaker": self.breaker.snapshot()}


def next_delay(error: ProviderError, attempt: int, *,
               max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> float | None:
    """Seconds to wait before trying again after ``error`` ended attempt ``attempt`` (1-based),
    or None to give up.

    Gives up on ``Rejected``, ``QuotaExhausted`` and errors that hand the task back
    (``BackendDown``) at once, after ``max_attempts``
    attempts, and when a rate limit asks for more than ``MAX_RATE_LIMIT_WAIT_SECONDS``
    (better to hand the task back than to hold it). ``RateLimited`` waits what the
    provider asked; anything else backs off exponentially from
    ``BACKOFF_BASE_SECONDS``, capped at ``BACKOFF_CAP_SECONDS``.
    """
    if (not error.retryable or error.hand_back or isinstance(error, QuotaExhausted)
            or attempt >= max_attempts):
        return None
    if isinstance(error, RateLimited):
        wait = error.retry_after_seconds
        return wait if wait <= MAX_RATE_LIMIT_WAIT_SECONDS else None
    return min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))


def complete_with_retries(provider: Provider, request: ChatRequest, *,
                          max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                          sleep: Callable[[float], Any] = time.sleep,
                          check_cancelled: Callable[[], None] | None = None,
                          clock: Callable[[], float] = time.time) -> Completion:
    """``provider.complete(request)``, tried again as ``next_delay`` says.

    Each attempt is recorded in ``provider.limiter``, when there is one (reserved before,
    settled with the tokens used after; a rate limit or exhausted quota sets its cooldown).
    ``check_cancelled`` runs before every attempt and raises to stop; pass
    ``threading.Event.wait`` of the cancel flag as ``sleep`` to wake up early on a cancel.

    Raises:
        ProviderError: the last error, once ``next_delay`` gives up.
    """
    attempt = 0
    while True:
        if check_cancelled is not None:
            check_cancelled()
        attempt += 1
        try:
            return complete_once(provider, request, clock=clock)
        except ProviderError as error:
            delay = next_delay(error, attempt, max_attempts=max_attempts)
            if delay is None:
                raise
            logger.warning("%s: %s; trying again in %.1fs (attempt %d of %d)",
                           provider.name, error.message, delay, attempt, max_attempts)
            sleep(delay)


def complete_once(provider: Provider, request: ChatRequest, *,
                  clock: Callable[[], float] = time.time) -> Completion:
    """One ``provider.complete`` call, accounted in the provider's limiter and breaker
    when it has them.

    Raises:
        BackendDown: the breaker is open, or this call's ``Unreachable`` opened it.
        ProviderError: the provider's error.
    """
    breaker: CircuitBreaker | None = getattr(provider, "breaker", None)
    if breaker is not None and not breaker.is_closed:
        raise BackendDown(breaker.down_message())
    limiter: ProviderLimiter | None = getattr(provider, "limiter", None)
    if limiter is None:
        return send_watched(provider, request, breaker)
    reservation = limiter.reserve(estimate_request_tokens(request), clock())
    try:
        completion = send_watched(provider, request, breaker)
    except ProviderError as error:
        limiter.settle(reservation, 0, clock())
        pause_end = cooldown_end(error, clock())
        if pause_end is not None:
            limiter.pause_until(pause_end)
        raise
    limiter.settle(reservation, completion.tokens_used, clock())
    return completion


def send_watched(provider: Provider, request: ChatRequest,
                 breaker: CircuitBreaker | None) -> Completion:
    """``provider.complete(request)``, its outcome told to ``breaker`` (when there is one):
    ``Unreachable`` is a failure, any answer (an error answer too) a success."""
    if breaker is None:
        return provider.complete(request)
    try:
        completion = provider.complete(request)
    except Unreachable as error:
        breaker.record_failure(error.message)
        if breaker.is_closed:
            raise
        raise BackendDown(breaker.down_message()) from error
    except ProviderError:
        breaker.record_success()
        raise
    breaker.record_success()
    return completion


def estimate_request_tokens(request: ChatRequest) -> int:
    """The token estimate a worker uses for the same task (``tasks.estimate_tokens``)."""
    data = {"messages": request.messages, "max_tokens": request.max_tokens}
    return tasks.estimate_tokens("agent_action", data)


def cooldown_end(error: ProviderError, now: float) -> float | None:
    """Until when a provider should rest after ``error`` (epoch seconds), or None."""
    if isinstance(error, QuotaExhausted):
        return error.reset_at
    if isinstance(error, RateLimited):
        return now + error.retry_after_seconds
    return None


def read_api_key(variable: str, *, where: str) -> str:
    """The API key in environment variable ``variable``.

    Raises:
        MissingApiKey: naming the variable and ``where`` to get a key.
    """
    key = os.environ.get(variable, "").strip()
    if not key:
        raise MissingApiKey(f"{variable} is not set: export {variable}=<your key> "
                            f"(get one at {where})")
    return key


def import_sdk(module: str, package: str, *, provider: str) -> ModuleType:
    """Import ``provider``'s SDK (the pip ``package``) on first use.

    Raises:
        MissingSdk: saying what to ``pip install``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingSdk(f"the {package} SDK is not installed: "
                         f"{install_hint(provider)}") from error


def transport_errors() -> tuple[type[Exception], ...]:
    """The HTTP clients' transport errors (timeouts, refused connections, broken streams),
    for SDKs that let them through: httpx's, and httpx2's where it is installed."""
    found: list[type[Exception]] = []
    for module in ("httpx", "httpx2"):
        try:
            found.append(importlib.import_module(module).TransportError)
        except ImportError:
            continue
    return tuple(found)


def error_for_status(status: int, message: str, *,
                     retry_after_seconds: float | None = None) -> ProviderError:
    """The error for an HTTP status: 429 rate limited; 408/409/425/498 and 5xx unavailable;
    any other 4xx rejected (400 bad request, 401/403 bad key, 404 unknown model)."""
    if status == 429:
        return RateLimited(message, retry_after_seconds=retry_after_seconds)
    if status >= 500 or status in RETRYABLE_CLIENT_STATUSES or status < 400:
        return Unavailable(message)
    return Rejected(message)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - now)


def redact(text: object, *secrets: str | None) -> str:
    """``text`` as a string with every secret replaced by ``***``."""
    shown = str(text)
    for secret in secrets:
        if secret:
            shown = shown.replace(secret, "***")
    return shown
