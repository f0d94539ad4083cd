"""The batch paths: many tasks per poll, many results per request, and ``elastic bench``."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from elastic.store import ReportedResult, Store
from elastic.tasks import NewTask, TaskStatus
from tests.conftest import wait_until

WORKERS = 6
TASKS = 300


def noop(task_id: str, priority: int = 5) -> NewTask:
    return NewTask(task_id=task_id, type="noop", data={}, priority=priority)


def test_batch_leases_never_give_a_task_twice_under_racing_workers(store: Store) -> None:
    store.submit_tasks([noop(f"t{i}", 1 + i % 10) for i in range(TASKS)])
    for n in range(WORKERS):
        store.register_worker(f"w{n}", worker_type="noop", capabilities={}, capacity=TASKS)
    barrier = threading.Barrier(WORKERS)
    claimed: list[list[str]] = [[] for _ in range(WORKERS)]

    def race(n: int) -> None:
        barrier.wait()
        for _ in range(TASKS):
            leases = store.lease_tasks(f"w{n}", limit=7)
            if not leases:
                return
            claimed[n] += [lease.task.task_id for lease in leases]

    threads = [threading.Thread(target=race, args=(n,)) for n in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    counts = Counter(task_id for ids in claimed for task_id in ids)
    assert len(counts) == TASKS
    assert set(counts.values()) == {1}


def test_a_batch_lease_takes_no_more_than_the_free_capacity(store: Store) -> None:
    store.submit_tasks([noop(f"t{i}") for i in range(10)])
    store.register_worker("w", worker_type="noop", capabilities={}, capacity=4)
    assert len(store.lease_tasks("w", limit=100)) == 4
    assert store.lease_tasks("w", limit=100) == []


def test_batch_results_are_taken_each_on_its_own_a_stale_token_refused_alone(
        store: Store) -> None:
    store.submit_tasks([noop(f"t{i}") for i in range(3)])
    store.register_worker("w", worker_type="noop", capabilities={}, capacity=3)
    leases = {lease.task.task_id: lease.lease_token for lease in store.lease_tasks("w", limit=3)}
    answers = store.record_results([
        ReportedResult("t0", leases["t0"], {"success": True}),
        ReportedResult("t1", leases["t1"] + 1, {"success": True}),  # a stale token
        ReportedResult("nope", 1, {"success": True}),
        ReportedResult("t2", leases["t2"], {"success": True}),
    ], worker_id="w")
    assert [None if answer is None else answer.http_status for answer in answers] == [
        None, 409, 404, None]
    assert store.get_task("t0").status is TaskStatus.COMPLETED
    assert store.get_task("t1").status is TaskStatus.ASSIGNED
    assert store.get_task("t2").status is TaskStatus.COMPLETED
    assert store.get_worker("w").tasks_completed == 2


def _register(url: str, worker_id: str, capacity: int) -> dict[str, str]:
    answer = requests.post(f"{url}/api/workers/register", json={
        "worker_id": worker_id, "worker_type": "noop", "capacity": capacity, "secret": True},
        timeout=10).json()
    return {"X-Worker-Secret": answer["worker_secret"]}


def test_the_results_route_answers_each_result_and_needs_the_worker_secret(
        start_server: Callable[..., Any]) -> None:
    url = start_server().url
    headers = _register(url, "batcher", capacity=8)
    requests.post(f"{url}/api/tasks/submit", json={"tasks": [
        {"task_id": f"r{i}", "type": "noop", "data": {}} for i in range(3)]}, timeout=10)
    polled = requests.get(f"{url}/api/workers/batcher/tasks", params={"limit": 8},
                          headers=headers, timeout=10).json()
    assert sorted(task["task_id"] for task in polled["tasks"]) == ["r0", "r1", "r2"]
    items = [{"task_id": task["task_id"], "lease_token": task["lease_token"],
              "result": {"success": True}} for task in polled["tasks"]]
    items[1]["lease_token"] += 5
    refused = requests.post(f"{url}/api/workers/batcher/results", json={"results": items},
                            timeout=10)
    assert refused.status_code == 401
    answer = requests.post(f"{url}/api/workers/batcher/results", json={"results": items},
                           headers=headers, timeout=10)
    assert answer.status_code == 200
    statuses = [(item["status"], item.get("code")) for item in answer.json()["results"]]
    assert statuses == [("received", None), ("refused", 409), ("received", None)]


def test_bad_results_bodies_are_400_naming_the_field(start_server: Callable[..., Any]) -> None:
    url = start_server().url
    headers = _register(url, "batcher", capacity=1)
    bodies = [({}, "'results'"), ({"results": []}, "'results'"),
              ({"results": [5]}, "'results[0]'"),
              ({"results": [{"task_id": "a", "result": {}}, {"task_id": "b"}]},
               "'results[1].result'"),
              ({"results": [{"task_id": 3, "result": {}}]}, "'results[0].task_id'"),
              ({"results": [{"task_id": "a\u0000b", "result": {}}]}, "'results[0].task_id'"),
              ({"results": [{"task_id": "a", "result": {}, "lease_token": "x"}]},
               "'results[0].lease_token'")]
    for body, field in bodies:
        answer = requests.post(f"{url}/api/workers/batcher/results", json=body,
                               headers=headers, timeout=10)
        assert answer.status_code == 400, body
        assert field in answer.json()["error"], (body, answer.json())


def test_a_batch_worker_runs_every_task_once_reporting_results_together(
        start_server: Callable[..., Any],
        start_worker: Callable[..., subprocess.Popen[bytes]]) -> None:
    url = start_server().url
    start_worker(url, worker_type="noop", worker_id="batch-worker", capacity=16,
                 extra=["--batch", "16"])
    ids = [f"b{i}" for i in range(200)]
    requests.post(f"{url}/api/tasks/submit", json={"tasks": [
        {"task_id": task_id, "type": "noop", "data": {"echo": task_id}} for task_id in ids]},
        timeout=10)

    def all_completed() -> list[dict[str, Any]] | None:
        found = requests.get(f"{url}/api/tasks", params={"id": ids, "limit": 500},
                             timeout=10).json()["tasks"]
        return found if all(task["status"] == "completed" for task in found) else None

    found = wait_until(all_completed, timeout=90, message="every task completed")
    assert len(found) == len(ids)  # type: ignore[arg-type]
    assert {task["attempts"] for task in found} == {1}  # type: ignore[union-attr]
    status = requests.get(f"{url}/api/tasks/status/b7", timeout=10).json()
    assert status["result"] == {"success": True, "echo": "b7"}


def test_a_worker_batch_over_its_capacity_is_a_usage_error(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "elastic", "worker", "--type", "noop", "--capacity", "2",
         "--batch", "4", "--server", "http://127.0.0.1:9"], cwd=tmp_path,
        capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2
    assert "batch" in finished.stderr


@pytest.mark.timeout(300)  # two sets of worker processes start: slow on a loaded machine
def test_elastic_bench_prints_both_paths_latencies_and_server_costs(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "elastic", "bench", "--tasks", "60", "--batch", "8",
         "--latency-samples", "5"], cwd=tmp_path, capture_output=True, text=True, timeout=280)
    assert finished.returncode == 0, finished.stderr
    for words in ("one at a time", "batch 8", "submit-to-start p50", "submit-to-result p99",
                  "server CPU", "peak RSS"):
        assert words in finished.stdout
