"""The ``elastic`` command: thin click wrappers over the core.

Flags default to None and go to ``config.load`` so the order defaults -> toml ->
env -> flags lives in one place. Exit codes: 0 ok, 1 a task or operation failed,
2 usage or configuration error.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.live import Live
from rich.markup import escape

from elastic import __version__, config, console, logs, taskfiles
from elastic.errors import ConfigError, ElasticError, InvalidInput, ServerUnreachable
from elastic.tasks import TASK_TYPES, NewTask, Requirement, TaskStatus
from elastic.transport import task_path, task_status_path
from elastic.worker_types import LLM_WORKER_TYPES, WORKER_TYPES

if TYPE_CHECKING:
    from elastic.batch import BatchState

RECENT_FAILURES = 10
INTERRUPTED_EXIT_CODE = 130  # what shells report for a program stopped by Ctrl-C
TASK_PAGE_LIMIT = 1000  # tasks per request when `elastic retry --failed` lists them
MAX_TASK_PAGES = 10_000  # a bound on that listing (ten million failed tasks)
REPLACE_HELP = ("Requeue a known task whose content changed (failed, held, cancelled or "
                "pending) with the new content; its history is kept.")

stdout = Console()
stderr = Console(stderr=True)


def config_option(function: Callable[..., Any]) -> Callable[..., Any]:
    """The shared ``--config`` option."""
    return click.option("--config", "config_path", type=click.Path(dir_okay=False),
                        help="Configuration file (default ./elastic.toml).")(function)


def server_option(function: Callable[..., Any]) -> Callable[..., Any]:
    """The shared ``--server`` option."""
    return click.option("--server", "server_url",
                        help="Orchestrator URL (default $ELASTIC_SERVER or http://127.0.0.1:5000).")(
        function)


def log_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """The shared ``--log-level`` and ``--log-format`` options."""
    function = click.option("--log-format", type=click.Choice(config.LOG_FORMATS),
                            help="Log records as text or one JSON object a line "
                                 "(default text).")(function)
    return click.option("--log-level", type=click.Choice(config.LOG_LEVELS, case_sensitive=False),
                        help="Least important records shown (default INFO).")(function)


def reports_errors(function: Callable[..., Any]) -> Callable[..., Any]:
    """Turn ElasticErrors into one readable line and their exit code."""
    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except ElasticError as exc:
            click.echo(f"error: {exc.message}", err=True)
            sys.exit(exc.exit_code)
    return wrapper


def load_config(config_path: str | None, **overrides: Any) -> config.Config:
    """The configuration for a command, with its flags applied last."""
    settings = config.load(config_path, overrides)
    logs.configure_logging(settings.log_level, settings.log_format)
    return settings


def read_task_files(paths: tuple[str, ...]) -> list[NewTask]:
    """All tasks of the given files (``-`` is stdin); a bad file stops everything.

    Raises:
        InvalidInput: naming the file that is missing, unreadable or not valid (exit 2).
    """
    batch: list[NewTask] = []
    for path in paths:
        content = sys.stdin.read() if path == "-" else _read_file(path)
        try:
            batch += taskfiles.parse_task_file(content, source="stdin" if path == "-"
                                               else Path(path).name)
        except InvalidInput as exc:
            raise InvalidInput(f"{path}: {exc.message}") from None
    return batch


def _read_file(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such file") from None
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read it ({exc.strerror})") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="elastic")
def main() -> None:
    """elastic: a task orchestrator for LLM calls, evolution and particle simulations.

    Example:

        elastic run examples/simulations.json
    """


@main.command()
@click.option("--host", help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=int, help="Port (default 5000).")
@click.option("--db", "database_url", help="Database URL (default sqlite:///elastic.db).")
@click.option("--insecure", is_flag=True, default=None,
              help="Allow a non-loopback --host without a token.")
@log_options
@config_option
@reports_errors
def serve(host: str | None, port: int | None, database_url: str | None, insecure: bool | None,
          log_level: str | None, log_format: str | None, config_path: str | None) -> None:
    """Run the orchestrator: HTTP API, lease expiry, task_queues/ watching, results/.

    Example:

        elastic serve --port 5000 --db sqlite:///elastic.db
    """
    from elastic.server.serve import Orchestrator, check_bind_address
    from elastic.store.dialects import shown_url

    settings = load_config(config_path, host=host, port=port, database_url=database_url,
                           insecure=insecure, log_level=log_level, log_format=log_format)
    check_bind_address(settings)
    if settings.log_file:
        path = settings.resolve(settings.log_file)
        logs.add_log_file(path, log_format=settings.log_format,
                          max_bytes=settings.log_max_bytes, backup_count=settings.log_backup_count)
        logging.getLogger("elastic.server").info("elastic serve %s starting (pid %d), logging "
                                                 "to %s", __version__, os.getpid(), path)
    orchestrator = Orchestrator(settings)
    signal.signal(signal.SIGTERM, _interrupt)
    stderr.print(f"elastic serving on {orchestrator.url} (database "
                 f"{shown_url(settings.database_url)}); dashboard: {orchestrator.dashboard_url}",
                 highlight=False, soft_wrap=True)
    orchestrator.serve_forever()


def _interrupt(_signum: int, _frame: object) -> None:
    """SIGTERM stops the server the way Ctrl-C does: cleanly, with a last results file."""
    raise KeyboardInterrupt


@main.group(invoke_without_command=True)
@server_option
@click.option("--type", "worker_type", default="simulation", show_default=True,
              type=click.Choice(list(WORKER_TYPES)),
              help="What this worker runs.")
@click.option("--id", "worker_id", help="Worker id (default <type>-<host>-<slot>, stable "
              "across restarts).")
@click.option("--slot", type=click.IntRange(0, 255),
              help="Slot of the default id (default: the lowest this host does not run).")
@click.option("--capacity", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Tasks run at the same time.")
@click.option("--processes", help="MIN:MAX: run a pool of worker processes that grows while "
              "tasks it can run wait and shrinks when idle.")
@click.option("--port", type=int, help="Also serve /health /status /history /metrics here.")
@click.option("--status-host", help="Address the --port binds (default 127.0.0.1; another "
              "needs a token).")
@click.option("--capabilities", "capabilities_json", help="JSON object widening the defaults.")
@click.option("--batch", type=click.IntRange(1, 1024), default=1, show_default=True,
              help="Lease up to this many tasks per poll and report their results in one "
                   "request (at most --capacity).")
@log_options
@config_option
@click.pass_context
@reports_errors
def worker(context: click.Context, server_url: str | None, worker_type: str,
           worker_id: str | None, slot: int | None, capacity: int, processes: str | None,
           port: int | None, status_host: str | None, capabilities_json: str | None,
           batch: int, log_level: str | None, log_format: str | None,
           config_path: str | None) -> None:
    """Run a worker: register, lease tasks, execute them, heartbeat, report.

    Example:

        elastic worker --type simulation --capacity 2 --server http://127.0.0.1:5000

        elastic worker --type simulation --processes 1:4
    """
    if context.invoked_subcommand is not None:
        return
    settings = load_config(config_path, server_url=server_url, log_level=log_level,
                           log_format=log_format)
    if batch > capacity:
        raise ConfigError("batch", "flag", f"at most --capacity ({capacity})", batch)
    extra = _parse_json_option("capabilities", capabilities_json)
    if processes is not None:
        from elastic.worker.pool import run_pool
        from elastic.worker.presets import worker_capabilities

        sys.exit(run_pool(settings, worker_type=worker_type, processes=processes,
                          capacity=capacity, capabilities=worker_capabilities(worker_type, extra),
                          child_options=_pool_child_options(context, config_path)))
    _run_worker(settings, worker_type=worker_type, worker_id=worker_id, slot=slot,
                capacity=capacity, batch=batch, status_address=_status_address(settings, status_host, port),
                extra=extra)


@worker.command("install-service")
@click.option("--type", "worker_type", default="simulation", show_default=True,
              type=click.Choice(list(WORKER_TYPES)), help="What the worker runs.")
@click.option("--processes", help="MIN:MAX: run an autoscaling pool.")
@click.option("--capacity", type=click.IntRange(1, 256), help="Tasks run at the same time.")
@click.option("--id", "worker_id", help="Worker id (default <type>-<host>-<slot>).")
@click.option("--port", type=int, help="The worker's status port.")
@click.option("--status-host", help="Address the status port binds (needs a token).")
@click.option("--user", default=lambda: getpass.getuser(), show_default="you",
              help="The user the worker runs as.")
@click.option("--env-file", default="/etc/elastic/worker.env", show_default=True,
              help="Environment file the unit reads (ELASTIC_SERVER, ELASTIC_TOKEN).")
@click.option("--output", default="-", show_default=True,
              help="Where to write the unit ('-': print it).")
@server_option
@config_option
@reports_errors
def worker_install_service(worker_type: str, processes: str | None, capacity: int | None,
                           worker_id: str | None, port: int | None, status_host: str | None,
                           user: str, env_file: str, output: str, server_url: str | None,
                           config_path: str | None) -> None:
    """Write a systemd unit that runs this worker at boot and restarts it.

    Example:

        elastic worker install-service --type simulation --processes 1:4 \\
            --output /etc/systemd/system/elastic-worker.service

        sudo systemctl daemon-reload && sudo systemctl enable --now elastic-worker
    """
    from elastic.worker.service import systemd_unit

    flags = {"--type": worker_type, "--processes": processes, "--capacity": capacity,
             "--id": worker_id, "--port": port, "--status-host": status_host,
             "--server": server_url,
             "--config": None if config_path is None else Path(config_path).resolve()}
    args = [part for flag, value in flags.items() if value is not None
            for part in (flag, str(value))]
    unit = systemd_unit(python=sys.executable, worker_args=args, user=user,
                        working_directory=str(Path.cwd()), environment_file=env_file)
    if output == "-":
        click.echo(unit, nl=False)
        return
    Path(output).write_text(unit, encoding="utf-8")
    stderr.print(f"wrote {output}; then: sudo systemctl daemon-reload && sudo systemctl "
                 f"enable --now {Path(output).stem}", highlight=False, soft_wrap=True)


def _pool_child_options(context: click.Context, config_path: str | None) -> list[str]:
    """The flags each child of a pool gets: the pool's own, but for --processes and --id."""
    options: list[str] = []
    for name, flag in (("server_url", "--server"), ("capacity", "--capacity"),
                       ("capabilities_json", "--capabilities"), ("log_level", "--log-level"),
                       ("log_format", "--log-format")):
        if context.params.get(name) is not None:
            options += [flag, str(context.params[name])]
    if config_path is not None:
        options += ["--config", str(Path(config_path).resolve())]
    for name in ("worker_id", "slot", "port"):
        if context.params.get(name) is not None:
            raise ConfigError(name.removeprefix("worker_"), "flag", "none with --processes "
                              "(each child takes <type>-<host>-<slot>)", context.params[name])
    return options


def _status_address(settings: config.Config, host: str | None,
                    port: int | None) -> tuple[str, int] | None:
    """Where the worker's status server binds, checked: beyond loopback only behind a token."""
    if port is None:
        return None
    host = host or "127.0.0.1"
    if host not in ("127.0.0.1", "localhost", "::1") and not settings.token:
        raise ConfigError("status-host", "flag", "a loopback address, or set a token "
                          "(ELASTIC_TOKEN) to guard the status port", host)
    return host, port


def _run_worker(settings: config.Config, *, worker_type: str, worker_id: str | None,
                slot: int | None, capacity: int, status_address: tuple[str, int] | None,
                extra: dict[str, Any], batch: int = 1) -> None:
    """Run one worker process until it is stopped, then exit at once."""
    from elastic.executors import EXECUTORS
    from elastic.executors.simulation import Simulation
    from elastic.providers.shared_limits import share_budget
    from elastic.transport import Transport
    from elastic.worker.loop import WorkerLoop, WorkerSettings
    from elastic.worker.presets import worker_capabilities, worker_provider
    from elastic.worker.slots import claim_slot, state_file
    from elastic.worker.status_server import start_status_server

    state = settings.resolve(settings.state_path)
    # Held (a local, so never collected) until this process exits: its id stays ours.
    slot_lock = None if worker_id else claim_slot(state, worker_type, slot=slot)
    worker_id = slot_lock.worker_id if slot_lock else str(worker_id)
    provider = worker_provider(worker_type, settings)
    worker_settings = WorkerSettings(
        worker_id=worker_id, worker_type=worker_type, capacity=capacity, batch=batch,
        capabilities=worker_capabilities(worker_type, extra, provider=provider),
        heartbeat_interval_seconds=settings.heartbeat_interval_seconds,
        poll_wait_seconds=settings.poll_interval_seconds,
        checkpoint_interval_seconds=settings.checkpoint_interval_seconds,
        max_task_seconds=settings.max_task_seconds or None,
        secret_path=state_file(state, worker_id, ".secret"))
    executors = {**EXECUTORS,
                 "simulation": Simulation(memory_limit_mb=settings.memory_limit_mb)}
    transport = Transport(settings.server_url, token=settings.token)
    loop = WorkerLoop(transport, worker_settings, executors=executors, provider=provider)
    if provider is not None:  # the same transport: budget calls carry the worker's secret
        share_budget(provider, transport, worker_id=worker_id, stopping=loop.stopping)
    loop.stop_on_signals()
    if status_address is not None:
        start_status_server(loop, host=status_address[0], port=status_address[1],
                            token=settings.token)
    loop.run()
    exit_at_once()


def exit_at_once() -> None:
    """Exit 0 now, skipping Python's teardown of every loaded module (numpy, an SDK...),
    which takes up to a second on a busy machine: a stopped worker has handed its
    tasks back and unregistered, nothing is left to clean up."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _parse_json_option(name: str, raw: str | None) -> dict[str, Any]:
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise ConfigError(name, "flag", "a JSON object", raw) from None
    if not isinstance(value, dict):
        raise ConfigError(name, "flag", "a JSON object", raw)
    return value


@main.command()
@click.argument("files", nargs=-1, required=True)
@server_option
@click.option("--wait", is_flag=True, help="Show a progress bar until every task ends.")
@click.option("--replace", is_flag=True, help=REPLACE_HELP)
@config_option
@reports_errors
def submit(files: tuple[str, ...], server_url: str | None, wait: bool, replace: bool,
           config_path: str | None) -> None:
    """Send task files (either format; '-' reads stdin) to the orchestrator.

    Every file is checked before anything is sent; its tasks are recorded with the
    file's name as their source. A task id already known with different content is
    named (its earlier run stands) unless --replace requeues it with the new content.

    Example:

        elastic submit examples/tareas_manuales_ejemplo.json --wait
    """
    from elastic.batch import ServerQueue
    from elastic.transport import Transport

    settings = load_config(config_path, server_url=server_url)
    transport = Transport(settings.server_url, token=settings.token)
    batch = read_task_files(files)
    outcomes = ServerQueue(transport).submit_tasks(batch, replace=replace)
    stdout.print(console.submitted_line(outcomes), highlight=False, markup=False)
    for line in console.changed_content_lines(outcomes, replace=replace):
        stderr.print(line, highlight=False, markup=False)
    if not wait:
        return
    state = _wait_with_progress(transport, batch, settings)
    _print_held(list(state.tasks.values()))
    if not state.all_completed:
        sys.exit(1)


def _print_held(tasks: list[dict[str, Any]]) -> None:
    """Say which tasks are held, why, and how to let them run again."""
    for task in tasks:
        if task["status"] == "held":
            stdout.print(console.held_line(task["task_id"], task["held_reason"], task["error"]),
                         highlight=False, soft_wrap=True)


def _wait_with_progress(transport: Any, tasks: list[NewTask],
                        settings: config.Config) -> BatchState:
    """Show a progress bar until every task ended, is held or was given up on (the reasons
    said); the last state read.

    Ctrl-C stops waiting (exit 130); the tasks stay queued.
    """
    from elastic.batch import follow_batch

    requirements = {task.task_id: Requirement.of(task.type, task.data) for task in tasks}
    try:
        with console.batch_progress() as progress:
            bar = progress.add_task("tasks", total=len(requirements), detail="")
            state = follow_batch(transport, requirements,
                                 grace_seconds=settings.unservable_grace_seconds,
                                 on_round=console.BatchWaitView(progress, bar, stderr))
    except KeyboardInterrupt:
        stderr.print("stopped waiting; the tasks stay queued (elastic status shows them)")
        sys.exit(INTERRUPTED_EXIT_CODE)
    for reason, task_ids in state.given_up_reasons():
        stderr.print(f"error: {len(task_ids)} task(s) cannot run ({console.first_few(task_ids)})"
                     f": {reason}; still queued: start a worker that can run them, or cancel "
                     "them", highlight=False, markup=False, soft_wrap=True)
    return state


@main.command()
@click.argument("path", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("--once", is_flag=True, help="Ingest what is there now and exit.")
@server_option
@click.option("--db", "database_url",
              help="Queue into this existing database instead of through the orchestrator.")
@config_option
@reports_errors
def ingest(path: str | None, once: bool, server_url: str | None, database_url: str | None,
           config_path: str | None) -> None:
    """Queue the JSON batches in task_queues/ through the orchestrator (what serve does
    continuously), or straight into the database given with --db.

    Example:

        elastic ingest task_queues --once
    """
    from elastic import ingest as ingesting

    settings = load_config(config_path, server_url=server_url)
    queue = _task_queue(settings, database_url)
    folder = Path(path) if path else settings.resolve(settings.task_queues_path)
    seen: dict[str, Any] = {}
    while True:
        try:
            report = ingesting.ingest_folder(queue, folder, seen=seen,
                                             max_file_bytes=settings.max_body_bytes)
        except ServerUnreachable as exc:
            if once:
                raise
            stderr.print(f"{exc.message}; trying again", highlight=False, markup=False)
            report = ingesting.IngestReport()
        for line in report.lines():
            stdout.print(line, highlight=False, markup=False)
        if once:
            sys.exit(1 if report.rejected else 0)
        time.sleep(settings.task_distribution_interval_seconds)


def _task_queue(settings: config.Config, database_url: str | None) -> Any:
    """The orchestrator's queue over HTTP, or the existing database ``database_url``;
    says which on stderr."""
    from elastic.batch import ServerQueue
    from elastic.transport import Transport

    if database_url is None:
        stderr.print(f"queueing through the orchestrator at {settings.server_url}",
                     highlight=False, soft_wrap=True)
        return ServerQueue(Transport(settings.server_url, token=settings.token))
    return _open_existing_store(database_url, settings)


def _open_existing_store(database_url: str, settings: config.Config) -> Any:
    """The store of an existing database (never creates one); says which on stderr."""
    from elastic.store import open_store
    from elastic.store.dialects import shown_url

    store = open_store(database_url, max_retries=settings.max_task_retries, create=False)
    stderr.print(f"using the database {shown_url(database_url)}", highlight=False,
                 soft_wrap=True)
    return store


@main.command()
@server_option
@click.option("--watch", is_flag=True, help="Refresh every 2 seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@config_option
@reports_errors
def status(server_url: str | None, watch: bool, as_json: bool, config_path: str | None) -> None:
    """Show workers, tasks by state, success rates and recent failures.

    Example:

        elastic status --watch
    """
    from elastic.transport import Transport

    settings = load_config(config_path, server_url=server_url)
    transport = Transport(settings.server_url, token=settings.token)
    if as_json:
        stdout.print_json(json.dumps(_status_data(transport)))
        return
    if not watch:
        stdout.print(_status_screen(transport))
        return
    try:
        with Live(_status_screen(transport), console=stdout, refresh_per_second=1) as live:
            while True:
                time.sleep(2)
                live.update(_status_screen(transport))
    except KeyboardInterrupt:
        return  # Ctrl-C is how a watch ends


def _status_data(transport: Any) -> dict[str, Any]:
    failures = transport.get("/api/tasks", params={"status": ["failed", "held"],
                                                   "limit": RECENT_FAILURES})
    return {"stats": transport.get("/api/stats"),
            "workers": transport.get("/api/workers/list")["workers"],
            "fleet": transport.get("/api/fleet")["workers"],
            "recent_failures": failures["tasks"]}


def _status_screen(transport: Any) -> Any:
    data = _status_data(transport)
    return console.status_view(data["stats"], data["workers"], data["recent_failures"],
                               fleet=data["fleet"])


@main.group()
def workers() -> None:
    """Manage the orchestrator's worker rows.

    Example:

        elastic workers prune --older-than 7d
    """


@workers.command("prune")
@click.option("--older-than", default="7d", show_default=True,
              help="Silent this long: seconds, or a number with s, m, h or d.")
@server_option
@config_option
@reports_errors
def workers_prune(older_than: str, server_url: str | None, config_path: str | None) -> None:
    """Delete offline or dead workers silent for longer than --older-than.

    Example:

        elastic workers prune --older-than 12h
    """
    from elastic.transport import Transport

    settings = load_config(config_path, server_url=server_url)
    answer = Transport(settings.server_url, token=settings.token).post(
        "/api/workers/prune", {"older_than_seconds": parse_duration_seconds(older_than)})
    for worker_id in answer["pruned"]:
        stdout.print(worker_id, highlight=False)
    stderr.print(f"pruned {answer['total']} worker(s)", highlight=False)


DURATION_UNITS_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_duration_seconds(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``12h`` or ``7d`` in seconds.

    Raises:
        ConfigError: naming the option, for anything else.
    """
    number, unit = (text[:-1], text[-1]) if text[-1:] in DURATION_UNITS_SECONDS else (text, "s")
    try:
        seconds = float(number) * DURATION_UNITS_SECONDS[unit]
    except ValueError:
        raise ConfigError("older-than", "flag", "seconds, or a number with s, m, h or d",
                          text) from None
    if not seconds >= 0:
        raise ConfigError("older-than", "flag", "a duration >= 0", text)
    return seconds


@main.command()
@click.argument("task_id")
@server_option
@config_option
@reports_errors
def cancel(task_id: str, server_url: str | None, config_path: str | None) -> None:
    """Cancel a pending or running task.

    Example:

        elastic cancel sim_001
    """
    from elastic.transport import Transport

    settings = load_config(config_path, server_url=server_url)
    answer = Transport(settings.server_url, token=settings.token).post(
        task_path(task_id, "cancel"))
    stdout.print(f"{answer['task_id']}: {answer['status']}", highlight=False, markup=False)


@main.command()
@click.argument("task_id")
@server_option
@config_option
@reports_errors
def release(task_id: str, server_url: str | None, config_path: str | None) -> None:
    """Let a held task run again: back in the queue with fresh retry and worker-death counts.

    A task is held when its attempts killed workers (a poison task) or failed in a way
    a retry cannot fix (invalid input, a refused API key); fix the cause first.

    Example:

        elastic release sim_001
    """
    from elastic.transport import Transport

    settings = load_config(config_path, server_url=server_url)
    answer = Transport(settings.server_url, token=settings.token).post(
        task_path(task_id, "release-hold"))
    stdout.print(f"{answer['task_id']}: {answer['status']}", highlight=False, markup=False)


@main.command()
@click.argument("task_id", required=False)
@click.option("--failed", "every_failed", is_flag=True, help="Retry every failed task.")
@server_option
@config_option
@reports_errors
def retry(task_id: str | None, every_failed: bool, server_url: str | None,
          config_path: str | None) -> None:
    """Put a failed or cancelled task back in the queue, its attempt history kept.

    Example:

        elastic retry sim_001
        elastic retry --failed
    """
    from elastic.transport import Transport

    if (task_id is None) == (not every_failed):
        raise InvalidInput("give a TASK_ID or --failed (not both)")
    settings = load_config(config_path, server_url=server_url)
    transport = Transport(settings.server_url, token=settings.token)
    task_ids = [task_id] if task_id else _failed_task_ids(transport)
    for one in task_ids:
        answer = transport.post(task_path(one, "retry"))
        stdout.print(f"{escape(answer['task_id'])}: {answer['status']}")
    if not task_ids:
        stdout.print("no failed task")


def _failed_task_ids(transport: Any) -> list[str]:
    """Every failed task's id, read a page at a time (newest first)."""
    found: list[str] = []
    params: dict[str, Any] = {"status": "failed", "limit": TASK_PAGE_LIMIT}
    for _page in range(MAX_TASK_PAGES):
        page = transport.get("/api/tasks", params=params)
        found += [task["task_id"] for task in page["tasks"]]
        if page.get("next") is None:
            break
        params["before"] = page["next"]
    return found


@main.command("tasks")
@click.option("--status", "statuses", multiple=True,
              type=click.Choice([status.value for status in TaskStatus]),
              help="Only tasks in this state (repeatable).")
@click.option("--type", "task_types", multiple=True, type=click.Choice(TASK_TYPES),
              help="Only tasks of this type (repeatable).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True,
              help="Tasks per page.")
@click.option("--before", type=click.IntRange(1), help="The page after this one (its 'next').")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@server_option
@config_option
@reports_errors
def list_tasks(statuses: tuple[str, ...], task_types: tuple[str, ...], limit: int,
               before: int | None, as_json: bool, server_url: str | None,
               config_path: str | None) -> None:
    """List tasks, newest first, a page at a time.

    Example:

        elastic tasks --status failed --type simulation
    """
    from elastic.transport import Transport

    settings = load_config(config_path, server_url=server_url)
    params = {"status": list(statuses), "type": list(task_types), "limit": limit,
              "before": before}
    page = Transport(settings.server_url, token=settings.token).get("/api/tasks", params=params)
    if as_json:
        stdout.print_json(json.dumps(page))
        return
    stdout.print(console.task_list_table(page["tasks"]))
    if page.get("next") is not None:
        stdout.print(f"more: elastic tasks --before {page['next']}")


@main.command("task")
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@server_option
@config_option
@reports_errors
def show_task(task_id: str, as_json: bool, server_url: str | None,
              config_path: str | None) -> None:
    """Show one task: its state, data, result and every attempt.

    Example:

        elastic task sim_001
    """
    from elastic.transport import Transport

    settings = load_config(config_path, server_url=server_url)
    answer = Transport(settings.server_url, token=settings.token).get(task_status_path(task_id))
    if as_json:
        stdout.print_json(json.dumps(answer))
        return
    stdout.print(console.task_detail_view(answer))


@main.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--workers", "workers_per_type", type=click.IntRange(1, 64),
              default=lambda: max(2, os.cpu_count() or 2),
              help="Worker processes per needed type (default: CPU count, at least 2).")
@click.option("--llm-type", type=click.Choice(LLM_WORKER_TYPES), default="deepseek",
              show_default=True, help="Worker type for the batch's tasks that call an LLM.")
@click.option("--db", "database_url", help="Database URL (default sqlite:///elastic.db).")
@click.option("--replace", is_flag=True, help=REPLACE_HELP)
@config_option
@reports_errors
def run(files: tuple[str, ...], workers_per_type: int, llm_type: str, database_url: str | None,
        replace: bool, config_path: str | None) -> None:
    """Run a batch on this machine: a local server, worker processes, a progress bar,
    results/ written and a summary. Exit code 0 only if every task completed; Ctrl-C
    stops everything within seconds (exit 130), and running the same command again
    finishes the batch.

    Example:

        elastic run examples/simulations.json --workers 2
    """
    from elastic import runner

    settings = load_config(config_path, database_url=database_url)
    logging.getLogger().setLevel(max(logging.WARNING, logging.getLogger().level))
    batch = read_task_files(files)
    with console.batch_progress() as progress:
        bar = progress.add_task("batch", total=len(batch), detail="")

        def show(tasks: list[Any]) -> None:
            finished = sum(task.status.is_settled for task in tasks)
            progress.update(bar, completed=finished,
                            detail=console.count_words(t.status.value for t in tasks))

        def show_dashboard(url: str) -> None:
            progress.console.print(f"dashboard: {url}", highlight=False, soft_wrap=True)

        outcome = runner.run_batch(batch, settings, workers_per_type=workers_per_type,
                                   llm_worker_type=llm_type, replace=replace, on_progress=show,
                                   on_serving=show_dashboard)
    _print_batch_outcome(outcome, replace=replace)
    if outcome.interrupted:
        sys.exit(INTERRUPTED_EXIT_CODE)
    sys.exit(0 if outcome.all_completed else 1)


def _print_batch_outcome(outcome: Any, *, replace: bool) -> None:
    """What ``elastic run`` did: known tasks, the summary, held tasks, the results files,
    and, when Ctrl-C cut it short, what went back to the queue."""
    if outcome.already_known:
        stdout.print(f"{outcome.already_known} task(s) were already in the database "
                     "(same task_id): shown as they ended, not run again")
    for line in console.changed_content_lines(outcome.submitted, replace=replace):
        stderr.print(line, highlight=False, markup=False)
    stdout.print(console.summary_table(outcome.tasks))
    for task in outcome.tasks:
        if task.status is TaskStatus.HELD:
            stdout.print(console.held_line(task.task_id, task.held_reason, task.error),
                         highlight=False, soft_wrap=True)
    for path in outcome.results_files:
        stdout.print(f"results written to {path}", highlight=False, markup=False,
                     soft_wrap=True)
    if outcome.interrupted:
        left = sum(not task.status.is_settled for task in outcome.tasks)
        stderr.print(f"interrupted: {left} unfinished task(s) went back to the queue, not "
                     "counted as failures; run the same command again to finish them",
                     highlight=False)


@main.command("new-batch")
@click.option("--algorithm", type=click.Choice(["python", "numpy", "cython"]),
              help="Simulation algorithm (non-interactive when given).")
@click.option("--particles", type=int, help="num_particles.")
@click.option("--steps", type=int, help="num_steps.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the first task.")
@click.option("--priority", default="medium", show_default=True, help="high, medium, low or 1..10.")
@click.option("--description", default="Lote de tareas de simulación", show_default=True,
              help="What the batch is for (metadata.description).")
@click.option("--count", type=click.IntRange(1, 10_000), default=1, show_default=True,
              help="How many tasks (seeds seed, seed+1, ...).")
@click.option("--output", type=click.Path(), help="File or folder (default task_queues/).")
@config_option
@reports_errors
def new_batch(algorithm: str | None, particles: int | None, steps: int | None, seed: int,
              priority: str, description: str, count: int, output: str | None,
              config_path: str | None) -> None:
    """Create a batch of simulation tasks, interactively or from flags.

    Example:

        elastic new-batch --algorithm cython --particles 500 --steps 1000 --count 4
    """
    from elastic import batchgen

    settings = load_config(config_path)
    if algorithm is None:
        document = batchgen.prompt_batch(stdout, click.prompt)
    else:
        if particles is None or steps is None:
            raise ConfigError("particles/steps", "flag", "--particles and --steps with --algorithm")
        document = batchgen.build_batch(
            algorithm=algorithm, num_particles=particles, num_steps=steps, seed=seed,
            priority=priority, description=description, count=count,
            created_by=os.environ.get("USER", "elastic new-batch"))
    path = batchgen.write_batch(document, Path(output) if output
                                else settings.resolve(settings.task_queues_path))
    stdout.print(f"wrote {len(document['tasks'])} task(s) to {path}", highlight=False)


@main.group()
def results() -> None:
    """Results stored in the database.

    Example:

        elastic results export --format csv > results.csv
    """


@results.command("export")
@click.option("--since", help="Only tasks ended at or after this ISO date/time (UTC if no zone).")
@click.option("--format", "fmt", type=click.Choice(["json", "csv"]), default="json",
              show_default=True, help="Output format.")
@server_option
@click.option("--db", "database_url",
              help="Read this existing database instead of asking the orchestrator.")
@config_option
@reports_errors
def results_export(since: str | None, fmt: str, server_url: str | None,
                   database_url: str | None, config_path: str | None) -> None:
    """Write the ended tasks and their results to stdout as JSON or CSV, from the
    orchestrator (or the database given with --db; says which on stderr).

    Example:

        elastic results export --since 2024-07-08 --format csv > results.csv
    """
    from elastic import results as results_module
    from elastic.seed004 import stats_summary
    from elastic.transport import Transport

    settings = load_config(config_path, server_url=server_url)
    moment = _parse_since(since)
    if database_url is not None:
        store = _open_existing_store(database_url, settings)
        entries, stats = results_module.stored_entries(store, since=moment), stats_summary(store)
    else:
        transport = Transport(settings.server_url, token=settings.token)
        stats = transport.get("/stats")
        stderr.print(f"reading from the orchestrator at {settings.server_url}",
                     highlight=False, soft_wrap=True)
        entries = results_module.served_entries(transport, since=moment)
    results_module.write_export(entries, orchestrator_stats=stats["orchestrator_stats"],
                                fmt=fmt, out=sys.stdout)


@results.command("plot")
@click.argument("task_id")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Folder for the PNG files (default plots/<task id>).")
@server_option
@config_option
@reports_errors
def results_plot(task_id: str, out_dir: str | None, server_url: str | None,
                 config_path: str | None) -> None:
    """Draw a simulation's energy, temperature and particles as PNG files.

    Example:

        elastic results plot sim_001 --out pictures/
    """
    from elastic import plots
    from elastic.transport import Transport

    settings = load_config(config_path, server_url=server_url)
    task = Transport(settings.server_url, token=settings.token).get(task_status_path(task_id))
    folder = Path(out_dir) if out_dir else plots.default_folder(task_id)
    try:
        written = plots.write_plots(task.get("result") or {}, folder)
    except ModuleNotFoundError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    for path in written:
        stdout.print(str(path), highlight=False, markup=False)


def _parse_since(since: str | None) -> float | None:
    if since is None:
        return None
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(since)
    except ValueError:
        raise ConfigError("since", "flag", "an ISO date or date-time, e.g. 2024-07-08T14:30",
                          since) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@main.group()
def db() -> None:
    """The database: its schema revision, upgrades, and moving it to PostgreSQL.

    Example:

        elastic db copy sqlite:///elastic.db postgresql://db-host/elastic
    """


@db.command("upgrade")
@click.option("--db", "database_url", help="Database URL (default sqlite:///elastic.db).")
@config_option
@reports_errors
def db_upgrade(database_url: str | None, config_path: str | None) -> None:
    """Create the schema, or upgrade it to this version's newest revision.

    Example:

        elastic db upgrade --db postgresql://db-host/elastic
    """
    from elastic.store import dialects, migrate

    settings = load_config(config_path, database_url=database_url)
    engine = dialects.create_store_engine(settings.database_url)
    try:
        before = migrate.current_revision(engine)
        migrate.upgrade_to_head(engine)
        after = migrate.current_revision(engine)
    finally:
        engine.dispose()
    stdout.print(f"{dialects.shown_url(settings.database_url)}: {before or 'empty'} -> {after}",
                 highlight=False)


@db.command("current")
@click.option("--db", "database_url", help="Database URL (default sqlite:///elastic.db).")
@config_option
@reports_errors
def db_current(database_url: str | None, config_path: str | None) -> None:
    """Show the database's schema revision; exit code 1 when it is behind this version.

    Example:

        elastic db current --db sqlite:///elastic.db
    """
    from elastic.store import dialects, migrate

    settings = load_config(config_path, database_url=database_url)
    engine = dialects.create_store_engine(settings.database_url)
    try:
        current = migrate.current_revision(engine)
    finally:
        engine.dispose()
    head = migrate.head_revision()
    if current == head:
        stdout.print(f"{current} (head)", highlight=False)
        return
    stdout.print(f"{current or 'empty'} (this elastic writes {head}: run elastic db upgrade)",
                 highlight=False)
    sys.exit(1)


@db.command("copy")
@click.argument("source")
@click.argument("target")
@click.option("--live", is_flag=True,
              help="Copy a consistent snapshot of a database a server is using; what it "
                   "writes afterwards is not copied.")
@config_option
@reports_errors
def db_copy(source: str, target: str, live: bool, config_path: str | None) -> None:
    """Copy every table of SOURCE into the empty database TARGET (e.g. SQLite to PostgreSQL).

    Stop `elastic serve` on SOURCE first (else the copy is refused, unless --live),
    copy, then start the servers on TARGET.

    Example:

        elastic db copy sqlite:///elastic.db postgresql://postgres@db-host/elastic
    """
    from elastic.store.copy import copy_database
    from elastic.store.dialects import shown_url
    from elastic.store.lock import hold_database

    load_config(config_path)
    locks = [] if live else [hold_database(source, command="elastic db copy")]
    locks.append(hold_database(target, command="elastic db copy"))
    try:
        report = copy_database(source, target)
    finally:
        for lock in locks:
            if lock is not None:
                lock.release()
    counts = ", ".join(f"{name} {rows}" for name, rows in report.rows.items())
    stdout.print(f"copied {report.total} row(s) to {shown_url(target)}: {counts}",
                 highlight=False)


@main.command()
@click.option("--tasks", "task_count", type=click.IntRange(1, 10_000_000), default=10_000,
              show_default=True, help="No-op tasks pushed through each path.")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Worker processes.")
@click.option("--batch", type=click.IntRange(1, 1024), default=64, show_default=True,
              help="Tasks per poll and results per request on the batch path (1: skip it).")
@click.option("--latency-samples", type=click.IntRange(2, 100_000), default=200,
              show_default=True, help="Tasks submitted one by one for the latencies.")
@click.option("--pending", type=click.IntRange(0, 100_000_000), default=0, show_default=True,
              help="Fill the queue first with this many tasks of other types and priorities.")
@click.option("--idle", "idle_seconds", type=click.FloatRange(0, 3600), default=0.0,
              help="Also measure the idle server's and worker's CPU over this many seconds.")
@click.option("--db", "database_url", help="Database URL (default: a temporary SQLite file).")
@click.option("--compare", type=click.Choice(["huey"]),
              help="Also run Huey's SQLite queue (two consumer processes) and print the ratio.")
@config_option
@reports_errors
def bench(task_count: int, workers: int, batch: int, latency_samples: int, pending: int,
          idle_seconds: float, database_url: str | None, compare: str | None,
          config_path: str | None) -> None:
    """Measure dispatch speed: a server and noop workers on a fresh database, tasks/s on
    both paths, submit-to-start/result latencies, the server's CPU and peak memory.

    Example:

        elastic bench --tasks 20000 --workers 2 --compare huey
    """
    from elastic import bench as benchmark

    load_config(config_path)
    settings = benchmark.BenchSettings(tasks=task_count, workers=workers, batch=batch,
                                       latency_samples=latency_samples, pending=pending,
                                       idle_seconds=idle_seconds, database_url=database_url)
    report = benchmark.run_bench(settings)
    if compare == "huey":
        from elastic.bench_huey import run_huey

        with tempfile.TemporaryDirectory(prefix="elastic-bench-huey-") as folder:
            report.huey = run_huey(task_count, Path(folder))
    for line in report.lines():
        stdout.print(line, highlight=False)
