"""What a worker of one ``--type`` registers with and which LLM provider it opens.

Both read the worker-type table (``elastic.worker_types``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from elastic.config import Config
from elastic.worker_types import get_worker_type


def worker_capabilities(worker_type: str, extra: Mapping[str, Any] | None = None, *,
                        provider: Any = None) -> dict[str, Any]:
    """The capabilities a worker of ``worker_type`` registers with, widened by ``extra``.

    A simulation worker advertises exactly the kernels that loaded on this machine; an
    LLM worker the models its provider offers, so a task naming another provider's
    model is never leased to it.

    Raises:
        ConfigError: an unknown worker type.
    """
    capabilities: dict[str, Any] = {"task_types": list(get_worker_type(worker_type).task_types)}
    if "simulation" in capabilities["task_types"]:
        from elastic.kernels import available_algorithms

        capabilities["algorithms"] = available_algorithms()
    if provider is not None:
        capabilities["models"] = list(provider.models)
    capabilities.update(extra or {})
    return capabilities


def worker_provider(worker_type: str, config: Config) -> Any:
    """The LLM provider a worker of ``worker_type`` calls, or None for non-LLM types."""
    from elastic.providers import open_provider

    name = get_worker_type(worker_type).provider
    return None if name is None else open_provider(name, config.provider_settings(name))
