"""Real server and worker processes on loopback: batches, kill -9, shutdowns, retries."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import requests
from conftest import ServerProcess, hiding_modules, wait_until

Starter = Callable[..., ServerProcess]
WorkerStarter = Callable[..., subprocess.Popen[bytes]]


def simulation(task_id: str, *, particles: int = 16, steps: int = 40,
               algorithm: str = "python") -> dict[str, object]:
    return {"task_id": task_id, "algorithm": algorithm, "priority": "medium",
            "parameters": {"num_particles": particles, "num_steps": steps, "seed": 7}}


def submit(url: str, tasks: list[dict[str, object]]) -> list[str]:
    answer = requests.post(f"{url}/api/tasks/submit", json={"tasks": tasks}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["task_ids"]


def statuses(url: str, task_ids: list[str]) -> dict[str, dict[str, object]]:
    return {tid: requests.get(f"{url}/api/tasks/status/{tid}", timeout=10).json()
            for tid in task_ids}


def all_ended(url: str, task_ids: list[str]) -> dict[str, dict[str, object]] | None:
    current = statuses(url, task_ids)
    return current if all(s["finished_at"] for s in current.values()) else None


def test_the_seed_example_runs_on_worker_processes_with_submit_wait(
        start_server: Starter, start_worker: WorkerStarter, project_folder: Path) -> None:
    server = start_server()
    start_worker(server.url, worker_id="sim-a")
    start_worker(server.url, worker_id="sim-b")
    example = Path(__file__).parent.parent / "examples" / "tareas_manuales_ejemplo.json"
    small = json.loads(example.read_text())
    for task in small["tasks"]:
        task["parameters"].update(num_particles=20, num_steps=30)
        task["algorithm"] = "python"
    batch = project_folder / "batch.json"
    batch.write_text(json.dumps(small))
    done = subprocess.run([sys.executable, "-m", "elastic", "submit", str(batch), "--wait",
                           "--server", server.url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    ended = statuses(server.url, ["sim_001", "sim_002"])
    assert {s["status"] for s in ended.values()} == {"completed"}
    result = ended["sim_001"]["result"]
    assert result["particles_processed"] == 20 and result["steps_completed"] == 30
    assert result["metrics"]["steps_completed"] == 30
    assert {s["assigned_to"] for s in ended.values()} <= {"sim-a", "sim-b"}


def test_kill_9_of_the_server_mid_batch_still_completes_every_task_exactly_once(
        start_server: Starter, start_worker: WorkerStarter) -> None:
    server = start_server()
    for n in range(2):
        start_worker(server.url, worker_id=f"sim-{n}", capacity=2)
    task_ids = submit(server.url, [simulation(f"k{i}", particles=50, steps=2000) for i in range(16)])
    wait_until(lambda: sum(s["status"] == "completed"
                           for s in statuses(server.url, task_ids).values()) >= 3,
               timeout=60, message="a few tasks to complete")
    server.kill()
    server.start()
    ended = wait_until(lambda: all_ended(server.url, task_ids), timeout=120,
                       message="every task to end after the restart")
    assert {s["status"] for s in ended.values()} == {"completed"}
    for task_id, status in ended.items():
        outcomes = [attempt["outcome"] for attempt in status["history"]]
        assert outcomes == ["completed"], f"{task_id} ran {outcomes}"


def test_a_worker_killed_mid_task_has_the_task_retried_elsewhere(
        start_server: Starter, start_worker: WorkerStarter) -> None:
    server = start_server()
    doomed = start_worker(server.url, worker_id="doomed")
    task_id = submit(server.url, [simulation("mid", particles=100, steps=5000)])[0]
    wait_until(lambda: statuses(server.url, [task_id])[task_id]["status"] == "assigned",
               message="the task to be leased")
    doomed.send_signal(signal.SIGKILL)
    start_worker(server.url, worker_id="rescuer")
    ended = wait_until(lambda: all_ended(server.url, [task_id]), timeout=90,
                       message="the task to be retried and completed")
    status = ended[task_id]
    assert status["status"] == "completed" and status["assigned_to"] == "rescuer"
    outcomes = [(a["worker_id"], a["outcome"]) for a in status["history"]]
    assert outcomes[0][0] == "doomed" and outcomes[0][1] in ("expired", "worker_dead")
    assert outcomes[-1] == ("rescuer", "completed")


def test_sigterm_hands_the_running_task_back_and_unregisters(
        start_server: Starter, start_worker: WorkerStarter) -> None:
    server = start_server()
    worker = start_worker(server.url, worker_id="polite")
    task_id = submit(server.url, [simulation("handed", particles=100, steps=20000)])[0]
    wait_until(lambda: statuses(server.url, [task_id])[task_id]["status"] == "assigned",
               message="the task to be leased")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=15) == 0
    status = statuses(server.url, [task_id])[task_id]
    assert status["status"] == "pending"
    assert [a["outcome"] for a in status["history"]] == ["handed_back"]
    workers = requests.get(f"{server.url}/api/workers/list", timeout=5).json()["workers"]
    assert workers[0]["status"] == "offline"


def test_elastic_run_computes_a_batch_and_writes_results(project_folder: Path) -> None:
    batch = project_folder / "batch.json"
    batch.write_text(json.dumps({"metadata": {"description": "test"}, "tasks": [
        simulation("r1", algorithm="python"), simulation("r2", algorithm="numpy"),
        {"type": "evolution_mutation", "task_id": "e1",
         "data": {"genome": {"param1": 0.7, "param2": 120}, "mutation_rate": 0.5, "seed": 1}}]}))
    done = subprocess.run([sys.executable, "-m", "elastic", "run", str(batch), "--workers", "1",
                           "--config", str(project_folder / "elastic.toml")],
                          capture_output=True, text=True, timeout=180, cwd=project_folder)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "batch summary" in done.stdout
    assert re.search(r"^dashboard: http://127\.0\.0\.1:\d+/$", done.stdout, re.M), done.stdout
    files = sorted((project_folder / "results").glob("task_results_*.json"))
    assert files, done.stdout
    named = [line.removeprefix("results written to ") for line in done.stdout.splitlines()
             if line.startswith("results written to ")]
    assert sorted(named) == [str(path) for path in files]
    written = [entry["task_id"] for path in files
               for entry in json.loads(path.read_text())["task_results"]]
    assert sorted(written) == ["e1", "r1", "r2"]
    assert (project_folder / "results" / "orchestrator_stats.json").exists()
    assert not (project_folder / "elastic.db-wal").exists()


def test_elastic_run_stops_at_once_naming_the_kernel_no_worker_here_offers(
        project_folder: Path) -> None:
    batch = project_folder / "batch.json"
    batch.write_text(json.dumps({"tasks": [simulation("c1", algorithm="cython"),
                                           simulation("p1", algorithm="python")]}))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "elastic", "run", str(batch), "--workers", "1",
                           "--config", str(project_folder / "elastic.toml")],
                          capture_output=True, text=True, timeout=120, cwd=project_folder,
                          env=hiding_modules(project_folder / "site", "elastic.kernels.cython_kernel"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 task(s): no online worker offers algorithm 'cython'" in done.stderr
    assert "compiled kernel is not built" in done.stderr
    assert time.monotonic() - started < 30


def processes_in(folder: Path) -> list[int]:
    """Pids of live processes whose working directory is ``folder``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and Path(entry, "cwd").resolve() == folder.resolve() \
                    and "elastic" in Path(entry, "cmdline").read_text():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def completed_count(database: Path) -> int:
    """Completed tasks in a SQLite file that another process is writing."""
    if not database.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as connection:
            return connection.execute(
                "SELECT count(*) FROM tasks WHERE status = 'completed'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_kill_9_of_elastic_run_leaves_no_workers_and_a_rerun_finishes_the_batch(
        project_folder: Path) -> None:
    batch = project_folder / "batch.json"
    batch.write_text(json.dumps({"tasks": [simulation(f"t{i}", particles=60, steps=3000)
                                           for i in range(8)]}))
    command = [sys.executable, "-m", "elastic", "run", str(batch), "--workers", "2"]
    first = subprocess.Popen(command, cwd=project_folder, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    wait_until(lambda: completed_count(project_folder / "elastic.db") > 0,
               timeout=60, message="the first task to complete")
    first.send_signal(signal.SIGKILL)
    first.wait()
    wait_until(lambda: not processes_in(project_folder), timeout=20,
               message="the workers of the killed run to exit")
    again = subprocess.run(command, cwd=project_folder, capture_output=True, text=True,
                           timeout=180)
    assert again.returncode == 0, again.stdout + again.stderr
    exported = [json.loads(path.read_text())
                for path in (project_folder / "results").glob("task_results_*.json")]
    ids = [entry["task_id"] for written in exported for entry in written["task_results"]]
    assert sorted(ids) == sorted(f"t{i}" for i in range(8)), "each task in results exactly once"


def test_the_orchestrator_serves_a_batch_from_postgresql_and_survives_kill_9(
        start_server: Starter, start_worker: WorkerStarter, postgres_url: str) -> None:
    server = start_server(postgres_url)
    start_worker(server.url, worker_id="pg-sim", capacity=2)
    task_ids = submit(server.url, [simulation(f"pg{i}", particles=40, steps=1500)
                                   for i in range(6)])
    server.kill()
    server.start()
    ended = wait_until(lambda: all_ended(server.url, task_ids), timeout=120,
                       message="the batch to end on PostgreSQL")
    assert {s["status"] for s in ended.values()} == {"completed"}


def test_task_ids_with_url_characters_run_through_workers_and_the_cli(
        start_server: Starter, start_worker: WorkerStarter) -> None:
    server = start_server()
    worker = start_worker(server.url, worker_type="evolution", worker_id="evo ?#%1")
    odd = "gen 1?#%x"
    mutation = {"type": "evolution_mutation", "task_id": odd,
                "data": {"genome": {"a": 1.0}, "mutation_rate": 1.0, "seed": 3}}
    submit(server.url, [mutation])
    ended = wait_until(lambda: all_ended_quoted(server.url, odd), timeout=60,
                       message="the oddly named task to end")
    assert ended["status"] == "completed" and ended["assigned_to"] == "evo ?#%1"
    pending = {**mutation, "task_id": "later ?#%", "priority": 1}
    worker.terminate()
    assert worker.wait(timeout=15) == 0
    submit(server.url, [pending])
    cancelled = subprocess.run([sys.executable, "-m", "elastic", "cancel", "later ?#%",
                                "--server", server.url], capture_output=True, text=True,
                               timeout=60)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "cancelled" in cancelled.stdout


def all_ended_quoted(url: str, task_id: str) -> dict[str, object] | None:
    status = requests.get(f"{url}/api/tasks/status/{quote(task_id, safe='')}", timeout=10).json()
    return status if status["finished_at"] else None
