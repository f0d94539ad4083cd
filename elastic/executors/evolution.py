"""The evolution executors: ``evolution_crossover`` and ``evolution_mutation``.

They run the genetic operators (``elastic.evolution.operators``), or with
``mode: "llm"`` ask the worker's LLM provider for the offspring and fall back to
the operator when there is no provider, the provider fails, or its answer is not
a genome of the right shape (``elastic.evolution.llm_mode``).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from elastic.evolution.llm_mode import LlmAsk, crossover_prompt, mutation_prompt, run_llm_mode
from elastic.evolution.operators import (
    CROSSOVER_METHODS,
    DEFAULT_ALPHA,
    DEFAULT_MUTATION_RATE,
    DEFAULT_SIGMA,
    MUTATION_METHOD,
    crossover_genomes,
    mutate_genome,
)
from elastic.evolution.params import (
    DEFAULT_LLM_TEMPERATURE,
    MODES,
    CrossoverParams,
    MutationParams,
    read_bounds,
    read_choice,
    read_genome,
    read_model,
    read_number,
    read_seed,
)
from elastic.executors.base import ExecutionContext


class Crossover:
    """evolution_crossover: one offspring of ``genome1`` and ``genome2``."""

    name = "evolution_crossover"

    def validate(self, data: Mapping[str, Any]) -> CrossoverParams:
        """Check the task data; raises ``InvalidTask`` naming the field."""
        genome1, genome2 = read_genome(data, "genome1"), read_genome(data, "genome2")
        return CrossoverParams(
            genome1=genome1,
            genome2=genome2,
            method=read_choice(data, "method", CROSSOVER_METHODS, "uniform"),
            mode=read_choice(data, "mode", MODES, "operator"),
            seed=read_seed(data),
            alpha=read_number(data, "alpha", DEFAULT_ALPHA, low=0.0),
            bounds=read_bounds(data, [genome1, genome2]),
            model=read_model(data),
            temperature=read_number(data, "temperature", DEFAULT_LLM_TEMPERATURE,
                                    low=0.0, high=2.0),
        )

    def run(self, params: CrossoverParams, context: ExecutionContext) -> dict[str, Any]:
        """Cross the genomes with the operator, or the LLM in mode "llm"."""
        context.check_cancelled()
        if params.mode != "llm":
            return self.run_operator(params)
        ask = LlmAsk(prompt=crossover_prompt(params), parents=(params.genome1, params.genome2),
                      bounds=params.bounds, model=params.model, temperature=params.temperature,
                      operator=lambda: self.run_operator(params))
        return run_llm_mode(ask, context)

    def run_operator(self, params: CrossoverParams) -> dict[str, Any]:
        """The operator's result for ``params``."""
        child = crossover_genomes(params.genome1, params.genome2, rng=random.Random(params.seed),
                                  method=params.method, alpha=params.alpha, bounds=params.bounds)
        return {"success": True, "genome": child, "method": params.method,
                "mode_used": "operator"}


class Mutation:
    """evolution_mutation: a mutated copy of ``genome``."""

    name = "evolution_mutation"

    def validate(self, data: Mapping[str, Any]) -> MutationParams:
        """Check the task data; raises ``InvalidTask`` naming the field."""
        genome = read_genome(data, "genome")
        return MutationParams(
            genome=genome,
            mutation_rate=read_number(data, "mutation_rate", DEFAULT_MUTATION_RATE,
                                      low=0.0, high=1.0),
            mode=read_choice(data, "mode", MODES, "operator"),
            seed=read_seed(data),
            sigma=read_number(data, "sigma", DEFAULT_SIGMA, low=0.0),
            bounds=read_bounds(data, [genome]),
            model=read_model(data),
            temperature=read_number(data, "temperature", DEFAULT_LLM_TEMPERATURE,
                                    low=0.0, high=2.0),
        )

    def run(self, params: MutationParams, context: ExecutionContext) -> dict[str, Any]:
        """Mutate the genome with the operator, or the LLM in mode "llm"."""
        context.check_cancelled()
        if params.mode != "llm":
            return self.run_operator(params)
        ask = LlmAsk(prompt=mutation_prompt(params), parents=(params.genome,),
                      bounds=params.bounds, model=params.model, temperature=params.temperature,
                      operator=lambda: self.run_operator(params))
        return run_llm_mode(ask, context)

    def run_operator(self, params: MutationParams) -> dict[str, Any]:
        """The operator's result for ``params``."""
        child = mutate_genome(params.genome, params.mutation_rate, rng=random.Random(params.seed),
                              bounds=params.bounds, sigma=params.sigma)
        return {"success": True, "genome": child, "method": MUTATION_METHOD,
                "mutation_rate": params.mutation_rate, "mode_used": "operator"}
