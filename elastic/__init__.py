"""elastic: a task orchestrator for evolutionary agents, LLM calls and particle simulations.

For programs: ``from elastic import Client`` (see ``elastic.client``). The client is
loaded on first use, so importing any ``elastic`` module does not load it (nor the
executors and numpy behind it).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["Client", "ElasticError", "EvolutionAdapter", "__version__"]


def __getattr__(name: str) -> Any:
    """Load the public client names on first use (PEP 562)."""
    if name in ("Client", "EvolutionAdapter"):
        from elastic import client

        return getattr(client, name)
    if name == "ElasticError":
        from elastic.errors import ElasticError

        return ElasticError
    raise AttributeError(f"module 'elastic' has no attribute {name!r}")
