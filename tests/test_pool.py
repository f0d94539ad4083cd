"""``elastic worker --processes MIN:MAX``: the autoscaling, supervised worker pool.

The limits are pure functions, checked directly; the pool itself runs as a user runs
it, a real ``elastic worker --processes`` process with real children, against a real
``elastic serve``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import FAST_CONFIG, ServerProcess, wait_until

from elastic.errors import ConfigError
from elastic.worker.pool import children_needed, parse_processes, process_limit

HOST = socket.gethostname()
# About a second of the python kernel on a quiet core; CPU-bound, so it slows under load.
ONE_SECOND = {"num_particles": 60, "num_steps": 2000, "seed": 1}
FEW_SECONDS = {"num_particles": 60, "num_steps": 8000, "seed": 1}
needs_two_cores = pytest.mark.skipif((os.cpu_count() or 1) < 2,
                                     reason="a pool of 2 simulation processes needs 2 cores")


def slot_id(slot: int) -> str:
    return f"simulation-{HOST}-{slot}"


# -- limits ---------------------------------------------------------------------------------

def test_processes_take_min_colon_max_or_one_number() -> None:
    assert parse_processes("1:4") == (1, 4)
    assert parse_processes("0:2") == (0, 2)
    assert parse_processes("3") == (3, 3)


@pytest.mark.parametrize("text", ["4:1", "a:b", "0:0", "-1:2", ""])
def test_a_bad_processes_range_is_refused_naming_the_flag(text: str) -> None:
    with pytest.raises(ConfigError, match="processes"):
        parse_processes(text)


def limit(**overrides: Any) -> tuple[int, str]:
    options: dict[str, Any] = {"maximum": 16, "is_llm": False, "runs_simulation": True,
                               "capacity": 1, "cores": 4, "available_memory_mb": 64_000.0,
                               "memory_limit_mb": 2048.0, "requests_per_minute": None}
    return process_limit(**{**options, **overrides})


def test_simulation_children_never_outnumber_the_cores() -> None:
    assert limit()[0] == 4
    assert limit(capacity=2)[0] == 2
    assert limit(maximum=3)[0] == 3


def test_simulation_children_never_need_more_memory_than_is_available() -> None:
    count, reason = limit(available_memory_mb=5000.0)
    assert count == 2 and "memory_limit_mb" in reason


def test_llm_children_scale_by_the_provider_budget_not_by_cores() -> None:
    assert limit(is_llm=True, runs_simulation=False, cores=1)[0] == 16
    count, reason = limit(is_llm=True, runs_simulation=False, requests_per_minute=5)
    assert count == 5 and "requests/min" in reason


def test_the_backlog_asks_for_children_beyond_the_idle_ones() -> None:
    assert children_needed(pending=5, idle=1, capacity=1) == 4
    assert children_needed(pending=5, idle=1, capacity=2) == 2
    assert children_needed(pending=0, idle=0, capacity=1) == 0
    assert children_needed(pending=1, idle=3, capacity=1) == 0


# -- the pool, real processes ---------------------------------------------------------------

@pytest.fixture
def start_pool(project_folder: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Factory: ``elastic worker --processes RANGE``; killed (with its children) at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(server_url: str, processes: str) -> subprocess.Popen[bytes]:
        with (project_folder / "pool.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "elastic", "worker", "--server", server_url,
                 "--type", "simulation", "--processes", processes,
                 "--config", str(project_folder / "elastic.toml")],
                cwd=project_folder, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)  # its own group: teardown stops the children too
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def live_ids(server: ServerProcess) -> list[str]:
    workers = requests.get(f"{server.url}/api/workers/list", timeout=5).json()["workers"]
    return sorted(w["worker_id"] for w in workers if w["status"] in ("online", "busy"))


def submit(server: ServerProcess, count: int, parameters: dict[str, Any]) -> list[str]:
    tasks = [{"task_id": f"sim_{n:03d}", "algorithm": "python", "parameters": parameters}
             for n in range(count)]
    answer = requests.post(f"{server.url}/api/tasks/submit", json={"tasks": tasks}, timeout=10)
    answer.raise_for_status()
    return answer.json()["task_ids"]


def status_of(server: ServerProcess, task_id: str) -> dict[str, Any]:
    return requests.get(f"{server.url}/api/tasks/status/{task_id}", timeout=5).json()


def counts(server: ServerProcess) -> dict[str, int]:
    return requests.get(f"{server.url}/api/stats", timeout=5).json()["tasks"]


def children_of(pid: int) -> list[int]:
    """The pids of ``pid``'s child processes (Linux)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="ascii")
    return [int(child) for child in text.split()]


def configure(folder: Path, extra: str) -> None:
    (folder / "elastic.toml").write_text(FAST_CONFIG + extra)


@needs_two_cores
def test_a_burst_grows_the_pool_to_max_and_idleness_shrinks_it_back_to_min(
        start_server: Callable[..., ServerProcess],
        start_pool: Callable[..., subprocess.Popen[bytes]], project_folder: Path) -> None:
    configure(project_folder, "pool_idle_seconds = 2.0\n")
    server = start_server()
    start_pool(server.url, "1:2")
    wait_until(lambda: live_ids(server) == [slot_id(0)], timeout=60, message="MIN = 1 child")
    task_ids = submit(server, 12, ONE_SECOND)
    wait_until(lambda: live_ids(server) == [slot_id(0), slot_id(1)], timeout=60,
               message="the pool to grow to MAX = 2 while tasks wait")
    wait_until(lambda: counts(server).get("completed") == 12, timeout=120,
               message="every task to complete")
    # Either child may be the one left: the first to run out of work stops first.
    wait_until(lambda: len(live_ids(server)) == 1, timeout=60,
               message="the idle pool to shrink back to MIN = 1")
    assert all(status_of(server, task_id)["attempts"] == 1 for task_id in task_ids)


def test_a_killed_child_is_restarted_and_its_task_ends_exactly_once(
        start_server: Callable[..., ServerProcess],
        start_pool: Callable[..., subprocess.Popen[bytes]]) -> None:
    server = start_server()
    pool = start_pool(server.url, "1:1")
    [task_id] = submit(server, 1, FEW_SECONDS)
    wait_until(lambda: status_of(server, task_id)["status"] == "assigned", timeout=60,
               message="the task to start")
    [child] = children_of(pool.pid)
    os.kill(child, signal.SIGKILL)
    wait_until(lambda: children_of(pool.pid) not in ([], [child]), timeout=30,
               message="the pool to restart its child")
    wait_until(lambda: status_of(server, task_id)["status"] == "completed", timeout=120,
               message="the task to complete")
    history = status_of(server, task_id)["history"]
    assert [attempt["outcome"] for attempt in history] == ["worker_dead", "completed"]
    assert {attempt["worker_id"] for attempt in history} == {slot_id(0)}
    assert counts(server).get("completed") == 1


@needs_two_cores
def test_sigterm_drains_the_pool_and_loses_no_task(
        start_server: Callable[..., ServerProcess],
        start_pool: Callable[..., subprocess.Popen[bytes]],
        start_worker: Callable[..., subprocess.Popen[bytes]]) -> None:
    server = start_server()
    pool = start_pool(server.url, "2:2")
    task_ids = submit(server, 4, FEW_SECONDS)
    wait_until(lambda: counts(server).get("assigned") == 2, timeout=60,
               message="both children to run a task")
    pool.send_signal(signal.SIGTERM)
    assert pool.wait(timeout=40) == 0
    assert live_ids(server) == []
    assert counts(server).get("assigned", 0) == 0
    start_worker(server.url, worker_id="after-the-pool")
    wait_until(lambda: counts(server).get("completed") == 4, timeout=120,
               message="every task to complete after the drain")
    for task_id in task_ids:
        outcomes = [a["outcome"] for a in status_of(server, task_id)["history"]]
        assert outcomes.count("completed") == 1
        assert set(outcomes) <= {"handed_back", "completed"}


def test_a_crash_looping_child_is_not_restarted_and_the_pool_says_so(
        start_server: Callable[..., ServerProcess],
        start_pool: Callable[..., subprocess.Popen[bytes]], project_folder: Path) -> None:
    (project_folder / "not-a-folder").write_text("a file where the worker state should go")
    configure(project_folder, 'state_path = "not-a-folder"\n')
    server = start_server()
    pool = start_pool(server.url, "1:1")
    assert pool.wait(timeout=120) == 1
    log = (project_folder / "pool.log").read_text()
    assert "a crash loop, not restarting it" in log
    assert log.count("exited unexpectedly") == 4


def test_install_service_writes_a_systemd_unit_that_restarts_the_pool(
        project_folder: Path) -> None:
    unit_path = project_folder / "elastic-worker.service"
    result = subprocess.run(
        [sys.executable, "-m", "elastic", "worker", "install-service", "--processes", "1:4",
         "--server", "http://10.0.0.5:5000", "--user", "pi", "--output", str(unit_path)],
        cwd=project_folder, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = unit_path.read_text().splitlines()
    assert (f"ExecStart={sys.executable} -m elastic worker --type simulation --processes 1:4 "
            "--server http://10.0.0.5:5000") in lines
    assert {"Restart=always", "RestartSec=5", "KillMode=mixed", "User=pi",
            f"WorkingDirectory={project_folder}", "WantedBy=multi-user.target"} <= set(lines)
    assert "systemctl enable --now elastic-worker" in result.stderr


@pytest.mark.parametrize("flag", [["--id", "mine"], ["--slot", "2"], ["--port", "5001"]])
def test_a_pool_refuses_the_flags_each_child_must_choose_itself(
        project_folder: Path, flag: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "elastic", "worker", "--processes", "1:2", *flag],
        cwd=project_folder, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and flag[0].removeprefix("--") in result.stderr
