"""Shared fixtures: a clean environment, real databases, real server and worker processes.

PostgreSQL tests use the server at 127.0.0.1:5432 (trust auth); each test gets its
own database copied from a session template. Without PostgreSQL they skip locally
and fail when ``CI`` is set, so CI never silently skips them.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, settings

# One hypothesis profile for every machine, fast or a loaded Raspberry Pi: the same examples
# every run (derandomize: a failure reproduces, a pass is not luck), no time limit per
# example and no "input generation is slow" health check (a busy core is not a bug).
settings.register_profile("elastic", derandomize=True, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("elastic")

SCRUBBED_ENV = ("MAX_TASK_RETRIES", "WORKER_TIMEOUT", "TASK_DISTRIBUTION_INTERVAL",
                "RESULTS_STORAGE_PATH", "LOG_LEVEL", "GROQ_API_KEY", "GEMINI_API_KEY",
                "OLLAMA_HOST", "GROQ_BASE_URL", "GEMINI_BASE_URL")
for name in list(os.environ):
    if name.startswith("ELASTIC_") or name in SCRUBBED_ENV:
        del os.environ[name]
# File names carry the local time: the tests run in UTC on every machine (those about the
# local time switch zone themselves, see test_local_time_names.py).
os.environ["TZ"] = "UTC"
time.tzset()

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_TEMPLATE = f"elastic_test_template_{os.getpid()}"

FAST_CONFIG = """
lease_seconds = 3.0
worker_timeout_seconds = 3.0
heartbeat_interval_seconds = 0.5
poll_interval_seconds = 1.0
expiry_check_interval_seconds = 0.2
task_distribution_interval_seconds = 0.3
results_interval_seconds = 0.5
checkpoint_interval_seconds = 0.3
max_task_retries = 3
log_level = "INFO"
"""


def wait_until(predicate: Callable[[], object], *, timeout: float = 20.0,
               interval: float = 0.05, message: str = "condition") -> object:
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")


# Ports for servers the tests start, below the kernel's ephemeral range (32768+): a port
# from that range can be taken by some client connection's local end between the moment it
# is chosen and the moment the server binds it. Each pytest-xdist worker gets its own slice.
TEST_PORTS_START, TEST_PORTS_PER_WORKER = 20_000, 2_000
_ports_given: set[int] = set()


def free_port() -> int:
    """A loopback port nobody listens on right now, never given out before in this session."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    first = TEST_PORTS_START + (worker % 6) * TEST_PORTS_PER_WORKER
    start = random.randrange(TEST_PORTS_PER_WORKER)  # apart from other test sessions running
    for offset in range(TEST_PORTS_PER_WORKER):
        port = first + (start + offset) % TEST_PORTS_PER_WORKER
        if port in _ports_given:
            continue
        _ports_given.add(port)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free test port left")


def hiding_modules(folder: Path, *modules: str) -> dict[str, str]:
    """Environment for a child process in which importing ``modules`` fails as if they were
    not installed (an SDK, the compiled kernel): a sitecustomize on PYTHONPATH blocks them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "import sys\n\n"
        f"HIDDEN = {tuple(modules)!r}\n\n\n"
        "class HideModules:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name in HIDDEN or name.split('.')[0] in HIDDEN:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n\n\n"
        "sys.meta_path.insert(0, HideModules())\n")
    return {**os.environ, "PYTHONPATH": str(folder)}


# -- databases ------------------------------------------------------------------------------

def _postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres",
                             connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A migrated template database; per-test databases are copies of it."""
    if not _postgres_available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL at 127.0.0.1:5432 is required in CI")
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not running")
    from elastic.store import open_store

    _pg_admin(f'DROP DATABASE IF EXISTS "{PG_TEMPLATE}"', f'CREATE DATABASE "{PG_TEMPLATE}"')
    store = open_store(f"postgresql://postgres@127.0.0.1:5432/{PG_TEMPLATE}")
    store.engine.dispose()
    yield PG_TEMPLATE
    _pg_admin(f'DROP DATABASE IF EXISTS "{PG_TEMPLATE}" WITH (FORCE)')


def _pg_admin(*statements: str) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres",
                         autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/elastic.db"
        return
    yield from _fresh_postgres_database(request.getfixturevalue("postgres_template"))


@pytest.fixture
def postgres_url(postgres_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database."""
    yield from _fresh_postgres_database(postgres_template)


def _fresh_postgres_database(template: str) -> Iterator[str]:
    name = f"elastic_test_{uuid.uuid4().hex[:10]}"
    _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def store(database_url: str) -> Iterator[object]:
    """A Store on each database kind, with a hand-driven clock-friendly setup: retries
    without backoff, so a test leases a failed task again at once (the backoff has its own
    tests)."""
    from elastic.store import open_store
    from elastic.tasks import RetryPolicy

    opened = open_store(database_url, max_retries=2, lease_seconds=30,
                        worker_timeout_seconds=60, retry=RetryPolicy(backoff_seconds=0.0))
    yield opened
    opened.close()


# -- processes ------------------------------------------------------------------------------

@dataclass
class ServerProcess:
    """An ``elastic serve`` child process on a loopback port."""

    folder: Path
    database_url: str
    port: int
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        """Start and wait until /health answers."""
        with (self.folder / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "elastic", "serve", "--port", str(self.port),
                 "--db", self.database_url, "--config", str(self.folder / "elastic.toml")],
                cwd=self.folder, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, **self.extra_env})
        wait_until(self._healthy, timeout=30, message=f"server on {self.url}")
        return self

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"server exited: {(self.folder / 'server.log').read_text()}")
        try:
            return requests.get(f"{self.url}/health", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def kill(self) -> None:
        """kill -9."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        """SIGTERM, then kill if needed."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def project_folder(tmp_path: Path) -> Path:
    """A folder with a fast-timing elastic.toml, as a user's project folder."""
    (tmp_path / "elastic.toml").write_text(FAST_CONFIG)
    return tmp_path


@pytest.fixture
def start_server(project_folder: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: start an ``elastic serve`` process (SQLite in the project folder by default)."""
    started: list[ServerProcess] = []

    def start(database_url: str | None = None, *, port: int | None = None,
              env: dict[str, str] | None = None) -> ServerProcess:
        server = ServerProcess(project_folder,
                               database_url or f"sqlite:///{project_folder}/elastic.db",
                               port or free_port(), dict(env or {}))
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def start_worker(project_folder: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Factory: start an ``elastic worker`` process against a server URL."""
    started: list[subprocess.Popen[bytes]] = []

    def start(server_url: str, *, worker_type: str = "simulation", worker_id: str | None = None,
              capacity: int = 1, extra: list[str] | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        worker_id = worker_id or f"{worker_type}-{len(started) + 1}"
        with (project_folder / f"{worker_id}.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "elastic", "worker", "--server", server_url,
                 "--type", worker_type, "--id", worker_id, "--capacity", str(capacity),
                 "--config", str(project_folder / "elastic.toml"), *(extra or [])],
                cwd=project_folder, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})})
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
    for process in started:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()  # reaped, or its Popen warns "still running" in a later test


@pytest.fixture
def live_server(start_server: Callable[..., ServerProcess],
                start_worker: Callable[..., subprocess.Popen[bytes]]) -> str:
    """A running orchestrator with one evolution worker connected; yields its URL."""
    server = start_server()
    start_worker(server.url, worker_type="evolution", worker_id="evolution-live")
    wait_until(lambda: requests.get(f"{server.url}/health", timeout=2).json()["workers_online"],
               message="the evolution worker to register")
    return server.url


# -- in-process orchestrator and worker loops -----------------------------------------------

FAST_TIMINGS = {"lease_seconds": 3.0, "worker_timeout_seconds": 3.0,
                "heartbeat_interval_seconds": 0.5, "poll_interval_seconds": 1.0,
                "expiry_check_interval_seconds": 0.2, "results_interval_seconds": 0.5,
                "checkpoint_interval_seconds": 0.3}


@pytest.fixture
def start_orchestrator(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Factory: an orchestrator serving from a thread of the test process, on a free loopback
    port, with fast timings (overridable). Where a separate process adds nothing, this keeps
    a test fast and its failures readable. Stopped at teardown."""
    from elastic import config
    from elastic.server.serve import Orchestrator

    started: list[Orchestrator] = []

    def start(database_url: str | None = None, **overrides: Any) -> Orchestrator:
        settings = config.load(None, {
            "database_url": database_url or f"sqlite:///{tmp_path}/elastic.db", "port": 0,
            "task_queues_path": str(tmp_path / "task_queues"),
            "results_path": str(tmp_path / "results"), **FAST_TIMINGS, **overrides})
        orchestrator = Orchestrator(settings)
        orchestrator.start_in_thread()
        started.append(orchestrator)
        return orchestrator

    yield start
    for orchestrator in started:
        orchestrator.stop()


@pytest.fixture
def make_worker_loop() -> Iterator[Callable[..., Any]]:
    """Factory: a ``WorkerLoop`` talking HTTP to ``url``, not started. Step it by hand
    (``register``, ``run_once``, ``send_heartbeat``) or ``run`` it in a thread; a loop left
    running is stopped at teardown."""
    from elastic.transport import Transport
    from elastic.worker.loop import WorkerLoop, WorkerSettings

    made: list[tuple[WorkerLoop, Transport]] = []

    def make(url: str, *, worker_id: str = "loop-worker", worker_type: str = "evolution",
             executors: Any = None, **settings: Any) -> WorkerLoop:
        from elastic.worker.presets import worker_capabilities

        transport = Transport(url)
        options = {"capacity": 1, "heartbeat_interval_seconds": 0.5, "poll_wait_seconds": 0.5,
                   "checkpoint_interval_seconds": 0.3, **settings}
        worker_settings = WorkerSettings(worker_id=worker_id, worker_type=worker_type,
                                         capabilities=worker_capabilities(worker_type),
                                         **options)
        loop = (WorkerLoop(transport, worker_settings) if executors is None
                else WorkerLoop(transport, worker_settings, executors=executors))
        made.append((loop, transport))
        return loop

    yield make
    for loop, transport in made:
        loop.stop()
        transport.close()
