"""An evolutionary loop where each generation is two population-wide calls.

Every generation crosses 200 parent pairs with one ``client.map`` (one request
submits them all, one long poll at a time waits for all of them), mutates the 200
children with a second ``map``, then keeps the fittest 200 of parents and children.
Fitness is computed here; the genetic operators run on the orchestrator's workers.

Example:
    elastic serve & elastic worker --type evolution &
    python examples/evolution_map.py --server http://127.0.0.1:5000
"""

from __future__ import annotations

import argparse
import random
import sys
from typing import Any

from elastic import Client
from elastic.client import ElasticError

TARGET = {"x": 0.25, "y": -1.5, "z": 3.0}
BOUNDS = {gene: [-5.0, 5.0] for gene in TARGET}


def fitness(genome: dict[str, Any]) -> float:
    """Higher is better; 0 is the target."""
    return -sum((genome[gene] - value) ** 2 for gene, value in TARGET.items())


def random_population(size: int, rng: random.Random) -> list[dict[str, Any]]:
    """``size`` random genomes within the bounds."""
    return [{gene: rng.uniform(-5.0, 5.0) for gene in TARGET} for _ in range(size)]


def crossover_tasks(population: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """One crossover per member: two parents from the fitter half (population is sorted)."""
    parents = population[:max(2, len(population) // 2)]
    return [{"genome1": rng.choice(parents), "genome2": rng.choice(parents), "method": "blend",
             "bounds": BOUNDS, "seed": rng.randrange(2**31)} for _ in population]


def mutation_tasks(children: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """One mutation per child."""
    return [{"genome": child, "mutation_rate": 0.3, "bounds": BOUNDS,
             "seed": rng.randrange(2**31)} for child in children]


def survivors(population: list[dict[str, Any]], offspring: list[dict[str, Any]],
              ) -> list[dict[str, Any]]:
    """The fittest ``len(population)`` of parents and offspring, fittest first."""
    return sorted(population + offspring, key=fitness, reverse=True)[:len(population)]


def next_generation(client: Client, population: list[dict[str, Any]],
                    rng: random.Random) -> list[dict[str, Any]]:
    """Cross and mutate the whole population on the orchestrator, then select."""
    children = [result.genome for result in
                client.map("evolution_crossover", crossover_tasks(population, rng))]
    mutated = [result.genome for result in
               client.map("evolution_mutation", mutation_tasks(children, rng))]
    return survivors(population, mutated)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="http://127.0.0.1:5000",
                        help="the orchestrator's URL (default: %(default)s)")
    parser.add_argument("--population", type=int, default=200, help="default: %(default)s")
    parser.add_argument("--generations", type=int, default=5, help="default: %(default)s")
    parser.add_argument("--seed", type=int, default=1, help="default: %(default)s")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the loop; 0 on success, 1 on an error."""
    args = parse_args(argv)
    rng = random.Random(args.seed)
    population = survivors(random_population(args.population, rng), [])
    try:
        with Client(args.server, local_fallback=False) as client:
            for generation in range(1, args.generations + 1):
                population = next_generation(client, population, rng)
                print(f"generation {generation}: best fitness {fitness(population[0]):.5f}")
    except ElasticError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    print(f"best genome: {population[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
