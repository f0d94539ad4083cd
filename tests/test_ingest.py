"""task_queues/ ingest: whole files queued once, bad ones set aside, half-written ones wait.

Every test but the last runs on SQLite and PostgreSQL (the ``store`` fixture) and
drives time through ``now=`` and ``min_age_seconds=``; the last one is the seed's
workflow against a real ``elastic serve``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from conftest import ServerProcess, wait_until

from elastic.ingest import FolderWatcher, Signature, ingest_folder, watch_folder
from elastic.store import Store
from elastic.taskfiles import parse_task_file
from elastic.tasks import NewTask

LATER = 10.0  # seconds after a file's mtime: old enough to be taken
SEED_EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tareas_manuales_ejemplo.json"


@pytest.fixture
def queues(tmp_path: Path) -> Path:
    """An empty task_queues/ folder."""
    folder = tmp_path / "task_queues"
    folder.mkdir()
    return folder


class StopAfter(threading.Event):
    """A stop event that sets itself after ``waits`` waits, which return at once."""

    def __init__(self, waits: int) -> None:
        super().__init__()
        self.waits_left = waits

    def wait(self, timeout: float | None = None) -> bool:
        """Count one wait instead of sleeping."""
        self.waits_left -= 1
        if self.waits_left <= 0:
            self.set()
        return self.is_set()


def batch_text(count: int = 2, *, first_seed: int = 0, with_ids: bool = False) -> str:
    """A seed-004 batch of ``count`` small simulations."""
    tasks = [{"algorithm": "python", "priority": "high",
              "parameters": {"num_particles": 30, "num_steps": 5, "seed": first_seed + n}}
             for n in range(count)]
    if with_ids:
        for n, task in enumerate(tasks):
            task["task_id"] = f"given_{first_seed + n}"
    return json.dumps({"metadata": {"description": "test"}, "tasks": tasks}, indent=2)


def later(*paths: Path) -> float:
    """A moment at which every one of ``paths`` is old enough to be taken."""
    return max(path.stat().st_mtime for path in paths) + LATER


def total(store: Store) -> int:
    """How many tasks the store holds."""
    return store.count_tasks()["total"]


def listing(folder: Path) -> list[str]:
    """The file names in ``folder``, hidden ones included."""
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def stamp(now: float) -> str:
    """The seed's ``YYYYMMDD_HHMMSS`` prefix for ``now`` (UTC)."""
    return datetime.fromtimestamp(now, UTC).strftime("%Y%m%d_%H%M%S")


def test_a_dropped_file_is_queued_and_moved_to_processed_with_the_seed_timestamp(
        store: Store, queues: Path) -> None:
    path = queues / "lote.json"
    path.write_text(batch_text(3))
    now = later(path)
    report = ingest_folder(store, queues, now=now)
    assert [(a.name, a.created, a.duplicates) for a in report.accepted] == [("lote.json", 3, 0)]
    assert total(store) == 3
    assert listing(queues) == ["processed"]
    assert listing(queues / "processed") == [f"{stamp(now)}_lote.json"]
    assert (queues / "processed" / f"{stamp(now)}_lote.json").read_text() == batch_text(3)
    assert {task.source for task in store.list_tasks()} == {"lote.json"}


def test_the_seed_example_file_is_taken_from_the_folder_with_its_ids_and_priorities(
        store: Store, queues: Path) -> None:
    path = queues / SEED_EXAMPLE.name
    shutil.copyfile(SEED_EXAMPLE, path)
    ingest_folder(store, queues, now=later(path))
    tasks = store.list_tasks()
    assert [(t.task_id, t.priority, t.data["algorithm"]) for t in tasks] == [
        ("sim_001", 8, "python"), ("sim_002", 5, "cython")]


def test_an_invalid_file_is_rejected_with_the_reason_and_nothing_is_queued(
        store: Store, queues: Path) -> None:
    document = json.loads(batch_text(3))
    document["tasks"][2]["parameters"]["num_steps"] = "many"
    path = queues / "bad.json"
    path.write_text(json.dumps(document))
    report = ingest_folder(store, queues, now=later(path))
    assert [r.name for r in report.rejected] == ["bad.json"] and not report.accepted
    assert total(store) == 0
    assert listing(queues) == ["rejected"]
    assert listing(queues / "rejected") == ["bad.error.json", "bad.json"]
    assert (queues / "rejected" / "bad.json").read_text() == json.dumps(document)
    reason = json.loads((queues / "rejected" / "bad.error.json").read_text())
    assert set(reason) == {"file", "error", "index", "field", "problem", "rejected_at"}
    assert (reason["file"], reason["index"]) == ("bad.json", 2)
    assert reason["field"] == "tasks[2].parameters.num_steps"
    assert "integer" in reason["problem"] and "tasks[2].parameters.num_steps" in reason["error"]


def test_a_second_rejected_file_of_the_same_name_does_not_overwrite_the_first(
        store: Store, queues: Path) -> None:
    for content in ("{", "[]"):
        path = queues / "bad.json"
        path.write_text(content)
        ingest_folder(store, queues, now=later(path))
    assert listing(queues / "rejected") == ["bad.error.json", "bad.json", "bad_2.error.json",
                                            "bad_2.json"]
    assert (queues / "rejected" / "bad_2.json").read_text() == "[]"


def test_a_file_of_random_bytes_is_rejected(store: Store, queues: Path) -> None:
    path = queues / "corrupt.json"
    path.write_bytes(os.urandom(4096))
    report = ingest_folder(store, queues, now=later(path))
    assert [r.name for r in report.rejected] == ["corrupt.json"]
    assert total(store) == 0
    assert listing(queues / "rejected") == ["corrupt.error.json", "corrupt.json"]


def test_a_young_file_waits_and_is_taken_once_old_enough(store: Store, queues: Path) -> None:
    path = queues / "fresh.json"
    path.write_text(batch_text(1))
    mtime = path.stat().st_mtime
    assert ingest_folder(store, queues, now=mtime + 0.2, min_age_seconds=1.0).waiting == [
        "fresh.json"]
    assert total(store) == 0 and path.exists()
    assert ingest_folder(store, queues, now=mtime + 1.5, min_age_seconds=1.0).accepted
    assert total(store) == 1


def test_a_half_written_file_is_not_taken_until_complete_and_not_rejected_meanwhile(
        store: Store, queues: Path) -> None:
    content = batch_text(4)
    path = queues / "slow.json"
    path.write_text(content[: len(content) // 2])
    half_written_at = path.stat().st_mtime
    report = ingest_folder(store, queues, now=half_written_at + 0.3, min_age_seconds=1.0)
    assert (report.waiting, report.rejected, report.accepted) == (["slow.json"], [], [])
    with path.open("a") as file:
        file.write(content[len(content) // 2:])
    finished_at = max(path.stat().st_mtime, half_written_at + 0.5)
    os.utime(path, (finished_at, finished_at))
    report = ingest_folder(store, queues, now=finished_at + 0.3, min_age_seconds=1.0)
    assert (report.waiting, report.rejected, report.accepted) == (["slow.json"], [], [])
    assert total(store) == 0
    report = ingest_folder(store, queues, now=finished_at + 1.5, min_age_seconds=1.0)
    assert [(a.name, a.created) for a in report.accepted] == [("slow.json", 4)]
    assert total(store) == 4 and not (queues / "rejected").exists()


def test_a_watcher_waits_for_a_half_written_file_to_stop_changing(
        store: Store, queues: Path) -> None:
    content = batch_text(4)
    path = queues / "slow.json"
    path.write_text(content[: len(content) // 2])
    watcher = FolderWatcher(store, queues)
    first = watcher.scan(now=later(path))
    assert first.waiting == ["slow.json"] and not first.rejected
    with path.open("a") as file:
        file.write(content[len(content) // 2:])
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert watcher.scan(now=later(path)).waiting == ["slow.json"]
    done = watcher.scan(now=later(path))
    assert [(a.name, a.created) for a in done.accepted] == [("slow.json", 4)]
    assert total(store) == 4 and not (queues / "rejected").exists()


def test_a_file_that_stays_broken_across_two_watcher_scans_is_rejected(
        store: Store, queues: Path) -> None:
    path = queues / "broken.json"
    path.write_text('{"tasks": [')
    watcher = FolderWatcher(store, queues)
    assert not watcher.scan(now=later(path)).rejected
    assert [r.name for r in watcher.scan(now=later(path)).rejected] == ["broken.json"]


def test_a_file_whose_signature_changed_since_the_last_scan_waits(
        store: Store, queues: Path) -> None:
    path = queues / "growing.json"
    path.write_text(batch_text(1))
    seen = {"growing.json": Signature(1, 0)}
    report = ingest_folder(store, queues, now=later(path), seen=seen)
    assert report.waiting == ["growing.json"]
    assert seen["growing.json"] == Signature(path.stat().st_size, path.stat().st_mtime_ns)


def test_a_tmp_file_is_taken_only_once_renamed_to_json(store: Store, queues: Path) -> None:
    temporary = queues / "lote.json.tmp"
    temporary.write_text(batch_text(2))
    (queues / "notes.txt").write_text("not a batch")
    (queues / ".hidden.json").write_text(batch_text(1, first_seed=50))
    (queues / "folder.json").mkdir()
    report = ingest_folder(store, queues, now=later(temporary))
    assert (report.accepted, report.rejected, report.waiting) == ([], [], [])
    assert total(store) == 0
    renamed = temporary.rename(queues / "lote.json")
    report = ingest_folder(store, queues, now=later(renamed))
    assert [(a.name, a.created) for a in report.accepted] == [("lote.json", 2)]
    assert total(store) == 2
    assert listing(queues) == [".hidden.json", "folder.json", "notes.txt", "processed"]


def test_the_same_file_dropped_twice_queues_nothing_twice(store: Store, queues: Path) -> None:
    outcomes = []
    for _ in range(2):
        path = queues / "again.json"
        path.write_text(batch_text(3))
        report = ingest_folder(store, queues, now=later(path))
        outcomes += [(a.created, a.duplicates) for a in report.accepted]
    assert outcomes == [(3, 0), (0, 3)]
    assert total(store) == 3
    assert len(listing(queues / "processed")) == 2


def test_a_crash_between_queueing_and_moving_queues_nothing_twice(
        store: Store, queues: Path) -> None:
    path = queues / "crash.json"
    path.write_text(batch_text(5))
    store.submit_tasks(parse_task_file(path.read_bytes(), source=path.name))
    report = ingest_folder(store, queues, now=later(path))
    assert [(a.created, a.duplicates) for a in report.accepted] == [(0, 5)]
    assert total(store) == 5
    assert listing(queues) == ["processed"]
    assert len(listing(queues / "processed")) == 1


def test_a_burst_of_100_files_is_taken_exactly_once(store: Store, queues: Path) -> None:
    expected = 0
    for number in range(100):
        count = 1 + number % 4
        expected += count
        (queues / f"burst_{number:03d}.json").write_text(
            batch_text(count, first_seed=10 * number, with_ids=number % 2 == 0))
    now = later(*queues.iterdir())
    report = ingest_folder(store, queues, now=now)
    again = ingest_folder(store, queues, now=now)
    assert len(report.accepted) == 100 and report.tasks_created == expected
    assert (again.accepted, again.rejected, again.waiting) == ([], [], [])
    assert total(store) == expected
    assert len({task.task_id for task in store.list_tasks()}) == expected
    assert listing(queues) == ["processed"]
    assert len(listing(queues / "processed")) == 100


def test_a_missing_folder_holds_nothing_to_ingest(store: Store, tmp_path: Path) -> None:
    report = ingest_folder(store, tmp_path / "nowhere")
    assert (report.accepted, report.rejected, report.waiting) == ([], [], [])
    assert not (tmp_path / "nowhere").exists()


def test_a_file_the_store_fails_on_stays_for_the_next_scan_and_the_others_go_on(
        store: Store, queues: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    first, second = queues / "a.json", queues / "b.json"
    first.write_text(batch_text(2, with_ids=True))
    second.write_text(batch_text(3, first_seed=10, with_ids=True))
    os.utime(first, (first.stat().st_mtime - 1, first.stat().st_mtime - 1))
    submit = store.submit_tasks
    calls = []

    def fail_first_call(tasks: list[NewTask]) -> object:
        calls.append(len(tasks))
        if len(calls) == 1:
            raise OSError("database went away")
        return submit(tasks)

    monkeypatch.setattr(store, "submit_tasks", fail_first_call)
    with caplog.at_level(logging.ERROR, logger="elastic.ingest"):
        report = ingest_folder(store, queues, now=later(first, second))
    assert report.waiting == ["a.json"] and [a.name for a in report.accepted] == ["b.json"]
    assert first.exists() and not (queues / "rejected").exists()
    assert "a.json" in caplog.text
    again = ingest_folder(store, queues, now=later(first))
    assert [(a.name, a.created) for a in again.accepted] == [("a.json", 2)]
    assert total(store) == 5


def test_the_watcher_creates_its_folder(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "task_queues"
    watch_folder(store, folder, interval_seconds=0.0, stop_event=StopAfter(1))
    assert folder.is_dir()


def test_the_watcher_logs_a_failed_scan_and_goes_on(
        store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "task_queues"
    folder.write_text("a file where the folder should be: every scan fails")
    watcher = FolderWatcher(store, folder, min_age_seconds=0.0)
    with caplog.at_level(logging.ERROR, logger="elastic.ingest"):
        watcher.run(StopAfter(3), interval_seconds=0.0)
    assert len(caplog.records) == 3
    folder.unlink()
    folder.mkdir()
    (folder / "after.json").write_text(batch_text(1))
    watcher.run(StopAfter(1), interval_seconds=0.0)
    assert total(store) == 1


def test_serve_takes_the_seed_example_from_task_queues_into_the_queue(
        start_server: Callable[..., ServerProcess], project_folder: Path) -> None:
    queues = project_folder / "task_queues"
    queues.mkdir()
    server = start_server()
    shutil.copyfile(SEED_EXAMPLE, queues / "mi_lote_20240708_143000.json")

    def queued_ids() -> list[str]:
        return sorted(task["task_id"] for task in requests.get(f"{server.url}/tasks",
                                                               timeout=5).json())

    wait_until(lambda: queued_ids() == ["sim_001", "sim_002"], message="the seed's two tasks")
    wait_until(lambda: not (queues / "mi_lote_20240708_143000.json").exists(),
               message="the file to leave task_queues/")
    # Claimed by a rename first, queued, then moved: processed/ gets it a moment later.
    (moved,) = wait_until(lambda: listing(queues / "processed"),
                          message="the file in processed/")  # type: ignore[misc]
    assert re.fullmatch(r"\d{8}_\d{6}_mi_lote_20240708_143000\.json", moved)
    tasks = {task["task_id"]: task for task in requests.get(f"{server.url}/tasks", timeout=5).json()}
    assert (tasks["sim_001"]["priority"], tasks["sim_002"]["priority"]) == ("high", "medium")
    assert tasks["sim_002"]["parameters"] == {"num_particles": 200, "num_steps": 800, "seed": 456}
