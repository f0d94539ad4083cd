"""A small program using the client's public API; tests/test_client_typing.py runs mypy on it."""

from __future__ import annotations

import asyncio
from typing import Any, assert_type

from elastic import AsyncClient, Client, D8DistributedClient, DistributedEvolutionAdapter
from elastic.client import (
    AgentActionResult,
    ElasticError,
    EvolutionResult,
    NoWorkerCanRun,
    TaskResult,
    TaskTimeout,
)

POPULATION = [{"genome": {"param1": 0.7}, "mutation_rate": 0.1}] * 4


def evolve(client: Client) -> list[dict[str, Any]]:
    """Mutate a population with one request and one multiplexed wait."""
    children = []
    for result in client.map("evolution_mutation", POPULATION):
        assert_type(result, EvolutionResult)
        assert_type(result.genome, dict[str, Any])
        children.append(result.to_dict())
    for outcome in client.as_completed(client.submit_many([]), return_exceptions=True):
        assert_type(outcome, TaskResult | ElasticError)
    return children


def ask(client: Client) -> str:
    """One LLM call, its errors from one hierarchy."""
    try:
        answer = client.agent_action([{"role": "user", "content": "hi"}], timeout=30)
    except (TaskTimeout, NoWorkerCanRun) as error:
        assert isinstance(error, ElasticError)
        return error.message
    assert_type(answer, AgentActionResult)
    return answer.output


async def evolve_async(client: AsyncClient) -> list[dict[str, Any]]:
    """The same with asyncio: one map, then concurrent waits."""
    genomes = [result.genome async for result in client.map("evolution_crossover", POPULATION)]
    task_ids = await client.submit_many({"type": "evolution_mutation", "data": item}
                                        for item in POPULATION)
    results = await asyncio.gather(*(client.wait(task_id, timeout=60) for task_id in task_ids))
    assert_type(results, list[TaskResult])
    mutated = await client.run("evolution_mutation", POPULATION[0])
    assert_type(mutated.genome, dict[str, Any])
    return genomes


def seed_names(server: str) -> dict[str, Any]:
    """The seed's calls keep the seed's dicts."""
    child = DistributedEvolutionAdapter(server).crossover({"a": 1.0}, {"a": 2.0})
    assert_type(child, dict[str, Any])
    sent = D8DistributedClient(server).execute_agent_action(
        [{"role": "user", "content": "x"}], wait_for_result=False)
    assert_type(sent, dict[str, Any])
    return sent
