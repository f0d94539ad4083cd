"""File names carry the local time (the seed's shell globs use ``$(date +%Y%m%d)``); the data, UTC.

The tests run in UTC (conftest); these switch the process to UTC+9, where 14:30 UTC is
23:30, the same day, and 20:00 UTC is 05:00 the next day.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from elastic.batchgen import build_batch, write_batch
from elastic.ingest import ingest_folder
from elastic.results import write_results_file
from elastic.store import Store
from elastic.tasks import NewTask

EVENING_UTC = 1_720_468_800.0  # 2024-07-08T20:00:00Z: 2024-07-09 05:00:00 at UTC+9


@pytest.fixture
def tokyo_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time is UTC+9 (no summer time) while the test runs."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_processed_file_is_stamped_with_the_local_time(
        store: Store, tmp_path: Path, tokyo_time: None) -> None:
    queues = tmp_path / "task_queues"
    queues.mkdir()
    (queues / "lote.json").write_text(json.dumps({"tasks": [{
        "task_id": "t1", "algorithm": "python",
        "parameters": {"num_particles": 16, "num_steps": 1, "seed": 1}}]}))
    os.utime(queues / "lote.json", (EVENING_UTC - 60, EVENING_UTC - 60))
    ingest_folder(store, queues, now=EVENING_UTC)
    assert [path.name for path in (queues / "processed").iterdir()] == [
        "20240709_050000_lote.json"]


def test_a_results_file_is_stamped_with_the_local_time_and_holds_utc(
        store: Store, tmp_path: Path, tokyo_time: None) -> None:
    store.submit_tasks([NewTask(task_id="t1", type="evolution_mutation",
                                data={"genome": {"a": 1.0}, "mutation_rate": 0.1})])
    store.register_worker("w", worker_type="evolution", capabilities={})
    [lease] = store.lease_tasks("w")
    store.record_result("t1", worker_id="w", lease_token=lease.lease_token,
                        result={"success": True})
    path = write_results_file(store, tmp_path / "results", now=EVENING_UTC)
    assert path is not None and path.name == "task_results_20240709_050000.json"
    assert json.loads(path.read_text())["timestamp"] == "2024-07-08T20:00:00.000+00:00"


def test_a_new_batch_is_named_with_the_local_time(tmp_path: Path, tokyo_time: None) -> None:
    document = build_batch(algorithm="python", num_particles=30, num_steps=5,
                           now=EVENING_UTC)
    path = write_batch(document, tmp_path, now=EVENING_UTC)
    assert path.name == "lote_20240709_050000.json"
    assert document["tasks"][0]["task_id"].startswith("sim_20240709_050000_")
    assert document["metadata"]["creation_date"] == "2024-07-08T20:00:00+00:00"
