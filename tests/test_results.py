"""results/: the seed-004 results files, orchestrator_stats.json and exports.

Every test runs on SQLite and PostgreSQL (the ``store`` fixture); tasks are ended
through the store with a hand-driven clock.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from elastic.atomic import atomic_write_json, write_new_json
from elastic.results import (
    export_results,
    recover_interrupted_exports,
    write_results_file,
    write_stats_file,
)
from elastic.store import Store
from elastic.tasks import Lease, NewTask, TaskStatus

NOW = 1_720_449_000.0  # 2024-07-08T14:30:00Z
SEED_STATS_KEYS = {"total_tasks", "completed_tasks", "failed_tasks", "pending_tasks",
                   "active_workers", "total_execution_time"}
SEED_ENTRY_KEYS = {"task_id", "algorithm", "parameters", "execution_time", "result",
                   "worker_id", "completed_at", "priority"}


@pytest.fixture(autouse=True)
def simulation_worker(store: Store) -> None:
    """A simulation worker ``w`` for every algorithm in conftest's store (each database)."""
    store.register_worker("w", worker_type="simulation",
                          capabilities={"algorithms": ["python", "numpy", "cython"]},
                          capacity=100)


def queue(store: Store, *task_ids: str, priority: int = 8) -> None:
    """Queue small simulations with these ids."""
    store.submit_tasks([NewTask(task_id=task_id, type="simulation", priority=priority,
                                data={"algorithm": "python",
                                      "parameters": {"num_particles": 100, "num_steps": 500,
                                                     "seed": 123}})
                        for task_id in task_ids])


def finish(store: Store, *, now: float, failing: tuple[str, ...] = ()) -> list[str]:
    """Lease every pending task and report a result for each (``failing`` ones fail for good)."""
    leases = store.lease_tasks("w", limit=100, now=now - 45.8)
    for lease in leases:
        task_id = lease.task.task_id
        if task_id in failing:
            fail_for_good(store, lease, now=now)
            continue
        result: dict[str, Any] = {
            "success": True, "status": "completed", "output": "Simulación completada exitosamente",
            "metrics": {"particles_processed": 100, "steps_completed": 500,
                        "memory_peak": "67.2 MB"}}
        store.record_result(task_id, worker_id="w", lease_token=lease.lease_token,
                            result=result, now=now)
    return [lease.task.task_id for lease in leases]


def fail_for_good(store: Store, lease: Lease, *, now: float) -> None:
    """Report failed attempts of the leased task until its retries are used up."""
    while store.record_result(lease.task.task_id, worker_id="w", lease_token=lease.lease_token,
                              result={"success": False, "error": "exploded"},
                              now=now).status is TaskStatus.PENDING:
        (lease,) = store.lease_tasks("w", limit=1, now=now)


def read(path: Path) -> dict[str, Any]:
    """A JSON file's content."""
    return json.loads(path.read_text(encoding="utf-8"))


def test_nothing_ended_writes_no_file(store: Store, tmp_path: Path) -> None:
    queue(store, "sim_001")
    assert write_results_file(store, tmp_path / "results", now=NOW) is None
    assert not (tmp_path / "results").exists()


def test_the_results_file_has_the_seed_format(store: Store, tmp_path: Path) -> None:
    queue(store, "sim_001", "sim_002")
    finish(store, now=NOW, failing=("sim_002",))
    queue(store, "sim_003", priority=2)
    path = write_results_file(store, tmp_path / "results", now=NOW)
    assert path is not None and path.name == "task_results_20240708_143000.json"
    document = read(path)
    # The seed's three keys, and the batch that makes a crashed writer's file recognisable.
    assert set(document) == {"timestamp", "orchestrator_stats", "task_results", "export_batch"}
    assert document["timestamp"].startswith("2024-07-08T14:30:00")
    assert datetime.fromisoformat(document["timestamp"]).timestamp() == NOW
    stats = document["orchestrator_stats"]
    assert set(stats) >= SEED_STATS_KEYS
    assert all(isinstance(stats[key], int | float) for key in SEED_STATS_KEYS)
    assert (stats["total_tasks"], stats["completed_tasks"], stats["failed_tasks"],
            stats["pending_tasks"], stats["active_workers"]) == (3, 1, 1, 1, 1)
    assert stats["total_execution_time"] == pytest.approx(45.8)
    entries = {entry["task_id"]: entry for entry in document["task_results"]}
    assert set(entries) == {"sim_001", "sim_002"}
    assert all(set(entry) >= SEED_ENTRY_KEYS for entry in entries.values())
    completed = entries["sim_001"]
    assert (completed["algorithm"], completed["priority"], completed["worker_id"]) == (
        "python", "high", "w")
    assert completed["parameters"] == {"num_particles": 100, "num_steps": 500, "seed": 123}
    assert completed["execution_time"] == pytest.approx(45.8)
    assert completed["result"]["status"] == "completed"
    assert completed["result"]["metrics"]["memory_peak"] == "67.2 MB"
    assert completed["completed_at"].startswith("2024-07-08T14:30:00")
    failed = entries["sim_002"]
    assert (failed["status"], failed["error"], failed["result"]["status"]) == (
        "failed", "exploded", "failed")


def test_each_file_holds_only_the_tasks_ended_since_the_last_one(
        store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "results"
    queue(store, "a", "b")
    finish(store, now=NOW)
    first = write_results_file(store, folder, now=NOW)
    assert write_results_file(store, folder, now=NOW + 1) is None
    queue(store, "c")
    finish(store, now=NOW + 60)
    second = write_results_file(store, folder, now=NOW + 60)
    assert first is not None and second is not None
    assert sorted(e["task_id"] for e in read(first)["task_results"]) == ["a", "b"]
    assert [e["task_id"] for e in read(second)["task_results"]] == ["c"]
    assert second.name == "task_results_20240708_143100.json"


def test_a_file_of_the_same_second_is_not_overwritten(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "results"
    queue(store, "a")
    finish(store, now=NOW)
    first = write_results_file(store, folder, now=NOW)
    queue(store, "b")
    finish(store, now=NOW)
    second = write_results_file(store, folder, now=NOW)
    assert first is not None and second is not None
    assert second.name == "task_results_20240708_143000_2.json"
    assert [e["task_id"] for e in read(first)["task_results"]] == ["a"]


def test_writes_leave_no_temporary_files(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "results"
    queue(store, "a")
    finish(store, now=NOW)
    write_results_file(store, folder, now=NOW)
    write_stats_file(store, folder, now=NOW)
    write_stats_file(store, folder, now=NOW + 1)
    assert sorted(p.name for p in folder.iterdir()) == [
        "orchestrator_stats.json", "task_results_20240708_143000.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    path = atomic_write_json(folder / "stats.json", {"version": 1})
    with pytest.raises(ValueError):
        atomic_write_json(path, {"version": float("nan")})
    assert read(path) == {"version": 1}
    assert [p.name for p in folder.iterdir()] == ["stats.json"]


def test_non_finite_numbers_in_a_result_are_stored_and_written_as_null(
        store: Store, tmp_path: Path) -> None:
    queue(store, "diverged")
    (lease,) = store.lease_tasks("w", limit=1, now=NOW - 1)
    store.record_result("diverged", worker_id="w", lease_token=lease.lease_token,
                        result={"success": True, "total_energy": float("inf")}, now=NOW)
    path = write_results_file(store, tmp_path, now=NOW)
    assert path is not None
    assert read(path)["task_results"][0]["result"]["total_energy"] is None
    assert store.get_task("diverged").result == {"success": True, "total_energy": None}


def test_the_stats_file_counts_tasks_and_workers_by_status(store: Store, tmp_path: Path) -> None:
    queue(store, "a", "b", "c")
    finish(store, now=NOW, failing=("b",))
    queue(store, "d")
    store.register_worker("gone", worker_type="simulation", capabilities={})
    store.unregister_worker("gone")
    stats = read(write_stats_file(store, tmp_path, now=NOW))
    assert set(stats) >= {"timestamp", "orchestrator_stats", "tasks_summary", "workers_summary"}
    assert set(stats["orchestrator_stats"]) >= SEED_STATS_KEYS
    assert stats["tasks_summary"] == {"total": 4, "pending": 1, "redistributed": 0,
                                      "assigned": 0, "held": 0, "completed": 2, "failed": 1,
                                      "cancelled": 0}
    workers = stats["workers_summary"]
    assert (workers["total"], workers["active"], workers["inactive"]) == (2, 1, 1)
    assert workers["by_status"] == {"online": 1, "busy": 0, "dead": 0, "offline": 1}


def test_a_task_back_in_the_queue_counts_as_redistributed(store: Store, tmp_path: Path) -> None:
    queue(store, "retry")
    (lease,) = store.lease_tasks("w", limit=1, now=NOW)
    store.record_result("retry", worker_id="w", lease_token=lease.lease_token,
                        result={"success": False, "error": "flaky"}, now=NOW)
    summary = read(write_stats_file(store, tmp_path, now=NOW))["tasks_summary"]
    assert (summary["pending"], summary["redistributed"]) == (0, 1)


def test_json_export_selects_by_end_time_and_marks_nothing(store: Store, tmp_path: Path) -> None:
    queue(store, "early")
    finish(store, now=NOW)
    queue(store, "late")
    finish(store, now=NOW + 100)
    out = io.StringIO()
    assert export_results(store, since=NOW + 100, fmt="json", out=out) == 1
    document = json.loads(out.getvalue())
    assert [e["task_id"] for e in document["task_results"]] == ["late"]
    everything = io.StringIO()
    assert export_results(store, since=None, fmt="json", out=everything) == 2
    assert len(store.claim_tasks_to_export("b1")) == 2


def test_csv_export_has_one_row_per_task_with_json_columns(store: Store) -> None:
    queue(store, "a", "b")
    finish(store, now=NOW, failing=("b",))
    out = io.StringIO()
    assert export_results(store, since=None, fmt="csv", out=out) == 2
    assert out.getvalue().splitlines()[0].startswith("task_id,type,status,algorithm,priority")
    rows = {row["task_id"]: row for row in csv.DictReader(io.StringIO(out.getvalue()))}
    assert set(rows) == {"a", "b"}
    assert (rows["a"]["status"], rows["a"]["priority"], rows["a"]["algorithm"]) == (
        "completed", "high", "python")
    assert json.loads(rows["a"]["parameters"])["num_steps"] == 500
    assert json.loads(rows["a"]["result"])["metrics"]["steps_completed"] == 500
    assert (rows["b"]["status"], rows["b"]["error"]) == ("failed", "exploded")
    assert re.fullmatch(r"\d+\.\d+", rows["a"]["execution_time"])


def test_csv_export_since_leaves_out_tasks_ended_before(store: Store) -> None:
    queue(store, "early")
    finish(store, now=NOW)
    queue(store, "late")
    finish(store, now=NOW + 100)
    out = io.StringIO()
    assert export_results(store, since=NOW + 50, fmt="csv", out=out) == 1
    assert [row["task_id"] for row in csv.DictReader(io.StringIO(out.getvalue()))] == ["late"]
    empty = io.StringIO()
    assert export_results(store, since=NOW + 101, fmt="csv", out=empty) == 0
    assert empty.getvalue().count("\n") == 1


def test_a_held_task_is_written_as_held_and_again_once_released_and_ended(
        store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "results"
    queue(store, "stuck")
    (lease,) = store.lease_tasks("w", limit=1, now=NOW)
    store.record_result("stuck", worker_id="w", lease_token=lease.lease_token, now=NOW,
                        result={"success": False, "retryable": False, "reason": "invalid_input",
                                "error": "parameters.num_steps: too many"})
    held = read(write_results_file(store, folder, now=NOW))
    (entry,) = held["task_results"]
    assert (entry["status"], entry["held_reason"]) == ("held", "invalid_input")
    assert held["orchestrator_stats"]["held_tasks"] == 1
    store.release_hold("stuck", now=NOW + 60)
    finish(store, now=NOW + 120)
    again = read(write_results_file(store, folder, now=NOW + 120))
    assert [(e["task_id"], e["status"]) for e in again["task_results"]] == [("stuck", "completed")]


def test_a_writer_that_died_after_its_file_leaves_its_tasks_in_that_file_only(
        store: Store, tmp_path: Path) -> None:
    queue(store, "a", "b")
    finish(store, now=NOW)
    claimed = store.claim_tasks_to_export("dead-writer")
    folder = tmp_path / "results"
    write_new_json(folder, "task_results_crash", {
        "task_results": [{"task_id": task.task_id} for task in claimed],
        "export_batch": "dead-writer"})  # ... and died before marking them exported
    assert recover_interrupted_exports(store, folder, every_claim=True) == 1
    assert write_results_file(store, folder) is None
    assert recover_interrupted_exports(store, folder, every_claim=True) == 0


def test_a_writer_that_died_before_its_file_hands_its_tasks_to_the_next_file(
        store: Store, tmp_path: Path) -> None:
    queue(store, "a", "b")
    finish(store, now=NOW)
    store.claim_tasks_to_export("dead-writer")  # ... and died before writing its file
    folder = tmp_path / "results"
    assert write_results_file(store, folder) is None  # still claimed: maybe a live replica
    assert recover_interrupted_exports(store, folder) == 0  # its claim has not run out
    assert recover_interrupted_exports(store, folder, every_claim=True) == 1
    path = write_results_file(store, folder)
    assert path is not None
    assert sorted(e["task_id"] for e in read(path)["task_results"]) == ["a", "b"]
