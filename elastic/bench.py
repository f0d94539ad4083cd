"""``elastic bench``: how fast tasks move, measured with real processes on this machine.

It starts ``elastic serve`` on a fresh database (a temporary SQLite file, or ``--db``)
and worker processes of the built-in ``noop`` type, pushes no-op tasks through them
and reports: tasks per second submitted and end to end (from the first submit to the
last task's ``finished_at``), once with the seed's one-at-a-time protocol (workers of
capacity 1) and once with the batch paths (``--batch`` tasks per poll, their results
in one request); submit-to-start and submit-to-result latencies with idle long-polling
workers; and the server's CPU time and peak memory. ``--pending`` first fills the
queue with that many tasks of other types and priorities, which the noop workers
never take, so the cost of a deep queue shows. Only HTTP: it never opens the store.
"""

from __future__ import annotations

import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from elastic.errors import ElasticError
from elastic.transport import Transport, task_status_path

SUBMIT_CHUNK = 2000  # tasks per submit request
START_SECONDS = 60.0
RUN_SECONDS = 600.0
TAIL_CHECK_SECONDS = 0.25
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PENDING_TYPES = ("evolution_mutation", "evolution_crossover")


@dataclass(frozen=True, kw_only=True)
class BenchSettings:
    """What to measure: ``tasks`` no-op tasks through ``workers`` worker processes."""

    tasks: int = 10_000
    workers: int = 2
    batch: int = 64
    latency_samples: int = 200
    pending: int = 0
    idle_seconds: float = 0.0
    database_url: str | None = None


@dataclass
class BenchReport:
    """The figures of one bench run (rates in tasks/s, latencies in ms)."""

    rates: dict[str, tuple[float, float]] = field(default_factory=dict)  # pass: submit, e2e
    latency_ms: dict[str, float] = field(default_factory=dict)
    server_cpu_seconds: float = 0.0
    server_peak_rss_mb: float = 0.0
    idle_cpu_percent: dict[str, float] = field(default_factory=dict)
    huey: tuple[float, float] | None = None

    def lines(self) -> list[str]:
        """The report, one figure a line."""
        out = [f"{name:<14} submit {submit:>9,.0f} tasks/s   end to end {e2e:>8,.0f} tasks/s"
               for name, (submit, e2e) in self.rates.items()]
        if self.huey is not None:
            out.append(f"{'huey (sqlite)':<14} submit {self.huey[0]:>9,.0f} tasks/s   "
                       f"end to end {self.huey[1]:>8,.0f} tasks/s")
            out += [f"ratio {name} / huey: {e2e / self.huey[1]:.2f}x"
                    for name, (_, e2e) in self.rates.items()]
        out += [f"{name}: {value:.1f} ms" for name, value in self.latency_ms.items()]
        out.append(f"server CPU {self.server_cpu_seconds:.1f} s, "
                   f"peak RSS {self.server_peak_rss_mb:.0f} MB")
        out += [f"idle {name}: {percent:.2f}% of a core"
                for name, percent in self.idle_cpu_percent.items()]
        return out


def free_port() -> int:
    """A loopback port free right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_peak_rss_mb(pid: int) -> float:
    """The peak resident memory of a live process in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class BenchCluster:
    """A server process and its noop workers in a temporary folder."""

    def __init__(self, folder: Path, database_url: str) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {key: value for key, value in os.environ.items()
                    if not key.startswith("ELASTIC_")}
        self.env["ELASTIC_DATABASE_URL"] = database_url
        self.server = self._spawn(["serve", "--port", str(self.port)], "server")
        self.workers: list[subprocess.Popen[bytes]] = []
        self.transport = Transport(self.url, timeout_seconds=120)
        self.wait_for(lambda: self._answers("/health"), "the server to answer")

    def _spawn(self, arguments: Sequence[str], name: str) -> subprocess.Popen[bytes]:
        with (self.folder / f"{name}.log").open("ab") as log:
            return subprocess.Popen([sys.executable, "-m", "elastic", *arguments],
                                    cwd=self.folder, env=self.env, stdout=log,
                                    stderr=subprocess.STDOUT)

    def _answers(self, path: str) -> Any:
        try:
            return self.transport.get(path)
        except ElasticError:
            return None

    @staticmethod
    def wait_for(predicate: Any, what: str, *, seconds: float = START_SECONDS) -> Any:
        """``predicate()`` once it is truthy; ElasticError naming ``what`` after ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise ElasticError(f"bench: timed out waiting for {what}")

    def start_workers(self, count: int, *, batch: int) -> None:
        """Start ``count`` noop workers (capacity and batch ``batch``) and wait until online."""
        self.stop_workers()
        for number in range(count):
            self.workers.append(self._spawn(
                ["worker", "--server", self.url, "--type", "noop", "--id", f"bench-{number}",
                 "--capacity", str(batch), "--batch", str(batch)], f"worker-{number}"))
        self.wait_for(lambda: sum(w["status"] in ("online", "busy") for w in self._answers(
            "/api/workers/list")["workers"]) >= count, f"{count} workers to register")

    def stop_workers(self) -> None:
        """Stop the workers (SIGTERM: they unregister) and wait for them."""
        for process in self.workers:
            process.terminate()
        for process in self.workers:
            process.wait(timeout=30)
        self.workers.clear()

    def close(self) -> None:
        """Stop everything."""
        self.stop_workers()
        self.server.terminate()
        self.server.wait(timeout=30)
        self.transport.close()


def noop_tasks(prefix: str, count: int) -> list[dict[str, Any]]:
    """``count`` no-op tasks with ids ``prefix-0``..."""
    return [{"task_id": f"{prefix}-{n}", "type": "noop", "data": {}, "priority": 5}
            for n in range(count)]


def other_tasks(count: int, seed: int = 1) -> Iterator[dict[str, Any]]:
    """Tasks no noop worker runs, of mixed types and priorities (the deep queue)."""
    chooser = random.Random(seed)
    for n in range(count):
        kind = PENDING_TYPES[n % 2]
        data = ({"genome": {"x": 1.0}, "mutation_rate": 0.1} if kind == "evolution_mutation"
                else {"genome1": {"x": 1.0}, "genome2": {"x": 2.0}})
        yield {"task_id": f"deep-{n}", "type": kind, "data": data,
               "priority": chooser.randint(1, 10)}


def submit_all(transport: Transport, tasks: Iterator[dict[str, Any]] | list[dict[str, Any]]
               ) -> None:
    """Submit in chunks of ``SUBMIT_CHUNK``."""
    chunk: list[dict[str, Any]] = []
    for task in tasks:
        chunk.append(task)
        if len(chunk) == SUBMIT_CHUNK:
            transport.post("/api/tasks/submit", {"tasks": chunk, "source": "bench"})
            chunk = []
    if chunk:
        transport.post("/api/tasks/submit", {"tasks": chunk, "source": "bench"})


def finished_times(transport: Transport, task_ids: Sequence[str]) -> list[float] | None:
    """Every task's end time (seconds since the epoch); None while one has not completed."""
    ended = []
    for start in range(0, len(task_ids), 500):
        chunk = task_ids[start:start + 500]
        found = transport.get("/api/tasks", params={"id": chunk, "limit": len(chunk)})["tasks"]
        if len(found) < len(chunk) or any(t["status"] != "completed" for t in found):
            return None
        ended += [datetime.fromisoformat(t["finished_at"]).timestamp() for t in found]
    return ended


def measure_throughput(cluster: BenchCluster, prefix: str, count: int) -> tuple[float, float]:
    """Submit ``count`` no-op tasks to the running workers: (submit, end to end) tasks/s."""
    tasks = noop_tasks(prefix, count)
    started = time.time()
    submit_all(cluster.transport, tasks)
    submitted = time.time()
    ids = [task["task_id"] for task in tasks]
    # Looks in four times a second, as a client would, at the tasks queued last (a long
    # poll would wake at every result and cost the server more than it measures).
    cluster.wait_for(lambda: finished_times(cluster.transport, ids[-50:]) or
                      time.sleep(TAIL_CHECK_SECONDS), "the last tasks to complete",
                      seconds=RUN_SECONDS)
    ended = cluster.wait_for(lambda: finished_times(cluster.transport, ids),
                              "every task to complete", seconds=RUN_SECONDS)
    return count / (submitted - started), count / (max(ended) - started)


def measure_latency(cluster: BenchCluster, samples: int) -> dict[str, float]:
    """Submit tasks one at a time to idle long-polling workers: p50/p99 in ms."""
    to_start, to_result = [], []
    for n in range(samples):
        task_id = f"latency-{n}"
        sent = time.time()
        cluster.transport.post("/api/tasks/submit", {"task_id": task_id, "type": "noop",
                                                     "data": {}})
        status = cluster.transport.get(task_status_path(task_id), params={"wait": 10})
        to_result.append(time.time() - sent)
        started = datetime.fromisoformat(status["history"][-1]["started_at"]).timestamp()
        to_start.append(max(started - sent, 0.0))
    return {f"submit-to-{name} {label}": 1000 * _percentile(values, q)
            for name, values in (("start", to_start), ("result", to_result))
            for label, q in (("p50", 50), ("p99", 99))}


def _percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def measure_idle(cluster: BenchCluster, seconds: float) -> dict[str, float]:
    """CPU share of the idle server and of one idle long-polling worker over ``seconds``."""
    processes = {"server": cluster.server, "worker": cluster.workers[0]}
    before = {name: process_cpu_seconds(p.pid) for name, p in processes.items()}
    time.sleep(seconds)
    return {name: 100 * (process_cpu_seconds(p.pid) - before[name]) / seconds
            for name, p in processes.items()}


@contextmanager
def bench_cluster(settings: BenchSettings) -> Iterator[BenchCluster]:
    """A cluster on a fresh temporary folder (and database, unless ``database_url``)."""
    with tempfile.TemporaryDirectory(prefix="elastic-bench-") as folder:
        url = settings.database_url or f"sqlite:///{Path(folder) / 'bench.db'}"
        cluster = BenchCluster(Path(folder), url)
        try:
            yield cluster
        finally:
            cluster.close()


def run_bench(settings: BenchSettings) -> BenchReport:
    """Measure both paths, the latencies and the server's costs in one run."""
    report = BenchReport()
    with bench_cluster(settings) as cluster:
        if settings.pending:
            submit_all(cluster.transport, other_tasks(settings.pending))
        cpu_before = process_cpu_seconds(cluster.server.pid)
        cluster.start_workers(settings.workers, batch=1)
        report.rates["one at a time"] = measure_throughput(cluster, "single", settings.tasks)
        report.latency_ms = measure_latency(cluster, settings.latency_samples)
        if settings.idle_seconds:
            report.idle_cpu_percent = measure_idle(cluster, settings.idle_seconds)
        if settings.batch > 1:
            cluster.start_workers(settings.workers, batch=settings.batch)
            report.rates[f"batch {settings.batch}"] = measure_throughput(
                cluster, "batch", settings.tasks)
        report.server_cpu_seconds = process_cpu_seconds(cluster.server.pid) - cpu_before
        report.server_peak_rss_mb = process_peak_rss_mb(cluster.server.pid)
    return report
