"""Stable worker ids (``<type>-<host>-<slot>``) and ``elastic workers prune``.

A worker started without ``--id`` takes the lowest slot no running worker of its type
holds on this host; restarted, it registers under the same id and replaces its row.
Pruning deletes only offline or dead rows, silent long enough, holding no lease.
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
from conftest import ServerProcess, wait_until

from elastic.tasks import NewTask, WorkerStatus

HOST = socket.gethostname()


@pytest.fixture
def spawn_worker(project_folder: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Factory: ``elastic worker`` without ``--id``, as a user starts one; stopped at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def spawn(server_url: str, *extra: str) -> subprocess.Popen[bytes]:
        with (project_folder / f"worker-{len(started)}.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "elastic", "worker", "--server", server_url,
                 "--type", "simulation", *extra], cwd=project_folder, stdout=log,
                stderr=subprocess.STDOUT, env=dict(os.environ))
        started.append(process)
        return process

    yield spawn
    for process in started:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=20)


def live_worker_ids(server: ServerProcess) -> list[str]:
    workers = requests.get(f"{server.url}/api/workers/list", timeout=5).json()["workers"]
    return sorted(w["worker_id"] for w in workers if w["status"] in ("online", "busy"))


def all_worker_ids(server: ServerProcess) -> list[str]:
    workers = requests.get(f"{server.url}/api/workers/list", timeout=5).json()["workers"]
    return sorted(w["worker_id"] for w in workers)


def test_a_restarted_worker_without_id_replaces_its_row(
        start_server: Callable[..., ServerProcess],
        spawn_worker: Callable[..., subprocess.Popen[bytes]]) -> None:
    server = start_server()
    first = spawn_worker(server.url)
    expected = [f"simulation-{HOST}-0"]
    wait_until(lambda: live_worker_ids(server) == expected, timeout=30,
               message="the worker to register under slot 0")
    first.send_signal(signal.SIGKILL)  # not even an unregister: the row is left "online"
    first.wait(timeout=10)
    spawn_worker(server.url)
    wait_until(lambda: live_worker_ids(server) == expected, timeout=30,
               message="the restarted worker to register under the same id")
    assert all_worker_ids(server) == expected


def test_two_workers_without_id_on_one_host_take_slots_0_and_1(
        start_server: Callable[..., ServerProcess],
        spawn_worker: Callable[..., subprocess.Popen[bytes]]) -> None:
    server = start_server()
    spawn_worker(server.url)
    wait_until(lambda: live_worker_ids(server), timeout=30, message="the first worker")
    spawn_worker(server.url)
    wait_until(lambda: live_worker_ids(server) == [f"simulation-{HOST}-0",
                                                   f"simulation-{HOST}-1"],
               timeout=30, message="the second worker to take slot 1")


def test_a_slot_held_by_a_running_worker_is_refused_naming_it(
        start_server: Callable[..., ServerProcess],
        spawn_worker: Callable[..., subprocess.Popen[bytes]], project_folder: Path) -> None:
    server = start_server()
    holder = spawn_worker(server.url, "--slot", "3")
    wait_until(lambda: live_worker_ids(server) == [f"simulation-{HOST}-3"], timeout=30,
               message="the worker in slot 3")
    second = subprocess.run(
        [sys.executable, "-m", "elastic", "worker", "--server", server.url, "--slot", "3"],
        cwd=project_folder, capture_output=True, text=True, timeout=60)
    assert second.returncode == 2
    assert "slot 3" in second.stderr and f"pid {holder.pid}" in second.stderr


# -- pruning -------------------------------------------------------------------------------

def test_prune_deletes_only_long_silent_offline_or_dead_workers_holding_no_lease(
        store: Any) -> None:
    for worker_id in ("old-offline", "old-dead", "old-holding", "recent-offline", "live"):
        store.register_worker(worker_id, worker_type="simulation", capabilities={}, now=1000.0)
    store.unregister_worker("old-offline", now=1000.0)
    store.submit_tasks([NewTask(task_id="t1", type="simulation", data={})], now=1000.0)
    assert store.lease_tasks("old-holding", now=1000.0)
    store.expire_leases(now=1100.0)  # old-dead and old-holding declared dead, t1 requeued...
    store.lease_tasks("live", now=1100.0)  # ...and leased again by live
    store.unregister_worker("recent-offline", now=5000.0)
    pruned = store.prune_workers(older_than_seconds=3600.0, now=5100.0)
    assert pruned == ["old-dead", "old-holding", "old-offline"]
    statuses = {w.worker_id: w.status for w in store.list_workers()}
    assert statuses == {"live": WorkerStatus.BUSY, "recent-offline": WorkerStatus.OFFLINE}


def test_workers_prune_command_prints_the_pruned_ids(
        start_server: Callable[..., ServerProcess], project_folder: Path) -> None:
    server = start_server()
    requests.post(f"{server.url}/api/workers/register", timeout=5,
                  json={"worker_id": "gone", "worker_type": "simulation"}).raise_for_status()
    requests.post(f"{server.url}/api/workers/gone/unregister", timeout=5).raise_for_status()
    result = subprocess.run(
        [sys.executable, "-m", "elastic", "workers", "prune", "--older-than", "0",
         "--server", server.url], cwd=project_folder, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["gone"]
    assert "pruned 1 worker(s)" in result.stderr
    assert all_worker_ids(server) == []


def test_prune_without_older_than_seconds_is_a_400_naming_the_field(
        start_server: Callable[..., ServerProcess]) -> None:
    server = start_server()
    answer = requests.post(f"{server.url}/api/workers/prune", json={"older_than_seconds": -1},
                           timeout=5)
    assert answer.status_code == 400 and "older_than_seconds" in answer.json()["error"]
