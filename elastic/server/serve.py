"""Running the orchestrator: the threaded WSGI server and its background loops.

waitress serves the bottle app on a thread pool sized for long polls. Beside it,
daemon loops expire leases, ingest task_queues/ and write results/. ``Orchestrator``
is used by ``elastic serve`` and, in-process, by ``elastic run``.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from waitress import wasyncore

from elastic import ingest, results
from elastic.config import Config, weak_token_problem
from elastic.errors import ConfigError
from elastic.server.app import make_app
from elastic.server.fleet import HEALTH_CHECK_SECONDS, FleetHealth
from elastic.server.samples import SAMPLE_SECONDS, QueueSamples
from elastic.store import Store, open_store
from elastic.store.dialects import shown_url
from elastic.store.lock import hold_database
from elastic.tasks import RetryPolicy
from elastic.web import listen

log = logging.getLogger("elastic.server")


def check_bind_address(config: Config) -> None:
    """Refuse a non-loopback bind address without a strong token unless ``insecure``.

    A weak token (short, blank, few different characters, like ``"a"``) guards nothing:
    refused too, ``--insecure`` or not.
    """
    try:
        loopback = config.host == "localhost" or ipaddress.ip_address(config.host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return
    if not config.token and not config.insecure:
        raise ConfigError("host", "flag or config", "a loopback address, or a token "
                          "(ELASTIC_TOKEN) for a reachable server, or --insecure", config.host)
    problem = weak_token_problem(config.token) if config.token else None
    if problem:
        raise ConfigError("token", "environment ELASTIC_TOKEN or config", f"for a reachable "
                          f"server a strong token: {problem} (python -c 'import secrets; "
                          "print(secrets.token_urlsafe())')")


def open_configured_store(config: Config) -> Store:
    """The store ``config`` describes: its database, retries, backoff and time limits."""
    return open_store(
        config.database_url, max_retries=config.max_task_retries,
        lease_seconds=config.lease_seconds, worker_timeout_seconds=config.worker_timeout_seconds,
        task_timeout_seconds=config.task_timeout_seconds,
        load_balancing=config.load_balancing, retry=RetryPolicy(
            max_worker_deaths=config.max_worker_deaths,
            backoff_seconds=config.retry_backoff_seconds,
            backoff_max_seconds=config.retry_backoff_max_seconds))


class Orchestrator:
    """The server and its loops, startable in the foreground or in a thread.

    On SQLite it holds the database's lock file while it lives (``store.lock``):
    a second orchestrator on the same file is refused with ``DatabaseInUse``.
    ``command`` names this process in that refusal. A store passed in stays the
    caller's to close; one opened here is closed by ``stop``.
    """

    def __init__(self, config: Config, *, store: Store | None = None,
                 watch_folder: bool = True, write_results: bool = True,
                 command: str = "elastic serve") -> None:
        self.config = config
        url = config.database_url if store is None else store.engine.url.render_as_string(
            hide_password=False)
        self.lock = hold_database(url, command=command)
        self.owns_store = store is None
        try:
            self.store = store or open_configured_store(config)
        except BaseException:
            self.owns_store = False
            self._let_go()
            raise
        try:
            self.fleet_health = FleetHealth(config.workers, token=config.token)
            self.samples = QueueSamples(self.store)
            self.server = listen(make_app(self.store, config, fleet_health=self.fleet_health,
                                          samples=self.samples),
                                 host=config.host,
                                 port=config.port, threads=config.server_threads,
                                 connection_limit=config.max_connections,
                                 channel_timeout=max(120, int(config.max_wait_seconds) + 30))
        except BaseException:
            self._let_go()
            raise
        self.stopping = threading.Event()
        self.loops: list[threading.Thread] = []
        self.results_files: list[Path] = []
        # With the database's lock (SQLite) no other writer lives: claims found at the first
        # results pass are a dead writer's. Replicas (PostgreSQL) wait for claims to run out.
        self._claims_may_be_live = self.lock is None
        self._add_loop("expire-leases", config.expiry_check_interval_seconds, self._expire)
        self._add_loop("dashboard-samples", SAMPLE_SECONDS, self.samples.take)
        if watch_folder:
            watcher = ingest.FolderWatcher(self.store, config.resolve(config.task_queues_path))
            self._add_loop("ingest", config.task_distribution_interval_seconds, watcher.scan)
        if write_results:
            self._add_loop("results", config.results_interval_seconds, self.write_results)
        if config.workers:
            self._add_loop("fleet-health", HEALTH_CHECK_SECONDS, self.fleet_health.check_all)

    @property
    def quiet_seconds(self) -> float:
        """The longest gap between expiry passes that means they ran (here, or in a replica
        on the same database): two intervals and a second of slack."""
        return 2 * self.config.expiry_check_interval_seconds + 1.0

    @property
    def url(self) -> str:
        """The base URL the server listens on."""
        return f"http://{self.config.host}:{self.server.effective_port}"

    @property
    def dashboard_url(self) -> str:
        """Where a browser opens the dashboard."""
        return f"{self.url}/"

    def _add_loop(self, name: str, interval_seconds: float, step: Callable[[], object]) -> None:
        def loop() -> None:
            while not self.stopping.wait(interval_seconds):
                try:
                    step()
                except Exception:
                    log.exception("background loop %s failed; it will run again", name)

        self.loops.append(threading.Thread(target=loop, name=name, daemon=True))

    def _expire(self) -> None:
        report = self.store.expire_leases(quiet_seconds=self.quiet_seconds)
        if report.clocks_shifted_seconds:
            log.warning("no expiry pass ran for %.1f s (orchestrators down, or the database "
                        "unwritable): worker and lease clocks shifted by that",
                        report.clocks_shifted_seconds)
        for worker_id in report.workers_dead:
            log.warning("worker %s stopped heartbeating: marked dead", worker_id)
        for task_id in report.tasks_requeued:
            log.info("task %s put back in the queue", task_id)
        for task_id in report.tasks_failed:
            log.warning("task %s failed: retries used up", task_id)
        for task_id in report.tasks_held:
            log.warning("task %s held: its attempts killed %d workers (elastic release %s)",
                        task_id, self.store.retry.max_worker_deaths, task_id)

    def write_results(self) -> Path | None:
        """Write the results file for newly ended tasks and refresh orchestrator_stats.json,
        after settling what a writer that died left half done."""
        folder = self.config.resolve(self.config.results_path)
        results.recover_interrupted_exports(self.store, folder,
                                            every_claim=not self._claims_may_be_live)
        self._claims_may_be_live = True
        written = results.write_results_file(self.store, folder)
        results.write_stats_file(self.store, folder)
        if written is not None:
            self.results_files.append(written)
        return written

    def start_loops(self) -> None:
        """Run a first expiry pass, which shifts worker and lease clocks by the downtime
        (it does not count against live workers), before serving; then start the loops."""
        self._expire()
        for thread in self.loops:
            thread.start()

    def serve_forever(self) -> None:
        """Serve until ``stop`` is called (or the process is interrupted)."""
        self.start_loops()
        log.debug("elastic serving on %s (database %s)", self.url,
                  shown_url(self.config.database_url))
        try:
            self.server.run()
        except OSError:
            if not self.stopping.is_set():
                raise
        finally:
            self.stop()

    def start_in_thread(self) -> threading.Thread:
        """Serve from a background thread (for ``elastic run`` and tests)."""
        thread = threading.Thread(target=self.serve_forever, name="elastic-server", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """Stop serving and the loops; writes a last results file."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        self.store.changes.close()  # long polls answer now, with what there is
        # Let the handler threads finish their answers before the sockets close under
        # them; then close the listening socket and the kept-alive client connections
        # (waitress closes only the first, the others would leak until garbage collection).
        self.server.task_dispatcher.shutdown(timeout=5)
        self.server.close()
        wasyncore.close_all(self.server._map)
        for thread in self.loops:
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join(timeout=30)
        try:
            self.write_results()
        except Exception:
            log.exception("could not write the last results file")
        self._let_go()

    def _let_go(self) -> None:
        """Close the store if this orchestrator opened it, and release the database lock."""
        if self.owns_store:
            self.store.close()
        if self.lock is not None:
            self.lock.release()
