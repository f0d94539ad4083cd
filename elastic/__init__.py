"""elastic: a task orchestrator for evolutionary agents, LLM calls and particle simulations.

For programs: ``from elastic import Client, AsyncClient`` (see ``elastic.client``); the
seed's ``D8DistributedClient`` and ``DistributedEvolutionAdapter`` are here too. The
client is loaded on first use, so importing any ``elastic`` module does not load it
(nor httpx, the executors and numpy behind it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from elastic.client import (
        AsyncClient,
        Client,
        D8DistributedClient,
        DistributedEvolutionAdapter,
        EvolutionAdapter,
    )
    from elastic.errors import ElasticError

__version__ = "0.1.0"

CLIENT_NAMES = frozenset({"AsyncClient", "Client", "D8DistributedClient",
                          "DistributedEvolutionAdapter", "EvolutionAdapter"})

__all__ = ["AsyncClient", "Client", "D8DistributedClient", "DistributedEvolutionAdapter",
           "ElasticError", "EvolutionAdapter", "__version__"]


def __getattr__(name: str) -> Any:
    """Load the public client names on first use (PEP 562)."""
    if name in CLIENT_NAMES:
        from elastic import client

        return getattr(client, name)
    if name == "ElasticError":
        from elastic.errors import ElasticError

        return ElasticError
    raise AttributeError(f"module 'elastic' has no attribute {name!r}")
