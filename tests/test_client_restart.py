"""The clients through a kill -9 of the orchestrator: a wait rides out a restart, and a
task the orchestrator accepted is never run locally as well.

The worker is a ``HandmadeWorker`` registered with a 60 s worker timeout, so the
task stays queued (and servable) until the test leases it.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from conftest import FAST_CONFIG, wait_until
from handmade_worker import HandmadeWorker

from elastic.client import AnswerLost, AsyncClient, Client, ServerUnreachable
from elastic.client.core import ClientCore

MUTATION = {"genome": {"param1": 0.7}, "mutation_rate": 0.5}


@pytest.fixture
def patient_config(project_folder: Path) -> None:
    """Workers count as live for 60 s without a heartbeat."""
    (project_folder / "elastic.toml").write_text(
        FAST_CONFIG.replace("worker_timeout_seconds = 3.0", "worker_timeout_seconds = 60.0"))


def pending_task_id(server_url: str) -> str | None:
    """The id of the task waiting in the queue, once there is one."""
    found = requests.get(f"{server_url}/api/tasks", params={"status": "pending"}, timeout=5)
    return next((task["task_id"] for task in found.json()["tasks"]), None)


@pytest.mark.usefixtures("patient_config")
def test_a_wait_rides_out_a_restart_and_returns_the_orchestrators_result(start_server):
    server = start_server()
    worker = HandmadeWorker.register(server.url, "by-hand", task_types=["evolution_mutation"])
    with ThreadPoolExecutor(1) as pool, Client(server.url) as client:
        running = pool.submit(client.run, "evolution_mutation", MUTATION, timeout=60)
        task_id = wait_until(lambda: pending_task_id(server.url), message="the task queued")
        server.kill()
        start_server(server.database_url, port=server.port)
        task = worker.lease()
        worker.report(task, {"success": True, "genome": {"from": "the worker"}})
        result = running.result(timeout=60)
    assert (result.ran, result.task_id) == ("orchestrator", task_id)
    assert result.to_dict()["genome"] == {"from": "the worker"}


@pytest.mark.usefixtures("patient_config")
def test_a_task_accepted_before_the_orchestrator_went_away_is_not_run_locally(start_server):
    server = start_server()
    HandmadeWorker.register(server.url, "by-hand", task_types=["evolution_mutation"])

    async def run_through_the_outage() -> str:
        async with AsyncClient(server.url) as client:
            running = asyncio.create_task(client.run("evolution_mutation", MUTATION, timeout=2))
            task_id = await asyncio.to_thread(wait_until, lambda: pending_task_id(server.url))
            server.kill()
            with pytest.raises(ServerUnreachable, match="cannot reach the orchestrator"):
                await running
            return str(task_id)

    started = time.monotonic()
    task_id = asyncio.run(run_through_the_outage())
    assert time.monotonic() - started < 20
    restarted = start_server(server.database_url, port=server.port)
    status = requests.get(f"{restarted.url}/api/tasks/status/{task_id}", timeout=5).json()
    assert status["status"] == "pending"


def test_a_submit_whose_answer_was_lost_is_never_run_locally_though_the_retry_is_refused() -> None:
    # The first try reached the orchestrator (it queued the task) and its answer was lost
    # in a kill -9; the retry found the port closed. That task may be queued: running it
    # here too would run it twice, so the flow raises AnswerLost and never runs it.
    core = ClientCore("http://127.0.0.1:9", token=None, timeout=0.2, local_fallback=True,
                      local_provider=None, recheck_after_seconds=30.0)
    flow = core.run_flow("evolution_mutation", MUTATION, priority=5, timeout=10,
                         local_fallback=True)
    effects = [next(flow), flow.throw(AnswerLost("the answer was lost"))]
    effects.append(flow.send(None))
    time.sleep(0.3)  # past the submit's retry deadline
    with pytest.raises(AnswerLost, match="may have arrived"):
        flow.throw(ServerUnreachable("connection refused"))
    assert [type(effect).__name__ for effect in effects] == ["Call", "Pause", "Call"]
