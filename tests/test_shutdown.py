"""Ctrl-C and SIGTERM stop every part within 3 s, in every state, and count no failure.

Real processes and real signals: Ctrl-C is SIGINT to the whole process group of
``elastic run`` (what a terminal sends); a plain ``elastic worker`` gets SIGINT or
SIGTERM while idle in a long poll, while busy, and while its server is down. The
timings are the interface's defaults where they matter (a 30 s idle heartbeat and a
long poll that outlasts the test), so a stop that waits for either shows.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests
from conftest import FAST_CONFIG, ServerProcess, wait_until

STOP_SECONDS = 3.0
SLOW_POLLS = {"ELASTIC_POLL_INTERVAL_SECONDS": "30", "ELASTIC_HEARTBEAT_INTERVAL_SECONDS": "30"}


def simulation(task_id: str, *, steps: int) -> dict[str, object]:
    return {"task_id": task_id, "algorithm": "python", "priority": "medium",
            "parameters": {"num_particles": 40, "num_steps": steps, "seed": 7}}


def mutation(task_id: str) -> dict[str, object]:
    return {"task_id": task_id, "type": "evolution_mutation",
            "data": {"genome": {"param1": 0.7}, "mutation_rate": 0.5, "seed": 1}}


def seconds_to_exit(process: subprocess.Popen[bytes], send: Callable[[], None]) -> float:
    """How long ``process`` takes to exit after ``send()`` delivers its signal."""
    started = time.monotonic()
    send()
    process.wait(timeout=30)
    return time.monotonic() - started


def task_rows(database: Path) -> dict[str, tuple[str, int, int]]:
    """Each task's (status, attempts, failures), read from the SQLite file (none yet while
    the file or its tables are being created)."""
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as connection:
            return {row[0]: row[1:] for row in connection.execute(
                "SELECT task_id, status, attempts, failures FROM tasks")}
    except sqlite3.OperationalError:
        return {}


def statuses(database: Path) -> dict[str, str]:
    """Each task's status."""
    return {task_id: row[0] for task_id, row in task_rows(database).items()}


def attempt_outcomes(database: Path) -> dict[str, list[str]]:
    """Each task's attempt outcomes, oldest first."""
    outcomes: dict[str, list[str]] = {}
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as connection:
        for task_id, outcome in connection.execute(
                "SELECT task_id, outcome FROM attempts ORDER BY id"):
            outcomes.setdefault(task_id, []).append(outcome)
    return outcomes


def test_ctrl_c_of_elastic_run_stops_everything_within_3_s_and_a_rerun_finishes_uncounted(
        project_folder: Path) -> None:
    (project_folder / "elastic.toml").write_text(
        FAST_CONFIG.replace("poll_interval_seconds = 1.0", "poll_interval_seconds = 30.0")
        .replace("heartbeat_interval_seconds = 0.5", "heartbeat_interval_seconds = 30.0"))
    batch = project_folder / "batch.json"
    batch.write_text(json.dumps({"tasks": [simulation("s1", steps=4000), mutation("m1")]}))
    # Two workers of each type: while one runs s1, the other waits in a long poll, ready
    # to lease s1 the moment the first hands it back.
    command = [sys.executable, "-m", "elastic", "run", str(batch), "--workers", "2"]
    database = project_folder / "elastic.db"
    first = subprocess.Popen(command, cwd=project_folder, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_until(lambda: statuses(database).items() >= {("m1", "completed"), ("s1", "assigned")},
               timeout=60, message="s1 running and the evolution worker idle in a long poll")
    took = seconds_to_exit(first, lambda: os.killpg(first.pid, signal.SIGINT))
    output, errors = first.communicate()
    assert took < STOP_SECONDS, (took, output, errors)
    assert first.returncode == 130, (output, errors)
    assert "Traceback" not in errors, errors
    named = sorted(line.removeprefix("results written to ") for line in output.splitlines()
                   if line.startswith("results written to "))
    assert named == sorted(str(p) for p in (project_folder / "results").glob("task_results_*"))
    rows = task_rows(database)
    assert rows["s1"] == ("pending", 0, 0), rows
    assert set(attempt_outcomes(database)["s1"]) == {"handed_back"}
    again = subprocess.run(command, cwd=project_folder, capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    rows = task_rows(database)
    assert {status for status, _, _ in rows.values()} == {"completed"}, rows
    assert all(failures == 0 for _, _, failures in rows.values()), rows
    outcomes = attempt_outcomes(database)["s1"]
    assert set(outcomes[:-1]) == {"handed_back"} and outcomes[-1] == "completed", outcomes


def test_a_worker_stops_within_3_s_on_sigint_or_sigterm_idle_busy_or_with_its_server_down(
        start_server: Callable[..., ServerProcess],
        start_worker: Callable[..., subprocess.Popen[bytes]]) -> None:
    server = start_server()
    idle = start_worker(server.url, worker_type="evolution", worker_id="idle", env=SLOW_POLLS)
    busy = start_worker(server.url, worker_id="busy", env=SLOW_POLLS)
    orphan = start_worker(server.url, worker_type="evolution", worker_id="orphan",
                          env=SLOW_POLLS)
    requests.post(f"{server.url}/api/tasks/submit", timeout=10,
                  json={"tasks": [simulation("long", steps=200_000)]}).raise_for_status()

    def states() -> dict[str, str]:
        workers = requests.get(f"{server.url}/api/workers/list", timeout=5).json()["workers"]
        return {worker["worker_id"]: worker["status"] for worker in workers}

    wait_until(lambda: states() == {"idle": "online", "busy": "busy", "orphan": "online"},
               timeout=30, message="three workers, one of them running the long task")
    assert seconds_to_exit(idle, lambda: idle.send_signal(signal.SIGINT)) < STOP_SECONDS
    assert seconds_to_exit(busy, lambda: busy.send_signal(signal.SIGTERM)) < STOP_SECONDS
    assert {k: v for k, v in states().items() if k != "orphan"} == {
        "idle": "offline", "busy": "offline"}
    task = requests.get(f"{server.url}/api/tasks/status/long", timeout=5).json()
    assert (task["status"], task["failures"]) == ("pending", 0)
    assert [attempt["outcome"] for attempt in task["history"]] == ["handed_back"]
    server.kill()
    assert seconds_to_exit(orphan, lambda: orphan.send_signal(signal.SIGINT)) < STOP_SECONDS
    assert (idle.returncode, busy.returncode, orphan.returncode) == (0, 0, 0)
