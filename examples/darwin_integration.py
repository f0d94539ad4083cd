"""Seed example 2: Darwin's crossover and mutation through the orchestrator.

A small genetic algorithm whose crossover and mutation are evolution tasks on
the orchestrator. When it cannot be reached (or a task takes longer than
``--timeout``), the same operators run in this process, so the example also
works with no server at all. Each operation prints where it ran.

Example:
    python examples/darwin_integration.py                 # no server: all local
    elastic serve & elastic worker --type evolution &
    python examples/darwin_integration.py --server http://127.0.0.1:5000
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any

from elastic import DistributedEvolutionAdapter
from elastic.client import EvolutionResult
from elastic.errors import ElasticError

TARGET = {"learning_rate": 0.01, "layers": 4, "dropout": 0.2, "use_bias": True}
BOUNDS = {"learning_rate": [0.0001, 1.0], "layers": [1, 16], "dropout": [0.0, 0.9]}


@dataclass
class Agent:
    """One member of the population."""

    genome: dict[str, Any]

    @property
    def fitness(self) -> float:
        """How close the genome is to ``TARGET`` (higher is better, 0 is perfect)."""
        distance = abs(self.genome["learning_rate"] - TARGET["learning_rate"]) * 10
        distance += abs(self.genome["layers"] - TARGET["layers"]) / 4
        distance += abs(self.genome["dropout"] - TARGET["dropout"])
        distance += 0.0 if self.genome["use_bias"] == TARGET["use_bias"] else 0.5
        return -distance


class Darwin:
    """The seed's Darwin: crossover and mutation through the distributed adapter."""

    def __init__(self, server: str, *, timeout: float, seed: int | None = None) -> None:
        self.adapter = DistributedEvolutionAdapter(server, timeout=timeout)
        self.rng = random.Random(seed)
        self.where: Counter[str] = Counter()

    def evolve(self, population: list[Agent]) -> list[Agent]:
        """One generation: pair parents, cross them, mutate the children."""
        offspring = []
        for i in range(0, len(population) - 1, 2):
            outcome = self.adapter.crossover_result(
                population[i].genome, population[i + 1].genome,
                method="blend", seed=self.rng.randrange(2**31), bounds=BOUNDS)
            self.report("crossover", outcome)
            offspring.append(Agent(outcome.genome))
        for agent in offspring:
            outcome = self.adapter.mutate_result(
                agent.genome, mutation_rate=0.3, seed=self.rng.randrange(2**31), bounds=BOUNDS)
            self.report("mutation", outcome)
            agent.genome = outcome.genome
        return offspring

    def report(self, operation: str, outcome: EvolutionResult) -> None:
        """Print where one operation ran, and count it."""
        where = "locally" if outcome.ran == "local" else "on the orchestrator"
        self.where[where] += 1
        why = f" ({outcome.reason})" if outcome.reason else ""
        print(f"  {operation:<9} ran {where}{why}")


def random_population(size: int, rng: random.Random) -> list[Agent]:
    """``size`` agents with random genomes."""
    return [Agent({"learning_rate": rng.uniform(0.0001, 1.0), "layers": rng.randint(1, 16),
                   "dropout": rng.uniform(0.0, 0.9), "use_bias": rng.random() < 0.5})
            for _ in range(size)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="http://127.0.0.1:5000",
                        help="the orchestrator's URL (default: %(default)s)")
    parser.add_argument("--generations", type=int, default=3, help="default: %(default)s")
    parser.add_argument("--population", type=int, default=8, help="default: %(default)s")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for each operation before running it here "
                             "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=None, help="makes the run reproducible")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the example; 0 on success, 1 on an error."""
    args = parse_args(argv)
    darwin = Darwin(args.server, timeout=args.timeout, seed=args.seed)
    population = random_population(args.population, darwin.rng)
    try:
        for generation in range(1, args.generations + 1):
            print(f"generation {generation}:")
            children = darwin.evolve(population)
            population = sorted(population + children, key=lambda a: a.fitness,
                                reverse=True)[:args.population]
            print(f"  best fitness {population[0].fitness:.4f}: {population[0].genome}")
    except ElasticError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    ran = ", ".join(f"{count} {where}" for where, count in sorted(darwin.where.items()))
    print(f"operations: {ran}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
