"""The client against a running orchestrator.

``live_server`` (tests/conftest.py) is the base URL of a real orchestrator on
loopback with an ``evolution`` worker connected; ``start_server`` starts one with
no worker. A task that must stay leased or pending without a real worker taking it
goes to a ``HandmadeWorker``. Each test starts its own server and worker (about
2.5 s), so related checks share a test.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from handmade_worker import HandmadeWorker

from elastic.client import (
    Client,
    EvolutionAdapter,
    EvolutionResult,
    InvalidTask,
    NoWorkerCanRun,
    TaskCancelled,
    TaskTimeout,
)
from elastic.errors import Conflict, TaskNotFound
from elastic.executors.evolution import Mutation
from elastic.transport import WAIT_PATH

PARENT1 = {"param1": 0.8, "param2": 100}
PARENT2 = {"param1": 0.6, "param2": 150}
UNSERVED_MODEL = "elastic-test-model-no-worker-offers"
SERVED_MODEL = "elastic-test-model-an-idle-worker-offers"
MESSAGES = [{"role": "user", "content": "stay pending"}]
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def record_requests(client: Client) -> list[httpx.Request]:
    """Every request ``client`` sends from now on (httpx's request hook)."""
    sent: list[httpx.Request] = []
    client.http.event_hooks["request"].append(sent.append)
    return sent


def test_tasks_run_on_the_orchestrator_and_say_so(live_server):
    with Client(live_server, local_fallback=False) as client:
        sent = record_requests(client)
        task_id = client.submit("evolution_crossover",
                                {"genome1": PARENT1, "genome2": PARENT2, "seed": 4}, priority=7)
        result = client.wait(task_id, timeout=30)
        waits = [request for request in sent if request.url.path == WAIT_PATH]
        assert 1 <= len(waits) <= 3, "one long poll, not a polling loop"
        assert all(b'"wait": 0' not in request.content for request in waits)
        assert isinstance(result, EvolutionResult)
        assert (result.task_id, result.ran, result.reason) == (task_id, "orchestrator", None)
        assert set(result.genome) == {"param1", "param2"}
        status = client.status(task_id)
        assert (status["status"], status["unservable"]) == ("completed", None)
        assert status["result"]["genome"] == result.genome == result.to_dict()["genome"]
        assert client._wait_for_result(task_id)["task_id"] == task_id
        with pytest.raises(Conflict):
            client.cancel(task_id)
        ran = client.run("evolution_mutation", {"genome": PARENT1, "mutation_rate": 0.5},
                         timeout=30)
        assert ran.ran == "orchestrator" and ran.task_id
    with EvolutionAdapter(live_server, timeout=30) as adapter:
        assert adapter.crossover_result(PARENT1, PARENT2).ran == "orchestrator"


def test_a_population_goes_in_one_request_and_comes_back_as_it_completes(live_server):
    population = [{"genome": PARENT1, "mutation_rate": 0.5, "seed": seed} for seed in range(40)]
    expected = [Mutation().run_operator(Mutation().validate(data))["genome"]
                for data in population]
    with Client(live_server, local_fallback=False) as client:
        sent = record_requests(client)
        in_order = list(client.map("evolution_mutation", population, ordered=True, timeout=60))
        assert [result.genome for result in in_order] == expected
        submits = [r for r in sent if r.url.path == "/api/tasks/submit"]
        assert len(submits) == 1

        task_ids = client.submit_many([{"type": "evolution_mutation", "data": data}
                                       for data in population[:5]])
        cancelled = client.submit("agent_action", {"messages": MESSAGES, "model": UNSERVED_MODEL})
        client.cancel(cancelled)
        outcomes = list(client.as_completed([*task_ids, cancelled], timeout=60,
                                            return_exceptions=True))
        assert {o.task_id for o in outcomes if isinstance(o, EvolutionResult)} == set(task_ids)
        assert [type(o) for o in outcomes].count(TaskCancelled) == 1


def test_a_task_no_live_worker_can_run_fails_at_once_one_that_waits_times_out(live_server):
    HandmadeWorker.register(live_server, "idle-llm", task_types=["agent_action"],
                            models=[SERVED_MODEL])
    with Client(live_server, local_fallback=False) as client:
        started = time.monotonic()
        with pytest.raises(NoWorkerCanRun, match=UNSERVED_MODEL) as caught:
            client.agent_action(MESSAGES, model=UNSERVED_MODEL, timeout=60)
        assert time.monotonic() - started < 10
        assert "no online worker offers model" in caught.value.reason
        task_id = caught.value.task_id
        status = client.status(task_id)
        assert status["status"] == "pending"
        assert status["unservable"] == caught.value.reason
        with pytest.raises(NoWorkerCanRun, match="no online worker runs simulation tasks"):
            client.run("simulation", {"algorithm": "python", "parameters": {
                "num_particles": 100, "num_steps": 1}}, timeout=60)

        waiting = client.execute_agent_action(MESSAGES, model=SERVED_MODEL, wait_for_result=False)
        started = time.monotonic()
        with pytest.raises(TaskTimeout, match=waiting["task_id"]):
            client.wait(waiting["task_id"], timeout=0.5)
        assert time.monotonic() - started < 5
        client.cancel(waiting["task_id"])
        with pytest.raises(TaskCancelled, match=waiting["task_id"]):
            client.wait(waiting["task_id"], timeout=5)


def test_server_errors_arrive_as_elastic_errors(start_server):
    unknown = f"no-such-task-{uuid.uuid4()}"
    with Client(start_server().url, local_fallback=False) as client:
        for call in (client.status, client.wait, client.cancel,
                     lambda task_id: list(client.as_completed([task_id]))):
            with pytest.raises(TaskNotFound):
                call(unknown)
        with pytest.raises(InvalidTask) as caught:
            client.submit("evolution_crossover", {"genome1": [1, 2], "genome2": PARENT2})
        assert (caught.value.field, caught.value.index) == ("tasks[0].data.genome1", 0)
        assert client.health()["status"]
        assert isinstance(client.stats(), dict)
        assert client.workers() == []


def test_an_evolution_task_no_worker_can_run_is_withdrawn_then_run_locally(start_server):
    idle_server = start_server()
    with EvolutionAdapter(idle_server.url, timeout=30) as adapter:
        outcome = adapter.crossover_result(PARENT1, PARENT2, seed=2)
    assert outcome.ran == "local"
    assert set(outcome.genome) == {"param1", "param2"}
    assert outcome.reason and "withdrawn from the orchestrator" in outcome.reason
    [task] = requests.get(f"{idle_server.url}/api/tasks", timeout=5).json()["tasks"]
    assert task["task_id"] in outcome.reason
    assert task["status"] == "cancelled"


def test_a_task_a_worker_holds_is_not_run_locally_after_a_timeout(start_server):
    server = start_server()
    worker = HandmadeWorker.register(server.url, "slow-evolution",
                                     task_types=["evolution_mutation"])
    with ThreadPoolExecutor(1) as pool, Client(server.url) as client:
        leased = pool.submit(worker.lease)
        with pytest.raises(TaskTimeout, match="runs on the orchestrator, so it is not run here"):
            client.run("evolution_mutation", {"genome": PARENT1, "mutation_rate": 0.5}, timeout=1)
        task: dict[str, Any] = leased.result()
        worker.report(task, {"success": True, "genome": {"from": "the worker"}})
        result = client.wait(task["task_id"], timeout=10)
    assert isinstance(result, EvolutionResult)
    assert (result.ran, result.genome) == ("orchestrator", {"from": "the worker"})


def test_the_evolution_examples_run_against_a_live_orchestrator(live_server, tmp_path):
    for example in ("evolution_map.py", "evolution_async.py"):
        ran = subprocess.run([sys.executable, str(EXAMPLES / example), "--server", live_server,
                              "--population", "10", "--generations", "2"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.count("best fitness") == 2
        assert "best genome" in ran.stdout
