"""``EvolutionAdapter``: genome in, genome out, for evolutionary code (the seed's Darwin)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from elastic.client.core import DEFAULT_PRIORITY, without_none
from elastic.client.results import EvolutionResult
from elastic.client.sync_client import Client
from elastic.errors import TaskFailed

DEFAULT_EVOLUTION_TIMEOUT_SECONDS = 60.0


class EvolutionAdapter:
    """Crossover and mutation for evolutionary code, on the orchestrator or locally.

    Each operation is an evolution task on the orchestrator; with ``local_fallback``
    the same operator runs in this process when the orchestrator cannot be reached,
    no live worker can run it, or it does not end within ``timeout`` seconds (and
    was withdrawn from the queue: see ``Client.run``).

    Args:
        server_or_client: a base URL (None: ``$ELASTIC_SERVER`` or the default) or a ``Client``.
        timeout: seconds to wait for each operation on the orchestrator.
        local_fallback: whether to run locally instead of failing.
        priority: the priority of the submitted tasks (1..10).
    """

    def __init__(self, server_or_client: str | Client | None = None, *,
                 timeout: float = DEFAULT_EVOLUTION_TIMEOUT_SECONDS, local_fallback: bool = True,
                 priority: int = DEFAULT_PRIORITY) -> None:
        if isinstance(server_or_client, Client):
            self.client = server_or_client
        else:
            self.client = Client(server_or_client, local_fallback=local_fallback)
        self.timeout = timeout
        self.local_fallback = local_fallback
        self.priority = priority

    def __repr__(self) -> str:
        return f"EvolutionAdapter({self.client.server!r})"

    def __enter__(self) -> EvolutionAdapter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the client's HTTP connections (a client passed in is closed too)."""
        self.client.close()

    def crossover(self, genome1: Mapping[str, Any], genome2: Mapping[str, Any], *,
                  method: str | None = None, seed: int | None = None, mode: str | None = None,
                  bounds: Mapping[str, Sequence[float]] | None = None, alpha: float | None = None,
                  model: str | None = None) -> dict[str, Any]:
        """The offspring genome of two parents (see ``crossover_result``)."""
        return self.crossover_result(genome1, genome2, method=method, seed=seed, mode=mode,
                                     bounds=bounds, alpha=alpha, model=model).genome

    def crossover_result(self, genome1: Mapping[str, Any], genome2: Mapping[str, Any], *,
                         method: str | None = None, seed: int | None = None,
                         mode: str | None = None,
                         bounds: Mapping[str, Sequence[float]] | None = None,
                         alpha: float | None = None, model: str | None = None) -> EvolutionResult:
        """Cross two genomes; the result says where it ran (``ran``, ``reason``).

        Args:
            method: ``uniform`` (default), ``blend`` or ``single_point``.
            seed: makes the offspring reproducible.
            mode: ``operator`` (default) or ``llm`` (on an LLM worker).
            bounds: ``{gene: [low, high]}`` limits for numbers.
            alpha: the BLX-alpha extension for ``blend``.
            model: the LLM model for mode ``llm``.
        """
        data = without_none(genome1=dict(genome1), genome2=dict(genome2), method=method,
                            seed=seed, mode=mode, bounds=plain_bounds(bounds), alpha=alpha,
                            model=model)
        return self._evolve("evolution_crossover", data)

    def mutate(self, genome: Mapping[str, Any], mutation_rate: float = 0.1, *,
               seed: int | None = None, mode: str | None = None,
               bounds: Mapping[str, Sequence[float]] | None = None, sigma: float | None = None,
               model: str | None = None) -> dict[str, Any]:
        """The mutated genome (see ``mutate_result``)."""
        return self.mutate_result(genome, mutation_rate, seed=seed, mode=mode, bounds=bounds,
                                  sigma=sigma, model=model).genome

    def mutate_result(self, genome: Mapping[str, Any], mutation_rate: float = 0.1, *,
                      seed: int | None = None, mode: str | None = None,
                      bounds: Mapping[str, Sequence[float]] | None = None,
                      sigma: float | None = None, model: str | None = None) -> EvolutionResult:
        """Mutate a genome; the result says where it ran (``ran``, ``reason``).

        Args:
            mutation_rate: the probability (0..1) that each gene changes.
            seed: makes the mutation reproducible.
            mode: ``operator`` (default) or ``llm`` (on an LLM worker).
            bounds: ``{gene: [low, high]}`` limits for numbers.
            sigma: the Gaussian step relative to the bounds' width or the value.
            model: the LLM model for mode ``llm``.
        """
        data = without_none(genome=dict(genome), mutation_rate=mutation_rate, seed=seed,
                            mode=mode, bounds=plain_bounds(bounds), sigma=sigma, model=model)
        return self._evolve("evolution_mutation", data)

    def _evolve(self, task_type: str, data: dict[str, Any]) -> EvolutionResult:
        """Run one evolution task; its result, which must hold a genome."""
        result = self.client.run(task_type, data, self.priority, self.timeout,
                                 local_fallback=self.local_fallback)
        if not isinstance(result, EvolutionResult) or not result.success or not result.genome:
            raise TaskFailed(result.task_id or "(local)",
                             result.reported.get("error") or "the result has no genome",
                             result.to_dict())
        return result


def plain_bounds(bounds: Mapping[str, Sequence[float]] | None) -> dict[str, list[float]] | None:
    """Bounds as JSON-ready lists."""
    if bounds is None:
        return None
    return {key: list(pair) for key, pair in bounds.items()}
