"""The LLM providers: provider name -> adapter (which worker type uses which: elastic.worker_types).

``open_provider(name, settings)`` builds one. Each adapter imports its SDK only when
built, and a missing SDK or API key raises an error saying what to install or set.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from elastic.errors import ConfigError
from elastic.providers.base import (
    ChatRequest,
    Completion,
    Provider,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    Rejected,
    SdkProvider,
    Unavailable,
    UnknownProvider,
    complete_with_retries,
    next_delay,
)
from elastic.providers.gemini import GeminiProvider
from elastic.providers.groq import GroqProvider
from elastic.providers.limits import ProviderLimiter
from elastic.providers.ollama import OllamaProvider

PROVIDERS: dict[str, type[SdkProvider]] = {
    "ollama": OllamaProvider,
    "groq": GroqProvider,
    "gemini": GeminiProvider,
}


def open_provider(name: str, settings: Mapping[str, Any] | None = None) -> Provider:
    """Build the provider called ``name``.

    ``settings`` may hold ``model`` (the default model), ``temperature``,
    ``max_tokens``, ``timeout_seconds``, ``base_url`` (instead of the provider's
    environment variable), ``models`` (the model names the worker offers; default: the
    default model and its aliases), ``limits`` (see ``ProviderLimiter.from_settings``),
    ``breaker_failures`` and ``breaker_probe_seconds`` (see ``breaker.CircuitBreaker``).

    Raises:
        UnknownProvider: naming the known providers.
        ConfigError: for an unknown or invalid setting.
        MissingApiKey: naming the environment variable to set.
        MissingSdk: saying what to pip install.
    """
    try:
        adapter = PROVIDERS[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(PROVIDERS))
        raise UnknownProvider(f"unknown LLM provider {name!r} (known: {known})") from None
    return adapter(**provider_options(name, settings or {}))


def provider_options(name: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Validated keyword arguments for an adapter from its settings.

    Raises:
        ConfigError: naming the setting as ``providers.<name>.<key>``.
    """
    options: dict[str, Any] = {}
    for key, value in settings.items():
        where = f"providers.{name}.{key}"
        if key not in SETTING_CHECKS:
            raise ConfigError(where, "provider settings", f"one of {', '.join(SETTING_CHECKS)}")
        if value is None:
            continue
        is_valid, wanted = SETTING_CHECKS[key]
        if not is_valid(value):
            raise ConfigError(where, "provider settings", wanted, value)
        if key == "limits":
            options["limiter"] = ProviderLimiter.from_settings(value, key_prefix=where)
        else:
            options[key] = value
    return options


def _is_number(value: object) -> bool:
    """Whether ``value`` is an int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


SETTING_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "model": (lambda v: isinstance(v, str) and bool(v.strip()), "a model name"),
    "temperature": (lambda v: _is_number(v) and 0 <= v <= 2, "a number from 0 to 2"),
    "max_tokens": (lambda v: _is_number(v) and isinstance(v, int) and v >= 1, "an integer >= 1"),
    "timeout_seconds": (lambda v: _is_number(v) and v > 0, "a number of seconds > 0"),
    "base_url": (lambda v: isinstance(v, str) and v.startswith(("http://", "https://")),
                 "an http(s) URL"),
    "limits": (lambda v: isinstance(v, Mapping), "a table of limits"),
    "models": (lambda v: isinstance(v, list) and bool(v) and all(isinstance(m, str) and m for m in v),
               "a non-empty list of model names this worker offers"),
    "breaker_failures": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                         "an integer >= 1 (unavailable errors in a row that stop LLM leasing)"),
    "breaker_probe_seconds": (lambda v: _is_number(v) and v > 0,
                              "a number of seconds > 0 (the first health check's wait)"),
}

__all__ = [
    "PROVIDERS",
    "ChatRequest",
    "Completion",
    "Provider",
    "ProviderError",
    "ProviderLimiter",
    "QuotaExhausted",
    "RateLimited",
    "Rejected",
    "Unavailable",
    "UnknownProvider",
    "complete_with_retries",
    "next_delay",
    "open_provider",
]
