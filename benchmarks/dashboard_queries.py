"""How long each of the dashboard's JSON answers takes with a million stored tasks.

Usage:
    python benchmarks/dashboard_queries.py                       # SQLite in a temp folder
    python benchmarks/dashboard_queries.py --db postgresql://postgres@127.0.0.1/bench --tasks 1000000

It fills an empty database through the real schema (``elastic db upgrade``'s migrations)
with ``--tasks`` rows shaped like a long-lived orchestrator's: most tasks completed and
written to results files (``exported``) over the last day, a fifth pending, a few
percent failed or cancelled, a handful held or running. Then it times, through the real
WSGI app and its routes, each request the dashboard's page makes every two seconds
(median of ``--repeats``) and one pass of the server's sample loop, and prints the plan
SQLite or PostgreSQL chose for the heaviest reads (``EXPLAIN``), so an index that
stopped being used shows. On PostgreSQL the table is vacuumed and analyzed after the
fill, as autovacuum would have done.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from wsgiref.util import setup_testing_defaults

from sqlalchemy import insert, text

from elastic import config
from elastic.server.app import make_app
from elastic.server.samples import QueueSamples
from elastic.store import open_store
from elastic.store.schema import tasks, workers

BATCH_ROWS = 20_000
PATHS = ("/api/dashboard/queue", "/api/dashboard/workers", "/api/dashboard/series",
         "/api/dashboard/failures?limit=10", "/api/tasks?limit=50",
         "/api/tasks?limit=50&status=failed", "/api/tasks?limit=50&status=pending",
         "/api/tasks?limit=50&type=evolution_mutation&before=500000",
         "/api/tasks/status/t0000500000")
# (state, share of tasks): the rest is completed.
SHARES = (("pending", 0.20), ("failed", 0.03), ("cancelled", 0.01))


def status_of(index: int, total: int) -> str:
    """Spread the states over the ids: pending are the newest, failures scattered."""
    if index >= total * (1 - SHARES[0][1]):
        return "pending"
    if index % 33 == 0:
        return "failed"
    if index % 100 == 1:
        return "cancelled"
    if index % 100_000 == 7:
        return "held"
    return "completed"


def task_rows(first: int, count: int, total: int, now: float) -> list[dict[str, object]]:
    """Rows ``first .. first+count``: ended ones over the last day, newest last."""
    rows = []
    for index in range(first, first + count):
        status = status_of(index, total)
        created = now - 86_400 * (1 - index / total)
        ended = status != "pending"
        rows.append({
            "task_id": f"t{index:010d}", "type": ("simulation", "evolution_mutation")[index % 2],
            "data": {"genome": {"a": 1.0}, "mutation_rate": 0.1}, "priority": 2 + index % 7,
            "status": status, "attempts": int(ended), "max_retries": 3, "created_at": created,
            "started_at": created + 1 if ended else None,
            "finished_at": created + 3 if ended else None, "error": "boom" if status == "failed" else None,
            "exported": int(ended and created < now - 600)})
    return rows


def fill(url: str, total: int) -> None:
    """Write ``total`` tasks and two workers running a few of the pending ones."""
    store = open_store(url)
    now = time.time()
    with store.engine.begin() as conn:
        for first in range(0, total, BATCH_ROWS):
            conn.execute(insert(tasks), task_rows(first, min(BATCH_ROWS, total - first), total, now))
        for name in ("w1", "w2"):
            conn.execute(insert(workers).values(
                worker_id=name, worker_type="evolution", capabilities={}, algorithms=[], models=[],
                task_types=["evolution_mutation"], capacity=4, status="online",
                registered_at=now, last_heartbeat_at=now, info={}))
        conn.execute(text("UPDATE tasks SET status = 'assigned', worker_id = 'w1', progress = 0.5, "
                          "started_at = :now WHERE task_id IN ('t0000999990', 't0000999992')"),
                     {"now": now})
    if store.engine.dialect.name == "postgresql":
        # What autovacuum does to a table that grew this much: statistics and a visibility
        # map (index-only scans), as a long-lived orchestrator's database has them.
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE tasks"))
    store.close()


def time_request(app: object, path: str, repeats: int) -> tuple[float, int]:
    """Median milliseconds of GET ``path`` through the WSGI app, and the answer's size."""
    route, _, query = path.partition("?")
    timings, size = [], 0
    for _ in range(repeats):
        environ: dict[str, object] = {}
        setup_testing_defaults(environ)
        environ.update(PATH_INFO=route, QUERY_STRING=query, REQUEST_METHOD="GET")
        started = time.perf_counter()
        body = b"".join(app(environ, lambda status, headers, exc_info=None: None))  # type: ignore[operator]
        timings.append(time.perf_counter() - started)
        size = len(body)
    return 1000 * statistics.median(timings), size


def show_plans(url: str) -> None:
    """EXPLAIN the reads that touch many rows."""
    store = open_store(url)
    is_sqlite = store.engine.dialect.name == "sqlite"
    explain = "EXPLAIN QUERY PLAN " if is_sqlite else "EXPLAIN "
    reads = {
        "by status and priority": "SELECT status, priority, count(*) FROM tasks GROUP BY status, priority",
        "last page of failed": "SELECT * FROM tasks WHERE status IN ('failed') ORDER BY seq DESC LIMIT 50",
        "ended in the last minute": "SELECT count(*) FROM tasks WHERE exported IN (0, 1) AND "
                                    f"finished_at > {time.time() - 60} AND finished_at <= {time.time()}",
        "oldest pending": "SELECT created_at FROM tasks WHERE seq = (SELECT min(seq) FROM tasks "
                          "WHERE status = 'pending')"}
    with store.engine.connect() as conn:
        for name, sql in reads.items():
            plan = [" ".join(str(part) for part in row) for row in conn.execute(text(explain + sql))]
            print(f"  {name}: " + " | ".join(plan))
    store.close()


def main() -> None:
    """Fill, time every dashboard request, show the plans."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="an empty database URL (default: SQLite in a temp folder)")
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="elastic-dashboard-bench-"))
    url = options.db or f"sqlite:///{folder}/bench.db"
    started = time.perf_counter()
    fill(url, options.tasks)
    print(f"{options.tasks} tasks written in {time.perf_counter() - started:.0f} s ({url})")
    store = open_store(url)
    app = make_app(store, config.load(None, {"database_url": url}))
    print(f"{'request':<58} {'median ms':>10} {'bytes':>8}")
    for path in PATHS:
        milliseconds, size = time_request(app, path, options.repeats)
        print(f"{path:<58} {milliseconds:>10.1f} {size:>8}")
    started = time.perf_counter()
    QueueSamples(store).take()
    print(f"{'one sample pass (the server loop, every 10 s)':<58} "
          f"{1000 * (time.perf_counter() - started):>10.1f}")
    store.close()
    show_plans(url)


if __name__ == "__main__":
    main()
