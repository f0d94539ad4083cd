"""elastic: a task orchestrator for evolutionary agents, LLM calls and particle simulations.

For programs: ``from elastic import Client`` (see ``elastic.client``).
"""

from __future__ import annotations

__version__ = "0.1.0"

from elastic.client import Client, EvolutionAdapter
from elastic.errors import ElasticError

__all__ = ["Client", "ElasticError", "EvolutionAdapter", "__version__"]
