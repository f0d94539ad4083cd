"""Nothing stuck, nothing run twice, with real processes: kill -9 of workers and of the
server at chosen and random moments, restarts every second or two, a poison task that
kills its worker, and ``elastic run`` on a batch with a task a retry cannot fix.

Workers are ``elastic worker`` processes (tests/scripted_worker.py gives their
evolution_mutation a genome-driven delay or a deadly SIGKILL); servers are ``elastic
serve`` processes on SQLite with conftest's fast timings (worker timeout 3 s).
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import FAST_CONFIG, ServerProcess, wait_until

SCRIPTED_WORKER = Path(__file__).parent / "scripted_worker.py"
Starter = Callable[..., ServerProcess]


@pytest.fixture
def scripted_workers(project_folder: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Factory: start a scripted evolution worker process; all are stopped at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(server_url: str, worker_id: str, *, capacity: int = 1) -> subprocess.Popen[bytes]:
        with (project_folder / f"{worker_id}.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, str(SCRIPTED_WORKER), "worker", "--server", server_url,
                 "--type", "evolution", "--id", worker_id, "--capacity", str(capacity),
                 "--config", str(project_folder / "elastic.toml")],
                cwd=project_folder, stdout=log, stderr=subprocess.STDOUT)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


def mutation(task_id: str, **genome: float) -> dict[str, Any]:
    return {"task_id": task_id, "type": "evolution_mutation",
            "data": {"genome": {"param1": 0.5, **genome}, "mutation_rate": 0.1}}


def submit(url: str, tasks: list[dict[str, Any]]) -> None:
    answer = requests.post(f"{url}/api/tasks/submit", json={"tasks": tasks}, timeout=10)
    assert answer.status_code == 200, answer.text


def status(url: str, task_id: str) -> dict[str, Any]:
    return requests.get(f"{url}/api/tasks/status/{task_id}", timeout=10).json()


def history(url: str, task_id: str) -> list[tuple[str, str]]:
    return [(attempt["worker_id"], attempt["outcome"]) for attempt in status(url, task_id)["history"]]


def configure(project_folder: Path, extra: str) -> None:
    """conftest's fast timings, with the keys in ``extra`` set as it says."""
    keys = {line.split("=")[0].strip() for line in extra.splitlines() if "=" in line}
    kept = [line for line in FAST_CONFIG.splitlines() if line.split("=")[0].strip() not in keys]
    (project_folder / "elastic.toml").write_text("\n".join(kept) + "\n" + extra)


# -- poison ------------------------------------------------------------------------------------

def test_a_poison_task_is_held_after_three_worker_deaths_and_the_task_beside_it_completes(
        start_server: Starter, scripted_workers: Callable[..., subprocess.Popen[bytes]],
        project_folder: Path) -> None:
    # Retries in queue order; leases outlive the worker timeout, so a death is found as one.
    configure(project_folder, "retry_backoff_seconds = 0.0\nlease_seconds = 10.0\n")
    server = start_server()
    submit(server.url, [mutation("beside", slow=3.0), mutation("poison", poison=1.0)])
    crowded = scripted_workers(server.url, "crowded", capacity=2)  # takes both: dies at once
    assert crowded.wait(timeout=30) == -signal.SIGKILL
    lives = [scripted_workers(server.url, "single")]  # capacity 1: the task beside runs alone
    deadline = time.monotonic() + 90
    while status(server.url, "poison")["status"] != "held":
        assert time.monotonic() < deadline, history(server.url, "poison")
        if lives[-1].poll() is not None:  # killed by the poison: restarted, as systemd would
            lives.append(scripted_workers(server.url, "single"))
        time.sleep(0.1)

    poison = status(server.url, "poison")
    assert (poison["held_reason"], poison["worker_deaths"], poison["failures"]) == (
        "worker_deaths", 3, 0)
    assert [outcome for _, outcome in history(server.url, "poison")] == ["worker_dead"] * 3
    assert "3 workers died" in poison["error"]
    # The first death was found by the worker timeout, the next ones at once: the restarted
    # worker took its id back with the secret it kept, which ended its previous life.
    errors = [attempt["error"] for attempt in poison["history"]]
    assert "stopped heartbeating" in errors[0] and "worker restarted" in errors[2]
    beside = wait_until(lambda: (s := status(server.url, "beside"))["status"] == "completed" and s,
                        timeout=30, message="the task beside the poison to complete")
    assert beside["worker_deaths"] == 1, beside["history"]
    assert history(server.url, "beside") == [("crowded", "worker_dead"), ("single", "completed")]


# -- restarts of the server ------------------------------------------------------------------

def test_restarts_every_second_do_not_keep_a_dead_worker_alive_nor_kill_a_live_one(
        start_server: Starter, scripted_workers: Callable[..., subprocess.Popen[bytes]]) -> None:
    server = start_server()
    submit(server.url, [mutation("long", slow=5.0), mutation("doomed", slow=60.0)])
    survivor = scripted_workers(server.url, "survivor")
    wait_until(lambda: status(server.url, "long")["status"] == "assigned", message="long leased")
    victim = scripted_workers(server.url, "victim")
    wait_until(lambda: status(server.url, "doomed")["status"] == "assigned",
               message="doomed leased")
    victim.send_signal(signal.SIGKILL)
    server.kill()
    time.sleep(3.5)  # the fault: down longer than the worker timeout (3 s)
    for _ in range(12):  # then up about a second at a time, never 3 s in a row
        server.start()
        time.sleep(1.0)  # the fault: the server lives a second, then is killed again
        if status(server.url, "doomed")["status"] == "pending":
            break
        server.kill()
    assert status(server.url, "doomed")["status"] == "pending", "the dead worker's task returned"
    assert history(server.url, "doomed") == [("victim", "worker_dead")]
    assert survivor.poll() is None
    wait_until(lambda: status(server.url, "long")["status"] == "completed", timeout=30,
               message="the survivor's task to complete")
    assert history(server.url, "long") == [("survivor", "completed")], "never declared dead"


# -- random kills --------------------------------------------------------------------------------

@pytest.mark.stress
def test_kill_9_of_workers_and_the_server_at_random_moments_runs_every_task_to_one_result(
        start_server: Starter, scripted_workers: Callable[..., subprocess.Popen[bytes]],
        project_folder: Path) -> None:
    configure(project_folder, "retry_backoff_seconds = 0.2\nmax_worker_deaths = 20\n")
    server = start_server()
    task_ids = [f"c{n}" for n in range(24)]
    submit(server.url, [mutation(task_id, slow=0.4) for task_id in task_ids])
    names = ["chaos-a", "chaos-b", "chaos-c"]
    workers = {name: scripted_workers(server.url, name, capacity=2) for name in names}
    chance = random.Random(11)
    for kill in range(8):
        time.sleep(chance.uniform(0.3, 1.0))  # a random moment
        if kill == 4:
            server.kill()
            server.start()
            continue
        name = chance.choice(names)
        workers[name].send_signal(signal.SIGKILL)
        workers[name].wait()
        workers[name] = scripted_workers(server.url, name, capacity=2)
    ended = wait_until(lambda: _all_completed(server.url, task_ids), timeout=90,
                       message="every task to complete")
    for task_id, found in ended.items():
        outcomes = [attempt["outcome"] for attempt in found["history"]]
        assert outcomes.count("completed") == 1, (task_id, outcomes)
        assert set(outcomes) <= {"completed", "worker_dead", "undelivered", "expired"}, outcomes


def _all_completed(url: str, task_ids: list[str]) -> dict[str, dict[str, Any]] | None:
    found = {task_id: status(url, task_id) for task_id in task_ids}
    return found if all(s["status"] == "completed" for s in found.values()) else None


# -- elastic run and a task a retry cannot fix ---------------------------------------------------

def test_elastic_run_ends_on_a_held_task_with_exit_1_saying_why(project_folder: Path) -> None:
    batch = project_folder / "batch.json"
    batch.write_text(json.dumps({"tasks": [
        {"task_id": "fits", "algorithm": "python",
         "parameters": {"num_particles": 16, "num_steps": 20, "seed": 1}},
        {"task_id": "too-big", "algorithm": "python",
         "parameters": {"num_particles": 200_000, "num_steps": 1, "seed": 1}}]}))
    configure(project_folder, "memory_limit_mb = 20.0\n")
    done = subprocess.run([sys.executable, "-m", "elastic", "run", str(batch), "--workers", "1",
                           "--config", str(project_folder / "elastic.toml")],
                          capture_output=True, text=True, timeout=120, cwd=project_folder)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "too-big held (invalid_input)" in done.stdout
    assert "elastic release too-big" in done.stdout
    assert "parameters.num_particles" in done.stdout
