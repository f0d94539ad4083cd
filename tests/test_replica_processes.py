"""Two ``elastic serve`` processes on one PostgreSQL database, with real worker processes.

What only processes show: a replica killed with ``kill -9`` in the middle of a batch and
started again, and provider budgets shared by workers that talk to different replicas.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import FAST_CONFIG, ServerProcess, wait_until
from sqlalchemy import select
from standins.ollama_standin import OllamaStandIn

from elastic.store import open_store
from elastic.store.schema import attempts, tasks

Starter = Callable[..., ServerProcess]
WorkerStarter = Callable[..., subprocess.Popen[bytes]]

BATCH_TASKS = 5000
WORKERS_PER_REPLICA = 2
WORKER_CAPACITY = 4


def stats(server: ServerProcess) -> dict[str, int]:
    """``/api/stats`` task counts."""
    return requests.get(f"{server.url}/api/stats", timeout=10).json()["tasks"]


def worker_states(server: ServerProcess) -> dict[str, str]:
    """Worker id -> seed-000 status, as ``server`` sees them."""
    listed = requests.get(f"{server.url}/api/workers/list", timeout=10).json()["workers"]
    return {worker["worker_id"]: worker["status"] for worker in listed}


# 5,000 tasks take about a minute on a quiet 2-core machine today (the lease and result
# path, not the replicas, sets the pace), more under load: bounded at 5 minutes.
@pytest.mark.stress
@pytest.mark.timeout(300)
def test_a_batch_through_two_replicas_completes_exactly_once_though_one_is_killed_midway(
        postgres_url: str, start_server: Starter, start_worker: WorkerStarter,
        project_folder: Path) -> None:
    first, second = start_server(postgres_url), start_server(postgres_url)
    on_first = [f"first-{n}" for n in range(WORKERS_PER_REPLICA)]
    for number in range(WORKERS_PER_REPLICA):
        for server, name in ((first, "first"), (second, "second")):
            start_worker(server.url, worker_type="evolution", worker_id=f"{name}-{number}",
                         capacity=WORKER_CAPACITY)
    batch = [{"task_id": f"m{n:05d}", "type": "evolution_mutation",
              "data": {"genome": {"a": 0.5, "b": 1.5}, "mutation_rate": 0.2, "seed": n}}
             for n in range(BATCH_TASKS)]
    requests.post(f"{second.url}/api/tasks/submit", json={"tasks": batch},
                  timeout=120).raise_for_status()

    wait_until(lambda: stats(second)["completed"] >= BATCH_TASKS // 3, timeout=120,
               interval=0.2, message="a third of the batch")
    first.kill()
    wait_until(lambda: all(worker_states(second)[w] == "dead" for w in on_first), timeout=30,
               interval=0.2, message="the second replica to find the first one's workers dead")
    first = start_server(postgres_url, port=first.port)
    wait_until(lambda: stats(first)["completed"] == BATCH_TASKS, timeout=240, interval=0.3,
               message="the whole batch")
    first.stop()
    second.stop()

    store = open_store(postgres_url, upgrade=False)
    try:
        with store.engine.connect() as connection:
            rows = connection.execute(select(tasks.c.task_id, tasks.c.status, tasks.c.attempts,
                                             tasks.c.exported)).all()
            history = defaultdict(list)
            for task_id, outcome in connection.execute(
                    select(attempts.c.task_id, attempts.c.outcome).order_by(attempts.c.id)):
                history[task_id].append(outcome)
    finally:
        store.close()
    assert len(rows) == BATCH_TASKS and {row.status for row in rows} == {"completed"}
    for row in rows:
        counted = [outcome for outcome in history[row.task_id] if outcome != "handed_back"]
        assert history[row.task_id].count("completed") == 1, history[row.task_id]
        assert counted[-1] == "completed" and len(counted) == row.attempts, history[row.task_id]
    assert any(len(outcomes) > 1 for outcomes in history.values())  # the kill left its mark
    written = Counter(entry["task_id"] for path in (project_folder / "results").glob(
        "task_results_*.json") for entry in json.loads(path.read_text())["task_results"])
    assert set(written.values()) == {1}
    assert set(written) == {row.task_id for row in rows if row.exported}
    # A task the killed replica had claimed for its results file, and never wrote, waits
    # for its claim to run out; all the others are in exactly one file.
    assert len(written) >= BATCH_TASKS - 2000


def test_three_workers_on_two_replicas_send_exactly_the_shared_requests_per_minute(
        postgres_url: str, start_server: Starter, start_worker: WorkerStarter,
        project_folder: Path) -> None:
    (project_folder / "elastic.toml").write_text(
        FAST_CONFIG + "\n[providers.ollama.limits]\nrequests_per_minute = 3\n")
    first, second = start_server(postgres_url), start_server(postgres_url)
    with OllamaStandIn(max_requests_per_minute=3).serving() as ollama:
        for number, server in enumerate((first, second, second)):
            start_worker(server.url, worker_type="deepseek", worker_id=f"deepseek-{number}",
                         env={"OLLAMA_HOST": ollama.base_url})
        wait_until(lambda: sum(s == "online" for s in worker_states(first).values()) == 3,
                   timeout=30, message="three deepseek workers")
        task_ids = [f"llm-{n}" for n in range(6)]
        requests.post(f"{first.url}/api/tasks/submit", timeout=10, json={"tasks": [
            {"task_id": task_id, "type": "agent_action", "data": {
                "messages": [{"role": "user", "content": "Say hello."}]}}
            for task_id in task_ids]}).raise_for_status()
        wait_until(lambda: stats(second)["completed"] == 3, timeout=20,
                   message="three tasks to complete")

        def settled() -> bool:
            counts = stats(first)
            return (len(ollama.requests), counts["completed"], counts["pending"]) == (3, 3, 3)

        wait_until(settled, timeout=10, message="the three others to wait in the queue")
        second.stop()
        first.stop()
        first = start_server(postgres_url, port=first.port)
        budget: dict[str, Any] = requests.get(f"{first.url}/api/providers/ollama",
                                              timeout=10).json()
        assert budget["snapshot"]["remaining_requests_per_minute"] == 0  # kept by the restart
        assert len(ollama.requests) == 3 and ollama.requests_in_last_minute() == 3
        assert stats(first)["failed"] == 0
        assert time.time() < budget["available_at"] <= time.time() + 60
