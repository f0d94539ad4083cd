"""What each ``elastic worker --type`` offers: its capabilities and its LLM provider."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from elastic.config import Config
from elastic.errors import ConfigError
from elastic.tasks import WORKER_TYPE_TASKS


def worker_capabilities(worker_type: str, extra: Mapping[str, Any] | None = None, *,
                        provider: Any = None) -> dict[str, Any]:
    """The capabilities a worker of ``worker_type`` registers with, widened by ``extra``.

    A simulation worker advertises exactly the kernels that loaded on this machine; an
    LLM worker the models its provider offers, so a task naming another provider's
    model is never leased to it.
    """
    if worker_type not in WORKER_TYPE_TASKS:
        raise ConfigError("type", "flag", "one of " + ", ".join(WORKER_TYPE_TASKS), worker_type)
    capabilities: dict[str, Any] = {"task_types": list(WORKER_TYPE_TASKS[worker_type])}
    if "simulation" in capabilities["task_types"]:
        from elastic.kernels import available_algorithms

        capabilities["algorithms"] = available_algorithms()
    if provider is not None:
        capabilities["models"] = list(provider.models)
    capabilities.update(extra or {})
    return capabilities


def worker_provider(worker_type: str, config: Config) -> Any:
    """The LLM provider a worker of ``worker_type`` calls, or None for non-LLM types."""
    from elastic.providers import WORKER_TYPE_PROVIDERS, open_provider

    name = WORKER_TYPE_PROVIDERS.get(worker_type)
    return None if name is None else open_provider(name, config.provider_settings(name))
