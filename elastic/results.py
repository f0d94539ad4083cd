"""results/: the seed-004 results files, orchestrator_stats.json, and exports.

Every file is written atomically (``elastic.atomic``), so a reader never sees half
of one. A results file holds the tasks that ended since the previous one; they are
marked exported only after the file is safely on disk, so a crash in between
writes them again in the next file rather than losing them.
"""

from __future__ import annotations

import csv
import json
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TextIO

from elastic.atomic import atomic_write_json, unused_path
from elastic.store import Store
from elastic.tasks import Task, Worker, WorkerStatus, finite_json, iso, priority_word

STATS_FILE = "orchestrator_stats.json"
RESULTS_PREFIX = "task_results_"
CSV_FIELDS = ("task_id", "type", "status", "algorithm", "priority", "priority_value",
              "worker_id", "attempts", "execution_time", "created_at", "completed_at",
              "description", "source", "error", "parameters", "result")


def stats_summary(store: Store) -> dict[str, Any]:
    """The seed-004 statistics: ``orchestrator_stats``, ``tasks_summary``, ``workers_summary``.

    ``tasks_summary`` speaks the seed-004 words: ``pending`` counts only tasks never
    tried, ``redistributed`` those back in the queue after a failed attempt.
    """
    counts = store.count_tasks()
    workers = store.list_workers()
    active = sum(worker.is_live for worker in workers)
    return {
        "orchestrator_stats": {
            "total_tasks": counts["total"], "completed_tasks": counts["completed"],
            "failed_tasks": counts["failed"], "pending_tasks": counts["pending"],
            "running_tasks": counts["assigned"], "cancelled_tasks": counts["cancelled"],
            "active_workers": active,
            "total_execution_time": round(store.total_execution_seconds(), 3),
        },
        "tasks_summary": {
            "total": counts["total"], "pending": counts["pending"] - counts["redistributed"],
            "redistributed": counts["redistributed"], "assigned": counts["assigned"],
            "completed": counts["completed"], "failed": counts["failed"],
            "cancelled": counts["cancelled"],
        },
        "workers_summary": {
            "total": len(workers), "active": active, "inactive": len(workers) - active,
            "by_status": _workers_by_status(workers),
        },
    }


def _workers_by_status(workers: list[Worker]) -> dict[str, int]:
    counted = Counter(worker.status.value for worker in workers)
    return {status.value: counted[status.value] for status in WorkerStatus}


def task_result_entry(task: Task) -> dict[str, Any]:
    """One entry of ``task_results`` in the seed's format (plus a few useful extras).

    ``parameters`` is a simulation's parameters, or the whole ``data`` of other task
    types; ``result`` is what the worker reported, with the task's ``status`` (and
    ``error``) filled in when the worker did not say.
    """
    result = dict(task.result or {})
    result.setdefault("status", task.status.value)
    if task.error:
        result.setdefault("error", task.error)
    is_simulation = task.type == "simulation"
    return finite_json({
        "task_id": task.task_id, "type": task.type, "status": task.status.value,
        "algorithm": task.data.get("algorithm") if is_simulation else None,
        "parameters": task.data.get("parameters") if is_simulation else task.data,
        "execution_time": _rounded(task.execution_time_s), "result": result,
        "worker_id": task.worker_id, "completed_at": iso(task.finished_at),
        "priority": priority_word(task.priority), "priority_value": task.priority,
        "description": task.description, "source": task.source, "attempts": task.attempts,
        "created_at": iso(task.created_at), "error": task.error,
    })


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)


def results_document(store: Store, tasks: list[Task], *, now: float) -> dict[str, Any]:
    """The seed-004 results document for ``tasks``: timestamp, stats, task_results."""
    return {
        "timestamp": iso(now),
        "orchestrator_stats": stats_summary(store)["orchestrator_stats"],
        "task_results": [task_result_entry(task) for task in tasks],
    }


def write_results_file(store: Store, folder: Path, *, now: float | None = None) -> Path | None:
    """Write ``task_results_YYYYMMDD_HHMMSS.json`` (UTC) for the tasks ended since the last one.

    A file of the same second is never overwritten (``_2``, ``_3``... is added).
    The tasks are marked exported after the file is on disk.

    Returns:
        The file written, or None when no task ended since the last one.
    """
    ended = store.unexported_finished_tasks()
    if not ended:
        return None
    now = time.time() if now is None else now
    path = unused_path(folder, f"{RESULTS_PREFIX}{_stamp(now)}")
    atomic_write_json(path, results_document(store, ended, now=now))
    store.mark_exported([task.task_id for task in ended])
    return path


def write_stats_file(store: Store, folder: Path, *, now: float | None = None) -> Path:
    """Rewrite ``orchestrator_stats.json`` atomically with the current statistics."""
    now = time.time() if now is None else now
    return atomic_write_json(folder / STATS_FILE, {"timestamp": iso(now), **stats_summary(store)})


def export_results(store: Store, *, since: float | None, fmt: Literal["json", "csv"],
                   out: TextIO) -> int:
    """Write the tasks that ended at or after ``since`` (all ended tasks when None).

    ``json`` is the results-file document; ``csv`` has one row per task, with
    ``parameters`` and ``result`` as JSON text. Nothing is marked exported.

    Returns:
        How many tasks were written.
    """
    tasks = store.finished_tasks_since(since)
    if fmt == "csv":
        _write_csv(tasks, out)
    else:
        json.dump(results_document(store, tasks, now=time.time()), out, indent=2,
                  ensure_ascii=False, allow_nan=False)
        out.write("\n")
    return len(tasks)


def _write_csv(tasks: list[Task], out: TextIO) -> None:
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for task in tasks:
        entry = task_result_entry(task)
        entry["parameters"] = json.dumps(entry["parameters"], ensure_ascii=False)
        entry["result"] = json.dumps(entry["result"], ensure_ascii=False)
        writer.writerow(entry)


def _stamp(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).strftime("%Y%m%d_%H%M%S")
