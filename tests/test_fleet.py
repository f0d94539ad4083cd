"""The declared fleet: ``[[workers]]`` in elastic.toml, health checks, missing workers,
``allow_undeclared_workers``, and a worker's status port beyond loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import FAST_CONFIG, ServerProcess, free_port, wait_until

from elastic import config
from elastic.errors import ConfigError

TOKEN = "fleet-test-token-0123456789abcdef"


def declare(folder: Path, *entries: tuple[str, int], extra: str = "") -> None:
    """Write elastic.toml declaring workers (id, status port on loopback)."""
    tables = "".join(f'[[workers]]\nid = "{worker_id}"\naddress = "127.0.0.1:{port}"\n'
                     'capacity = 2\nalgorithms = ["python"]\n' for worker_id, port in entries)
    (folder / "elastic.toml").write_text(FAST_CONFIG + extra + tables)


def fleet(server: ServerProcess, **headers: str) -> dict[str, Any]:
    return requests.get(f"{server.url}/api/fleet", headers=headers, timeout=5).json()


# -- configuration --------------------------------------------------------------------------

def test_declared_workers_are_read_from_the_toml(tmp_path: Path) -> None:
    path = tmp_path / "elastic.toml"
    path.write_text('[[workers]]\nid = "pi-01"\naddress = "192.168.1.100:5001"\n'
                    'capacity = 2\nalgorithms = ["python", "cython"]\n')
    [declared] = config.load(path, environ={}).workers
    assert (declared.worker_id, declared.address, declared.capacity,
            declared.algorithms) == ("pi-01", "192.168.1.100:5001", 2, ("python", "cython"))


@pytest.mark.parametrize("table", [
    '[[workers]]\nid = "pi-01"\n',                                      # no address
    '[[workers]]\nid = "pi-01"\naddress = "no-port"\n',
    '[[workers]]\nid = "pi-01"\naddress = "h:1"\ncolour = "red"\n',     # unknown key
    '[[workers]]\nid = "a"\naddress = "h:1"\n[[workers]]\nid = "a"\naddress = "h:2"\n',
])
def test_a_bad_declared_worker_is_refused_naming_the_key(tmp_path: Path, table: str) -> None:
    path = tmp_path / "elastic.toml"
    path.write_text(table)
    with pytest.raises(ConfigError, match="workers"):
        config.load(path, environ={})


# -- the running fleet ------------------------------------------------------------------------

def test_a_declared_worker_that_never_came_is_missing_in_fleet_status_and_workers_view(
        start_server: Callable[..., ServerProcess],
        start_worker: Callable[..., subprocess.Popen[bytes]], project_folder: Path) -> None:
    present_port, absent_port = free_port(), free_port()
    declare(project_folder, ("pi-01", present_port), ("pc-02", absent_port))
    server = start_server()
    start_worker(server.url, worker_id="pi-01", extra=["--port", str(present_port)])

    def checked() -> dict[str, Any] | None:
        answer = fleet(server)
        entries = {entry["worker_id"]: entry for entry in answer["workers"]}
        is_done = all(entry["checked_at"] for entry in entries.values())
        return entries if is_done and not entries["pi-01"]["missing"] else None

    entries = wait_until(checked, timeout=60, message="a health check of both, pi-01 live")
    assert entries["pi-01"]["reachable"] is True
    assert entries["pc-02"]["missing"] and entries["pc-02"]["reachable"] is False
    assert "not registered" in entries["pc-02"]["problem"]
    assert fleet(server)["missing"] == ["pc-02"]
    view = {w["id"]: w for w in requests.get(f"{server.url}/workers", timeout=5).json()}
    assert view["pc-02"]["state"] == "missing" and view["pi-01"]["missing"] is False
    shown = subprocess.run([sys.executable, "-m", "elastic", "status", "--server", server.url],
                           cwd=project_folder, capture_output=True, text=True, timeout=60,
                           env={**os.environ, "COLUMNS": "200"})
    assert "declared workers missing" in shown.stdout and "pc-02" in shown.stdout


def test_with_undeclared_workers_refused_an_unknown_id_gets_403_naming_it(
        start_server: Callable[..., ServerProcess], project_folder: Path) -> None:
    declare(project_folder, ("pi-01", free_port()), extra="allow_undeclared_workers = false\n")
    server = start_server()
    refused = requests.post(f"{server.url}/api/workers/register", timeout=5,
                            json={"worker_id": "intruder", "worker_type": "simulation"})
    assert refused.status_code == 403 and "'intruder'" in refused.json()["error"]
    accepted = requests.post(f"{server.url}/api/workers/register", timeout=5,
                             json={"worker_id": "pi-01", "worker_type": "simulation"})
    assert accepted.status_code == 200


def test_an_undeclared_worker_process_exits_2_naming_its_id(
        start_server: Callable[..., ServerProcess], project_folder: Path) -> None:
    declare(project_folder, ("pi-01", free_port()), extra="allow_undeclared_workers = false\n")
    server = start_server()
    result = subprocess.run(
        [sys.executable, "-m", "elastic", "worker", "--server", server.url, "--id", "intruder"],
        cwd=project_folder, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "'intruder'" in result.stderr


def test_a_status_port_beyond_loopback_needs_a_token(project_folder: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "elastic", "worker", "--port", str(free_port()),
         "--status-host", "0.0.0.0"], cwd=project_folder, capture_output=True, text=True,
        timeout=60)
    assert result.returncode == 2 and "status-host" in result.stderr


def test_a_status_port_beyond_loopback_answers_health_and_guards_the_rest_with_the_token(
        start_server: Callable[..., ServerProcess],
        start_worker: Callable[..., subprocess.Popen[bytes]]) -> None:
    server = start_server(env={"ELASTIC_TOKEN": TOKEN})
    port = free_port()
    start_worker(server.url, worker_id="wide", env={"ELASTIC_TOKEN": TOKEN},
                 extra=["--port", str(port), "--status-host", "0.0.0.0"])

    def health() -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok
        except requests.RequestException:
            return False

    wait_until(health, timeout=60, message="the worker's status port")
    assert requests.get(f"http://127.0.0.1:{port}/status", timeout=5).status_code == 401
    answer = requests.get(f"http://127.0.0.1:{port}/status", timeout=5,
                          headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.json()["worker_id"] == "wide"
