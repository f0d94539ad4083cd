"""elastic: a task orchestrator for evolutionary agents, LLM calls and particle simulations."""

from __future__ import annotations

__version__ = "0.1.0"
