"""The client against a running orchestrator.

``live_server`` (tests/conftest.py) is the base URL of a real orchestrator on
loopback with an ``evolution`` worker connected; ``start_server`` starts one with
no worker. Tasks that must stay pending are LLM tasks asking for a model no
worker offers. Each test starts its own server and worker (about 2.5 s), so
related checks share a test.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from elastic.client import Client, EvolutionAdapter
from elastic.errors import (
    Conflict,
    InvalidInput,
    TaskCancelled,
    TaskNotFound,
    TaskTimeout,
)

PARENT1 = {"param1": 0.8, "param2": 100}
PARENT2 = {"param1": 0.6, "param2": 150}
UNSERVED_MODEL = "elastic-test-model-no-worker-offers"
MESSAGES = [{"role": "user", "content": "stay pending"}]


@pytest.fixture
def client(live_server: str) -> Iterator[Client]:
    """A client of the live orchestrator that never runs anything locally."""
    with Client(live_server, local_fallback=False) as live_client:
        yield live_client


@pytest.fixture
def pending_task(client: Client) -> Iterator[str]:
    """The id of a task no worker can take; cancelled afterwards."""
    task_id = client.agent_action(MESSAGES, model=UNSERVED_MODEL, wait=False, priority=1)
    yield task_id
    with contextlib.suppress(Conflict):
        client.cancel(task_id)


def test_tasks_run_on_the_orchestrator_and_say_so(client, live_server):
    task_id = client.submit("evolution_crossover",
                            {"genome1": PARENT1, "genome2": PARENT2, "seed": 4}, priority=7)
    result = client.wait(task_id, timeout=30)
    assert result["success"] is True
    assert set(result["genome"]) == {"param1", "param2"}

    status = client.status(task_id)
    assert (status["task_id"], status["status"]) == (task_id, "completed")
    assert status["result"]["genome"] == result["genome"]
    with pytest.raises(Conflict):
        client.cancel(task_id)

    ran = client.run("evolution_mutation", {"genome": PARENT1, "mutation_rate": 0.5},
                     timeout=30)
    assert (ran["ran"], ran["reason"]) == ("orchestrator", None)
    assert ran["task_id"]

    outcome = EvolutionAdapter(live_server, timeout=30).crossover_result(PARENT1, PARENT2)
    assert outcome["ran"] == "orchestrator"
    assert set(outcome["genome"]) == {"param1", "param2"}


def test_many_tasks_are_submitted_at_once_then_each_waited_for(client):
    own_id = f"client-live-{uuid.uuid4()}"
    task_ids = client.submit_many([
        {"type": "evolution_mutation", "data": {"genome": PARENT1, "mutation_rate": 0.3}},
        {"type": "evolution_crossover", "data": {"genome1": PARENT1, "genome2": PARENT2},
         "priority": 8, "task_id": own_id},
    ])
    assert len(task_ids) == 2
    assert task_ids[1] == own_id
    data = {"genome": PARENT1, "mutation_rate": 0.2}
    task_ids += [client.submit("evolution_mutation", data) for _ in range(3)]
    results = [client._wait_for_result(task_id, timeout=30) for task_id in task_ids]
    assert all(result["success"] for result in results)


def test_wait_long_polls_instead_of_sleeping(client):
    sent: list[dict[str, Any]] = []
    real_request = client.transport.session.request

    def recording_request(method: str, url: str, **kwargs: Any) -> Any:
        sent.append({"url": url, "params": kwargs.get("params")})
        return real_request(method, url, **kwargs)

    client.transport.session.request = recording_request
    task_id = client.submit("evolution_mutation", {"genome": PARENT1, "mutation_rate": 0.1})
    client.wait(task_id, timeout=30)
    polls = [call for call in sent if "/api/tasks/status/" in call["url"]]
    assert polls
    assert all(float(call["params"]["wait"]) > 0 for call in polls)
    assert len(polls) <= 5


def test_a_pending_task_times_out_then_is_cancelled(client, pending_task):
    assert isinstance(pending_task, str)
    assert client.status(pending_task)["status"] == "pending"

    started = time.monotonic()
    with pytest.raises(TaskTimeout, match=pending_task):
        client.wait(pending_task, timeout=0.5)
    assert time.monotonic() - started < 5

    client.cancel(pending_task)
    assert client.status(pending_task)["status"] == "cancelled"
    with pytest.raises(TaskCancelled, match=pending_task):
        client.wait(pending_task, timeout=5)


def test_server_errors_arrive_as_elastic_errors(client):
    unknown = f"no-such-task-{uuid.uuid4()}"
    with pytest.raises(TaskNotFound):
        client.status(unknown)
    with pytest.raises(TaskNotFound):
        client.wait(unknown, timeout=1)
    with pytest.raises(TaskNotFound):
        client.cancel(unknown)
    with pytest.raises(InvalidInput, match="genome1"):
        client.submit("evolution_crossover", {"genome1": [1, 2], "genome2": PARENT2})
    assert client.health()["status"]
    assert isinstance(client.stats(), dict)
    assert client.workers()


def test_an_evolution_task_that_times_out_runs_locally_and_is_cancelled_there(start_server):
    idle_server = start_server()
    adapter = EvolutionAdapter(idle_server.url, timeout=0.5)
    outcome = adapter.crossover_result(PARENT1, PARENT2, seed=2)
    assert outcome["ran"] == "local"
    assert set(outcome["genome"]) == {"param1", "param2"}
    abandoned = re.search(r"task (\S+) did not end", outcome["reason"])
    assert abandoned, outcome["reason"]
    assert adapter.client.status(abandoned.group(1))["status"] == "cancelled"
