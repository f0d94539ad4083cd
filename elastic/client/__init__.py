"""elastic.client: the Python client for programs that submit work to the orchestrator.

``Client`` (blocking) and ``AsyncClient`` (asyncio, same methods, awaitable) speak
the HTTP API: submit one task or a population in one request (``submit_many``,
``map``), wait for one (``wait``) or for many with one multiplexed long poll
(``as_completed``, ``map``), run one with a local fallback (``run``), cancel,
read health, stats and workers. Results are typed (``EvolutionResult``,
``AgentActionResult``, ...; ``to_dict()`` gives the seed's dict) and every error
is an ``ElasticError``: ``ServerUnreachable``, ``InvalidTask`` (``.field``),
``TaskTimeout``, ``NoWorkerCanRun`` (``.reason``), ``TaskFailed``,
``TaskCancelled``, ``TaskHeld``. Every wait has a timeout, 600 s by default.

The seed's names work too: ``D8DistributedClient``, ``DistributedEvolutionAdapter``,
``execute_agent_action(..., wait_for_result=False)`` and ``_wait_for_result``.

Example::

    from elastic import Client

    with Client("http://127.0.0.1:5000") as client:
        genomes = [{"param1": 0.7, "param2": 120}] * 200
        for result in client.map("evolution_mutation",
                                 [{"genome": g, "mutation_rate": 0.1} for g in genomes]):
            print(result.genome)
"""

from __future__ import annotations

from elastic.client.adapter import EvolutionAdapter
from elastic.client.async_client import AsyncClient
from elastic.client.core import DEFAULT_WAIT_SECONDS
from elastic.client.results import (
    AgentActionResult,
    CodeGenerationResult,
    EvolutionResult,
    SimulationResult,
    TaskResult,
)
from elastic.client.sync_client import Client
from elastic.errors import (
    AnswerLost,
    ElasticError,
    InvalidTask,
    NoWorkerCanRun,
    ServerUnreachable,
    TaskCancelled,
    TaskFailed,
    TaskHeld,
    TaskTimeout,
)
from elastic.transport import DEFAULT_SERVER

D8DistributedClient = Client
DistributedEvolutionAdapter = EvolutionAdapter

__all__ = [
    "DEFAULT_SERVER",
    "DEFAULT_WAIT_SECONDS",
    "AgentActionResult",
    "AnswerLost",
    "AsyncClient",
    "Client",
    "CodeGenerationResult",
    "D8DistributedClient",
    "DistributedEvolutionAdapter",
    "ElasticError",
    "EvolutionAdapter",
    "EvolutionResult",
    "InvalidTask",
    "NoWorkerCanRun",
    "ServerUnreachable",
    "SimulationResult",
    "TaskCancelled",
    "TaskFailed",
    "TaskHeld",
    "TaskResult",
    "TaskTimeout",
]
