"""How long one scrape of ``GET /metrics`` takes with a million stored tasks.

Usage:
    python benchmarks/bench_metrics.py sqlite:////tmp/metrics.db --tasks 1000000
    python benchmarks/bench_metrics.py postgresql://postgres@127.0.0.1:5432/bench --tasks 1000000

The database must be new (it is created and filled): ``--tasks`` tasks of two types,
submitted through ``Store.submit_tasks`` in batches, then 70 % marked completed, 5 %
failed and 1 % running by SQL with one attempt each (two for the failed ones), the
rest pending across priorities 1..10. Then it times ``Store.queue_metrics`` and a whole
scrape (the WSGI app's ``/metrics``: the collector, the workers, provider budgets and
the text rendering), each the median of ``--repeats`` runs, and prints them.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable
from wsgiref.util import setup_testing_defaults

from sqlalchemy import text

from elastic import config
from elastic.server.app import make_app
from elastic.store import Store, open_store
from elastic.tasks import NewTask

BATCH = 10_000
MARK_STATES = """
UPDATE tasks SET status = CASE
    WHEN seq % 100 < 70 THEN 'completed' WHEN seq % 100 < 75 THEN 'failed'
    WHEN seq % 100 < 76 THEN 'assigned' ELSE 'pending' END,
  started_at = created_at + 1, finished_at = CASE WHEN seq % 100 < 75 THEN created_at + 2 END,
  attempts = CASE WHEN seq % 100 < 76 THEN 1 ELSE 0 END
"""
ADD_ATTEMPTS = """
INSERT INTO attempts (task_id, attempt, worker_id, lease_token, started_at, ended_at, outcome)
SELECT task_id, 1, 'bench-worker', 1, created_at + 1, created_at + 2,
       CASE status WHEN 'assigned' THEN 'running' ELSE status END
FROM tasks WHERE status <> 'pending'
"""
ADD_RETRIES = """
INSERT INTO attempts (task_id, attempt, worker_id, lease_token, started_at, ended_at, outcome)
SELECT task_id, 2, 'bench-worker', 2, created_at + 1, created_at + 2, 'expired'
FROM tasks WHERE status = 'failed'
"""


def fill(store: Store, count: int) -> None:
    """Submit ``count`` tasks, then give them states and attempts by SQL."""
    for start in range(0, count, BATCH):
        store.submit_tasks([NewTask(
            task_id=f"bench-{number}", type="simulation" if number % 3 else "evolution_mutation",
            priority=1 + number % 10, data={"n": number})
            for number in range(start, min(count, start + BATCH))])
    with store.engine.begin() as connection:
        for statement in (MARK_STATES, ADD_ATTEMPTS, ADD_RETRIES):
            connection.execute(text(statement))
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE tasks"))
            connection.execute(text("VACUUM ANALYZE attempts"))


def scrape(app: Callable[..., object]) -> bytes:
    """One GET /metrics through the WSGI app."""
    environ: dict[str, object] = {"PATH_INFO": "/metrics", "REQUEST_METHOD": "GET",
                                  "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(app(environ, lambda line, _headers, _error=None: status.append(line)))
    assert status[0].startswith("200"), status
    return body


def median_seconds(work: Callable[[], object], repeats: int) -> float:
    """The median wall time of ``repeats`` runs of ``work``."""
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> None:
    """Fill the database, time the scrape, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database_url")
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    options = parser.parse_args()
    store = open_store(options.database_url)
    started = time.perf_counter()
    fill(store, options.tasks)
    print(f"filled {options.tasks} tasks in {time.perf_counter() - started:.0f} s")
    app = make_app(store, config.load(None, {"database_url": options.database_url}, environ={}))
    print(f"Store.queue_metrics: {median_seconds(store.queue_metrics, options.repeats):.3f} s "
          f"(median of {options.repeats})")
    print(f"GET /metrics: {median_seconds(lambda: scrape(app), options.repeats):.3f} s, "
          f"{len(scrape(app))} bytes")
    store.close()


if __name__ == "__main__":
    main()
