"""Chaos: a thousand tasks through kill -9s, dropped answers and forged worker calls.

Real processes on loopback: an ``elastic serve`` on each database (conftest's fast timings),
three ``elastic worker`` processes talking to it through ``DroppingProxy`` (tests/faults.py),
which drops an answer now and then (a lease, a result's acknowledgement, a heartbeat's). At
seeded random moments a worker or the server is killed with SIGKILL and started again, and
calls are forged in a worker's name (the right lease token without the worker's secret, a
registration over a live worker's id, an unregister of a busy worker): each is refused.

At the end every task has completed, and exactly one result was accepted for each (one
``completed`` attempt in its history): at-least-once execution, exactly-once acceptance,
nothing stuck. Bounded: 1,000 tasks, 12 faults, 80 s to finish (per database).
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
import sqlalchemy
from conftest import FAST_CONFIG, ServerProcess, wait_until
from faults import DroppingProxy

TASKS = 1_000
FAULTS = 12
SEED = 20_261_201
WORKERS = ("chaos-1", "chaos-2", "chaos-3")
DROPPED_CALLS = ("/tasks", "/result", "/heartbeat")


def _mutation(n: int) -> dict[str, object]:
    return {"task_id": f"chaos-{n:04d}", "type": "evolution_mutation",
            "data": {"genome": {"a": 0.5, "b": float(n)}, "mutation_rate": 0.1, "seed": n}}


def _engine(server: ServerProcess) -> sqlalchemy.Engine:
    return sqlalchemy.create_engine(server.database_url.replace(
        "postgresql://", "postgresql+psycopg://"))


def _counts(engine: sqlalchemy.Engine) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(sqlalchemy.text(
            "SELECT status, count(*) FROM tasks GROUP BY status")).all()
    return {status: count for status, count in rows}


def _forge_calls(url: str, engine: sqlalchemy.Engine) -> dict[str, int]:
    """Speak for a live worker without its secret; returns each call's status code."""
    with engine.connect() as connection:  # a worker that beat within the last second
        leased = connection.execute(sqlalchemy.text(
            "SELECT t.task_id, t.worker_id, t.lease_token FROM tasks t JOIN workers w "
            "ON w.worker_id = t.worker_id WHERE t.status = 'assigned' AND w.status = 'online' "
            "AND w.last_heartbeat_at > :recent LIMIT 1"), {"recent": time.time() - 1.0}).first()
    if leased is None:
        return {}
    task_id, worker_id, token = leased
    forged = {
        "result, no secret": requests.post(
            f"{url}/api/tasks/{task_id}/result", timeout=30,
            json={"worker_id": worker_id, "lease_token": token, "result": {"success": True}}),
        "result, wrong secret": requests.post(
            f"{url}/api/tasks/{task_id}/result", timeout=30,
            headers={"X-Worker-Secret": "guessed"},
            json={"worker_id": worker_id, "lease_token": token, "result": {"success": True}}),
        "register over it": requests.post(
            f"{url}/api/workers/register", timeout=30,
            json={"worker_id": worker_id, "worker_type": "evolution", "secret": True}),
        "unregister it": requests.post(f"{url}/api/workers/{worker_id}/unregister", timeout=30),
        "heartbeat for it": requests.post(f"{url}/api/workers/{worker_id}/heartbeat",
                                          timeout=30, json={"tasks": {}}),
    }
    return {what: answer.status_code for what, answer in forged.items()}


@pytest.mark.stress
@pytest.mark.timeout(170)
def test_a_thousand_tasks_through_kills_dropped_answers_and_forgeries_end_once_each(
        start_server: Callable[..., ServerProcess],
        start_worker: Callable[..., subprocess.Popen[bytes]], project_folder: Path,
        database_url: str) -> None:
    (project_folder / "elastic.toml").write_text(
        FAST_CONFIG.replace("max_task_retries = 3", "max_task_retries = 100")
        + "retry_backoff_seconds = 0.2\nmax_worker_deaths = 100\n")
    server = start_server(database_url)
    engine = _engine(server)
    proxy = DroppingProxy(server.port)
    for first in range(0, TASKS, 250):
        answer = requests.post(f"{server.url}/api/tasks/submit", timeout=60, json={
            "tasks": [_mutation(n) for n in range(first, min(first + 250, TASKS))]})
        assert answer.status_code == 200, answer.text
    workers = {name: start_worker(proxy.url, worker_type="evolution", worker_id=name,
                                  capacity=4) for name in WORKERS}
    chance = random.Random(SEED)
    forged: list[dict[str, int]] = []
    for fault in range(FAULTS):
        time.sleep(chance.uniform(0.5, 2.0))  # a random (seeded) moment
        proxy.drop_next_answer(chance.choice(DROPPED_CALLS))
        if fault in (4, 9):
            server.kill()
            server.start()
        elif fault % 3 == 1:
            forged.append(_forge_calls(server.url, engine))
        else:
            name = chance.choice(WORKERS)
            workers[name].send_signal(signal.SIGKILL)
            workers[name].wait()
            workers[name] = start_worker(proxy.url, worker_type="evolution", worker_id=name,
                                         capacity=4)
    # 401: no or a wrong secret; 409: a live worker's id is not given to another registration.
    assert any(forged) and all(code in (401, 409) for calls in forged for code in calls.values()
                               ), forged
    # Bounded, but not timed: a machine loaded 15 deep took over a minute to finish.
    wait_until(lambda: _counts(engine).get("completed") == TASKS, timeout=240,
               interval=0.5, message=f"all {TASKS} tasks to complete")
    with engine.connect() as connection:
        accepted = dict(connection.execute(sqlalchemy.text(
            "SELECT task_id, count(*) FROM attempts WHERE outcome = 'completed' "
            "GROUP BY task_id")).all())
    engine.dispose()
    twice = {task_id: count for task_id, count in accepted.items() if count != 1}
    assert len(accepted) == TASKS and not twice, (len(accepted), twice)
    assert proxy.dropped, "the proxy dropped no answer"
