"""``elastic run``: a local orchestrator, worker processes and one batch, all at once.

The same pieces as ``serve`` + ``worker`` + ``submit``: the orchestrator runs in a
thread of this process on a free loopback port, the workers are real processes
talking HTTP to it, and the batch is queued through the same store call. Task ids
are stable (given, or derived from the file), so running a file again after an
interruption finishes what was left instead of starting over.

Ctrl-C stops it all within a few seconds: the workers hand their tasks back (not
counted as failures), any worker still holding one after ``WORKER_STOP_SECONDS`` is
unregistered by this process (which hands its tasks back too), the last results
file is written, and the outcome says the batch was interrupted.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from elastic.config import Config
from elastic.errors import ElasticError, WorkerNotFound
from elastic.server.serve import Orchestrator
from elastic.tasks import NewTask, Requirement, SubmitOutcome, Task, TaskStatus, Worker
from elastic.worker_types import worker_type_for

WORKER_STOP_SECONDS = 2.5
WORKER_REGISTER_SECONDS = 60.0
PR_SET_PDEATHSIG = 1
REFRESHES_PER_SECOND = 5


@dataclass(frozen=True)
class BatchOutcome:
    """How a batch ended: its tasks as they ended and the results file written."""

    tasks: list[Task]
    results_files: list[Path]
    submitted: list[SubmitOutcome]
    interrupted: bool = False

    @property
    def already_known(self) -> int:
        """How many of the batch's task ids were in the database already."""
        return sum(not outcome.created for outcome in self.submitted)

    @property
    def all_completed(self) -> bool:
        """Whether every task of the batch completed."""
        return all(task.status is TaskStatus.COMPLETED for task in self.tasks)


def worker_types_for(batch: Sequence[NewTask], *, llm_worker_type: str) -> list[str]:
    """The worker types a batch needs, in a stable order.

    Raises:
        ConfigError: ``llm_worker_type`` cannot run one of the tasks (see
            ``worker_types.worker_type_for``); checked before anything starts.
    """
    needed = [worker_type_for(task, llm_worker_type=llm_worker_type) for task in batch]
    return list(dict.fromkeys(needed))


def check_workers_can_start(worker_types: Sequence[str], config: Config) -> None:
    """Open each LLM type's provider here first, so that a missing API key or SDK stops
    the run at once with one line (exit 2), not in every worker's log after the start.

    Raises:
        MissingApiKey, MissingSdk: naming the variable to set or the extra to install.
    """
    from elastic.worker.presets import worker_provider

    for worker_type in worker_types:
        worker_provider(worker_type, config)


def start_workers(server_url: str, worker_types: Sequence[str], *, per_type: int,
                  config: Config, log_folder: Path,
                  processes: dict[str, subprocess.Popen[bytes]]) -> None:
    """Start ``per_type`` worker processes of each type, logging to ``log_folder``.

    Each process is added to ``processes`` under the worker id it registers with as
    soon as it starts (so an interrupt half-way still stops those started).
    """
    log_folder.mkdir(parents=True, exist_ok=True)
    for worker_type in worker_types:
        for number in range(1, per_type + 1):
            worker_id = f"run-{worker_type}-{number}"
            command = [sys.executable, "-m", "elastic", "worker", "--server", server_url,
                       "--type", worker_type, "--id", worker_id]
            if Path(config.config_path).exists():
                command += ["--config", config.config_path]
            with (log_folder / f"{worker_id}.log").open("ab") as log_file:
                processes[worker_id] = subprocess.Popen(
                    command, stdout=log_file, stderr=subprocess.STDOUT,
                    env={**os.environ, "ELASTIC_SERVER": server_url}, preexec_fn=prepare_worker_process)


def prepare_worker_process() -> None:
    """In a worker process, before it runs: Ctrl-C is left to the parent until the worker
    has its own handler (so one arriving while it starts shows no traceback: the parent
    stops it with SIGTERM), and SIGTERM comes when the parent dies, even by kill -9
    (Linux only; without it, workers of a killed ``elastic run`` would poll a dead
    server forever)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def run_batch(batch: Sequence[NewTask], config: Config, *, workers_per_type: int,
              llm_worker_type: str = "deepseek", replace: bool = False,
              on_progress: Callable[[list[Task]], None] = lambda tasks: None,
              on_serving: Callable[[str], None] = lambda dashboard_url: None) -> BatchOutcome:
    """Serve, start workers, queue ``batch`` (``replace``: see ``Store.submit_tasks``) and
    wait until every task of it has ended (or is held), or Ctrl-C: then everything stops
    and the outcome says ``interrupted``. ``on_serving`` gets the dashboard's address
    once the local server answers.

    Raises:
        ConfigError: ``llm_worker_type`` cannot run a task of the batch, or
            ``MissingApiKey``/``MissingSdk`` for its provider (before anything is queued
            or started).
    """
    worker_types = worker_types_for(batch, llm_worker_type=llm_worker_type)
    check_workers_can_start(worker_types, config)
    local = dataclasses.replace(config, host="127.0.0.1", port=0)
    orchestrator = Orchestrator(local, watch_folder=False, command="elastic run")
    orchestrator.start_in_thread()
    on_serving(orchestrator.dashboard_url)
    started_at = time.time()
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        outcomes = orchestrator.store.submit_tasks(batch, replace=replace)
        ids = [outcome.task_id for outcome in outcomes]
        try:
            interrupted = work_until_ended(orchestrator, ids, worker_types, local,
                                           per_type=workers_per_type, processes=processes,
                                           since=started_at, on_progress=on_progress)
        finally:
            with ctrl_c_ignored():
                stop_workers(orchestrator, processes)
        tasks = orchestrator.store.list_tasks(task_ids=ids)
    finally:
        with ctrl_c_ignored():
            orchestrator.stop()
    return BatchOutcome(tasks=tasks, results_files=orchestrator.results_files,
                        submitted=outcomes,
                        interrupted=interrupted)


def work_until_ended(orchestrator: Orchestrator, task_ids: Sequence[str],
                     worker_types: Sequence[str], config: Config, *, per_type: int,
                     processes: dict[str, subprocess.Popen[bytes]], since: float,
                     on_progress: Callable[[list[Task]], None]) -> bool:
    """Start the workers (into ``processes``) and wait until every task has ended.

    Returns:
        Whether Ctrl-C cut it short.
    """
    try:
        start_workers(orchestrator.url, worker_types, per_type=per_type, config=config,
                      log_folder=config.resolve("logs"), processes=processes)
        workers = wait_for_registration(orchestrator, processes, since=since)
        refuse_work_nobody_here_can_run(orchestrator.store.list_tasks(task_ids=task_ids),
                                        workers)
        wait_for_tasks(orchestrator, task_ids, on_progress=on_progress,
                       processes=list(processes.values()))
    except KeyboardInterrupt:
        return True
    return False


@contextlib.contextmanager
def ctrl_c_ignored() -> Iterator[None]:
    """Let a second Ctrl-C not cut the (few seconds of) stopping short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def stop_workers(orchestrator: Orchestrator,
                 processes: Mapping[str, subprocess.Popen[bytes]]) -> None:
    """Ask the workers to stop (SIGTERM: they hand back and unregister), kill those still
    running after ``WORKER_STOP_SECONDS``, and unregister every one of them here, so a
    task held by a killed worker goes back to the queue too (not counted as a failure)."""
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + WORKER_STOP_SECONDS
    for process in processes.values():
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for worker_id in processes:
        try:
            orchestrator.store.unregister_worker(worker_id)
        except WorkerNotFound:
            continue


def wait_for_registration(orchestrator: Orchestrator,
                          processes: Mapping[str, subprocess.Popen[bytes]], *,
                          since: float) -> list[Worker]:
    """Wait until each started worker has registered (since ``since``) or exited.

    Returns:
        The workers of ``processes`` that registered.

    Raises:
        ElasticError: none registered within ``WORKER_REGISTER_SECONDS``.
    """
    store = orchestrator.store
    deadline = time.monotonic() + WORKER_REGISTER_SECONDS
    while True:
        seen = store.changes.version
        ours = [worker for worker in store.list_workers()
                if worker.worker_id in processes and worker.registered_at >= since
                and worker.is_live]
        waiting = [worker_id for worker_id, process in processes.items()
                   if process.poll() is None and worker_id not in {w.worker_id for w in ours}]
        if not waiting or time.monotonic() > deadline:
            if not ours:
                raise ElasticError("no worker process registered; see the logs/ folder")
            return ours
        store.changes.wait_for_change(seen, 0.2)


def refuse_work_nobody_here_can_run(tasks: Sequence[Task], workers: Sequence[Worker]) -> None:
    """Stop at once when some of the batch's unfinished tasks need what no worker here offers.

    Raises:
        ElasticError: naming each missing type, algorithm or model and how many tasks need it.
    """
    reasons = Counter(Requirement.of(task.type, task.data).unmet_reason(workers)
                      for task in tasks if not task.status.is_settled)
    reasons.pop(None, None)
    if not reasons:
        return
    found = "; ".join(f"{count} task(s): {reason}{_how_to_offer(reason)}"
                      for reason, count in reasons.items())
    raise ElasticError(f"the batch cannot finish on this machine: {found}")


def _how_to_offer(reason: str | None) -> str:
    """A hint for the one missing capability a user can add by rebuilding: the Cython kernel."""
    from elastic import kernels

    if reason and "'cython'" in reason and "cython" not in kernels.available_algorithms():
        return f" (the compiled kernel is not built: {kernels.BUILD_HINT})"
    return ""


def wait_for_tasks(orchestrator: Orchestrator, task_ids: Sequence[str], *,
                   on_progress: Callable[[list[Task]], None],
                   processes: Sequence[subprocess.Popen[bytes]]) -> list[Task]:
    """Wait (woken by changes in the store) until every task has ended or is held (a held
    task will not finish by itself: the summary says why).

    The batch is re-read at most ``REFRESHES_PER_SECOND`` times a second: a fast batch
    ends thousands of tasks a second, and re-reading it after each would cost N² rows.

    Raises:
        ElasticError: every worker process exited while tasks were left.
    """
    store = orchestrator.store
    while True:
        seen = store.changes.version
        refreshed_at = time.monotonic()
        tasks = store.list_tasks(task_ids=task_ids)
        on_progress(tasks)
        if all(task.status.is_settled for task in tasks):
            return tasks
        if processes and all(process.poll() is not None for process in processes):
            raise ElasticError("every worker process exited before the batch ended; "
                               "see the logs/ folder")
        store.changes.wait_for_change(seen, 1.0)
        time.sleep(max(0.0, refreshed_at + 1 / REFRESHES_PER_SECOND - time.monotonic()))
