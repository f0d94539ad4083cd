"""The evolutionary loop of evolution_map.py with asyncio (``AsyncClient``).

Crossovers go through ``async for ... in client.map(...)``; mutations are 200
separate ``client.run`` calls awaited together with ``asyncio.gather``: the client
gathers those concurrent waits into at most two long polls on the server.

Example:
    elastic serve & elastic worker --type evolution &
    python examples/evolution_async.py --server http://127.0.0.1:5000
"""

from __future__ import annotations

import asyncio
import random
import sys
from typing import Any

from evolution_map import (
    crossover_tasks,
    fitness,
    mutation_tasks,
    parse_args,
    random_population,
    survivors,
)

from elastic import AsyncClient
from elastic.client import ElasticError


async def next_generation(client: AsyncClient, population: list[dict[str, Any]],
                          rng: random.Random) -> list[dict[str, Any]]:
    """Cross and mutate the whole population on the orchestrator, then select."""
    children = [result.genome async for result in
                client.map("evolution_crossover", crossover_tasks(population, rng))]
    results = await asyncio.gather(*(client.run("evolution_mutation", task)
                                     for task in mutation_tasks(children, rng)))
    return survivors(population, [result.genome for result in results])


async def evolve(server: str, population: list[dict[str, Any]], generations: int,
                 rng: random.Random) -> list[dict[str, Any]]:
    """Run ``generations`` generations; the final population, fittest first."""
    async with AsyncClient(server, local_fallback=False) as client:
        for generation in range(1, generations + 1):
            population = await next_generation(client, population, rng)
            print(f"generation {generation}: best fitness {fitness(population[0]):.5f}")
    return population


def main(argv: list[str] | None = None) -> int:
    """Run the loop; 0 on success, 1 on an error."""
    args = parse_args(argv)
    rng = random.Random(args.seed)
    population = survivors(random_population(args.population, rng), [])
    try:
        population = asyncio.run(evolve(args.server, population, args.generations, rng))
    except ElasticError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    print(f"best genome: {population[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
