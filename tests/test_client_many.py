"""Populations through one client: many tasks, few server threads.

The orchestrator runs in this process (``Orchestrator.start_in_thread``) behind a
WSGI middleware that counts the requests in flight, so a test can assert how many
server threads the client held at once; the evolution worker is a real process.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import free_port, wait_until

from elastic import config
from elastic.client import AsyncClient, Client, EvolutionResult, TaskTimeout
from elastic.server.serve import Orchestrator
from elastic.transport import WAIT_PATH

GENOME = {"param1": 0.7, "param2": 120}
SHARED_MEMORY = Path("/dev/shm")
WORKER_SLOTS = 4


@dataclass
class InFlight:
    """WSGI middleware: how many requests (all, and waits) the server handles at once, at most."""

    app: Callable[..., Iterable[bytes]]
    now: Counter[str] = field(default_factory=Counter)
    peak: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        kinds = ["all", "wait"] if environ["PATH_INFO"] == WAIT_PATH else ["all"]
        with self.lock:
            self.calls.update(kinds)
            self.now.update(kinds)
            for kind in kinds:
                self.peak[kind] = max(self.peak[kind], self.now[kind])
        try:
            return self.app(environ, start_response)
        finally:
            with self.lock:
                self.now.subtract(kinds)


@dataclass
class CountedServer:
    """An in-process orchestrator's URL and its in-flight counter."""

    url: str
    in_flight: InFlight


@pytest.fixture
def memory_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder in memory (tmpfs) when the machine has one, for a database that does not
    wait on the disk; else ``tmp_path``."""
    if not SHARED_MEMORY.is_dir():
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir=SHARED_MEMORY) as folder:
        yield Path(folder)


@pytest.fixture
def counted_server(project_folder: Path, memory_folder: Path,
                   start_worker: Callable[..., Any]) -> Iterator[CountedServer]:
    """An orchestrator in this process, counted, with one evolution worker of 4 slots."""
    settings = config.load(project_folder / "elastic.toml", {
        "port": free_port(), "database_url": f"sqlite:///{memory_folder}/elastic.db"})
    orchestrator = Orchestrator(settings, watch_folder=False, write_results=False)
    counter = InFlight(orchestrator.server.application)
    orchestrator.server.application = counter
    orchestrator.start_in_thread()
    worker = start_worker(orchestrator.url, worker_type="evolution", capacity=WORKER_SLOTS)
    wait_until(lambda: requests.get(f"{orchestrator.url}/health", timeout=2).json()["workers_online"],
               message="the evolution worker to register")
    yield CountedServer(orchestrator.url, counter)
    worker.terminate()
    worker.wait(timeout=15)
    orchestrator.stop()


def mutations(count: int) -> list[dict[str, Any]]:
    """``count`` mutation tasks' data, each with its own seed."""
    return [{"genome": GENOME, "mutation_rate": 0.5, "seed": seed} for seed in range(count)]


@pytest.mark.stress
def test_1000_tasks_through_map_hold_one_wait_thread(counted_server):
    with Client(counted_server.url, local_fallback=False) as client:
        results = list(client.map("evolution_mutation", mutations(1000), timeout=120))
    assert len({result.task_id for result in results}) == 1000
    assert all(isinstance(r, EvolutionResult) and r.ran == "orchestrator" for r in results)
    assert all(set(result.genome) == set(GENOME) for result in results)
    assert counted_server.in_flight.peak["wait"] == 1
    # the worker's slots and heartbeat, the client's one wait and its submit
    assert counted_server.in_flight.peak["all"] <= WORKER_SLOTS + 3


def test_200_concurrent_async_waits_share_two_long_polls(counted_server):
    async def wait_for_all() -> list[Any]:
        async with AsyncClient(counted_server.url, local_fallback=False) as client:
            task_ids = await client.submit_many(
                {"type": "evolution_mutation", "data": data} for data in mutations(200))
            results = await asyncio.gather(*(client.wait(task_id, timeout=60)
                                             for task_id in task_ids))
            assert [result.task_id for result in results] == task_ids
            mapped = [result async for result in client.map(
                "evolution_crossover", [{"genome1": GENOME, "genome2": GENOME}] * 50,
                ordered=True)]
            return [*results, *mapped]

    results = asyncio.run(wait_for_all())
    assert len(results) == 250
    assert all(result.success for result in results)
    assert counted_server.in_flight.peak["wait"] <= 2


def test_a_wait_turned_away_by_a_full_server_asks_again_after_retry_after(
        start_orchestrator: Callable[..., Any]) -> None:
    orchestrator = start_orchestrator(server_threads=6, max_long_polls=2,
                                      worker_timeout_seconds=60)
    counter = InFlight(orchestrator.server.application)
    orchestrator.server.application = counter
    orchestrator.store.register_worker("idle", worker_type="evolution", capabilities={})
    with Client(orchestrator.url, local_fallback=False) as client:
        (task_id,) = client.submit_many([{"type": "evolution_mutation", "data": mutations(1)[0]}])
    status_url = f"{orchestrator.url}/api/tasks/status/{task_id}"

    def hold_a_waiting_place() -> None:
        """Long-poll for 6 s; asked again when turned away, so it ends up holding a place."""
        deadline = time.monotonic() + 20
        while "retry_after" in requests.get(f"{status_url}?wait=6", timeout=30).json():
            assert time.monotonic() < deadline
            time.sleep(0.05)

    holders = [threading.Thread(target=hold_a_waiting_place) for _ in range(2)]
    for holder in holders:
        holder.start()
    wait_until(lambda: "retry_after" in requests.get(f"{status_url}?wait=0.1", timeout=10).json(),
               message="both waiting places taken")
    counter.calls.clear()
    with Client(orchestrator.url, local_fallback=False) as client, \
            pytest.raises(TaskTimeout):
        client.wait(task_id, timeout=3)
    # Turned away each time with retry_after = 1 s: a handful of asks, not a tight loop.
    assert 2 <= counter.calls["wait"] <= 5
    for holder in holders:
        holder.join()
