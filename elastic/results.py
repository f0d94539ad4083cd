"""results/: the seed-004 results files, orchestrator_stats.json, and exports.

Every file is written atomically (temporary file, fsync, rename), so a reader never
sees half of one. A results file holds the tasks that ended since the previous one;
they are marked exported only after the file is safely on disk.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from elastic.store import Store
from elastic.tasks import Task, iso, priority_word

STATS_FILE = "orchestrator_stats.json"
CSV_FIELDS = ("task_id", "type", "status", "algorithm", "priority", "worker_id", "attempts",
              "execution_time", "completed_at", "error", "result")


def atomic_write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` so that readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=2, ensure_ascii=False)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def orchestrator_stats(store: Store) -> dict[str, Any]:
    """The ``orchestrator_stats`` block of the seed's results format."""
    counts = store.count_tasks()
    return {
        "total_tasks": counts["total"], "completed_tasks": counts["completed"],
        "failed_tasks": counts["failed"], "pending_tasks": counts["pending"],
        "active_workers": sum(worker.is_live for worker in store.list_workers()),
        "total_execution_time": store.total_execution_seconds(),
    }


def task_result_entry(task: Task) -> dict[str, Any]:
    """One entry of ``task_results`` in the seed's format."""
    return {
        "task_id": task.task_id, "type": task.type, "status": task.status.value,
        "algorithm": task.data.get("algorithm"), "parameters": task.data.get("parameters"),
        "execution_time": task.execution_time_s, "result": task.result,
        "worker_id": task.worker_id, "completed_at": iso(task.finished_at),
        "priority": priority_word(task.priority), "attempts": task.attempts, "error": task.error,
    }


def write_results_file(store: Store, folder: Path, *, now: float | None = None) -> Path | None:
    """Write ``task_results_YYYYMMDD_HHMMSS.json`` for tasks ended since the last one.

    Returns the file written, or None when no task ended since.
    """
    ended = store.unexported_finished_tasks()
    if not ended:
        return None
    moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    path = _unused_path(folder, f"task_results_{moment:%Y%m%d_%H%M%S}")
    atomic_write_json(path, {
        "timestamp": moment.isoformat(timespec="seconds"),
        "orchestrator_stats": orchestrator_stats(store),
        "task_results": [task_result_entry(task) for task in ended],
    })
    store.mark_exported([task.task_id for task in ended])
    return path


def _unused_path(folder: Path, stem: str) -> Path:
    path, number = folder / f"{stem}.json", 1
    while path.exists():
        number += 1
        path = folder / f"{stem}_{number}.json"
    return path


def write_stats_file(store: Store, folder: Path) -> Path:
    """Refresh ``orchestrator_stats.json`` (stats, tasks by state, workers by state)."""
    counts = store.count_tasks()
    workers: dict[str, int] = {}
    for worker in store.list_workers():
        workers[worker.status.value] = workers.get(worker.status.value, 0) + 1
    path = folder / STATS_FILE
    atomic_write_json(path, {"timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
                             "orchestrator_stats": orchestrator_stats(store),
                             "tasks_summary": counts, "workers_summary": workers})
    return path


def export_results(store: Store, *, since: float | None, fmt: str, out: TextIO) -> int:
    """Write ended tasks (ended at or after ``since``) as JSON or CSV; returns how many."""
    entries = [task_result_entry(task) for task in store.finished_tasks_since(since)]
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for entry in entries:
            writer.writerow(_flat(entry))
    else:
        json.dump({"task_results": entries}, out, indent=2, ensure_ascii=False)
        out.write("\n")
    return len(entries)


def _flat(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {key: json.dumps(value) if isinstance(value, dict | list) else value
            for key, value in entry.items()}
