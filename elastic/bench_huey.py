"""``elastic bench --compare huey``: Huey's SQLite queue moving the same no-op tasks.

The queue is filled first (``noop`` enqueued ``count`` times), then Huey's consumer
runs with two worker processes until every result is stored. Its consumer imports
this module to find ``huey`` (the database named by ``ELASTIC_BENCH_HUEY_DB``).
End to end counts from the first result to the last, so the consumer's start-up is
not held against Huey.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from elastic.errors import ElasticError

HUEY_DB_VARIABLE = "ELASTIC_BENCH_HUEY_DB"
RUN_SECONDS = 600.0

try:
    from huey import SqliteHuey
except ImportError:  # the comparison says how to get it (see ``run_huey``)
    SqliteHuey = None

huey = None if SqliteHuey is None else SqliteHuey(
    "elastic-bench", filename=os.environ.get(HUEY_DB_VARIABLE, "huey-bench.db"))

if huey is not None:
    @huey.task()
    def noop() -> int:
        """Do nothing (a result of 1 is stored, so that the end can be counted)."""
        return 1


def run_huey(count: int, folder: Path, *, workers: int = 2) -> tuple[float, float]:
    """(enqueue, end to end) tasks/s for ``count`` no-op tasks through Huey's consumer.

    Raises:
        ElasticError: huey is not installed, or the consumer did not finish.
    """
    if huey is None:
        raise ElasticError("--compare huey needs huey: pip install 'elastic-orchestrator[test]'")
    path = folder / "huey.db"
    os.environ[HUEY_DB_VARIABLE] = str(path)
    queue = SqliteHuey("elastic-bench", filename=str(path))
    task = queue.task()(noop.func)
    started = time.time()
    for _ in range(count):
        task()
    enqueued = time.time()
    with (folder / "huey.log").open("ab") as log:
        consumer = subprocess.Popen(
            [sys.executable, "-m", "huey.bin.huey_consumer", "elastic.bench_huey.huey",
             "-w", str(workers), "-k", "process", "-d", "0.01", "-m", "0.05"],
            cwd=folder, stdout=log, stderr=subprocess.STDOUT)
    try:
        first, last = _wait_for_results(queue, count)
    finally:
        consumer.terminate()
        consumer.wait(timeout=30)
    return count / (enqueued - started), count / max(last - first, 1e-9)


def _wait_for_results(queue: object, count: int) -> tuple[float, float]:
    """When the first result appeared and when the last one did."""
    first = None
    deadline = time.monotonic() + RUN_SECONDS
    while time.monotonic() < deadline:
        stored = queue.result_count()  # type: ignore[attr-defined]
        now = time.time()
        if stored and first is None:
            first = now
        if stored >= count and first is not None:
            return first, now
        time.sleep(0.02)
    raise ElasticError("huey's consumer did not finish in time")
