"""The worker: register, lease, execute, heartbeat, report; hand back on shutdown.

``capacity`` slot threads each long-poll the orchestrator for a task and run it;
a separate heartbeat thread keeps the leases alive (every 0.5 s while a task runs,
so a cancel reaches a running task within a second, else every
``heartbeat_interval_seconds``). It is woken whenever the worker's busy/idle state
changes, so a task started while it slept is heard of at once. Native kernels
release the GIL, so a long computation never starves the heartbeat. ``run_once``
drives one step for tests.

Each heartbeat lists every lease the worker holds (running, or finished with its
result not delivered yet): the orchestrator renews those and takes back any other
(the answer to a poll that never arrived). A result is delivered until the server
takes it or refuses it for good. A task runs at most its time limit: the lease's
``timeout_seconds``, or the worker's ``max_task_seconds`` if smaller. The worker
registers asking for a secret, sends it with every later call, and keeps it in
``secret_path`` so that, restarted, it takes its id back at once.
"""

from __future__ import annotations

import collections
import json
import logging
import random
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elastic.atomic import atomic_write_text
from elastic.errors import (
    BodyTooLarge,
    Conflict,
    ElasticError,
    NotFound,
    ServerUnreachable,
    TaskCancelled,
    Unauthorized,
)
from elastic.executors import EXECUTORS, ExecutionContext, Executor, get_executor
from elastic.tasks import finite_json, time_limit_error
from elastic.transport import WORKER_SECRET_HEADER, Transport, task_path, worker_path

log = logging.getLogger("elastic.worker")

BUSY_HEARTBEAT_SECONDS = 0.5
HISTORY_LENGTH = 100
MAX_BACKOFF_SECONDS = 10.0
SIGNAL_CHECK_SECONDS = 0.2
STOP_GRACE_SECONDS = 1.5  # a stopping worker waits this long for its tasks to hand back
STOP_REQUEST_SECONDS = 1.0  # the unregister of a stopping worker waits no longer for an answer
STOPPING_DELIVERY_SECONDS = STOP_GRACE_SECONDS


@dataclass(frozen=True, kw_only=True)
class WorkerSettings:
    """Who the worker is and how it paces itself."""

    worker_id: str
    worker_type: str
    capacity: int = 1
    batch: int = 1  # tasks leased per poll, their results reported in one request
    capabilities: Mapping[str, Any] = field(default_factory=dict)
    heartbeat_interval_seconds: float = 30.0
    poll_wait_seconds: float = 5.0
    checkpoint_interval_seconds: float = 30.0
    result_delivery_seconds: float = 3600.0
    max_task_seconds: float | None = None  # None: only the task's own time limit
    secret_path: Path | None = None  # where the worker's secret survives a restart


@dataclass
class RunningTask:
    """A task this worker holds: running, or finished and its result being delivered."""

    task_id: str
    task_type: str
    lease_token: int
    context: ExecutionContext
    started_at: float = field(default_factory=time.time)
    progress: float = 0.0
    handing_back: bool = False
    timed_out: bool = False
    delivering: bool = False
    checkpoint_error: str | None = None  # why the server refused a checkpoint (none sent after)

    def is_overdue(self, now: float) -> bool:
        """Whether it still runs past its time limit."""
        limit = self.context.time_limit_seconds
        return not self.delivering and limit is not None and now - self.started_at > limit


def read_secret(path: Path | None) -> str | None:
    """The worker secret kept at ``path`` (None: no path, or nothing kept yet)."""
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def write_secret(path: Path | None, secret: str) -> None:
    """Keep ``secret`` at ``path``, readable by this user only; a failure is only logged
    (the worker keeps it in memory, and a restart waits for its old life to be dead)."""
    if path is None:
        return
    try:
        atomic_write_text(path, secret + "\n", mode=0o600)
    except OSError as exc:
        log.warning("could not keep the worker secret in %s: %s", path, exc)


class WorkerLoop:
    """One worker process's logic, over HTTP to the orchestrator."""

    def __init__(self, transport: Transport, settings: WorkerSettings, *,
                 executors: Mapping[str, Executor] = EXECUTORS, provider: Any = None) -> None:
        self.transport = transport
        self.settings = settings
        self.executors = executors
        self.provider = provider
        self.running: dict[str, RunningTask] = {}
        self.history: collections.deque[dict[str, Any]] = collections.deque(maxlen=HISTORY_LENGTH)
        self.counts = collections.Counter[str]()
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified when a task leaves ``running``
        self._wake_heartbeat = threading.Event()
        self._beat_now = False  # the next heartbeat may not wait out BUSY_HEARTBEAT_SECONDS
        self._sent_info: dict[str, Any] | None = None
        secret = read_secret(settings.secret_path)
        if secret:
            self.transport.headers[WORKER_SECRET_HEADER] = secret

    # -- lifecycle ----------------------------------------------------------------------

    def register(self) -> None:
        """Register with the orchestrator (again, if it forgot us), asking for a secret.

        The secret held from before (memory or ``secret_path``) goes in the header, so
        a restarted worker takes its id back even while its old life still looks alive.

        Raises:
            WorkerIdTaken: (a Conflict) another live worker holds the id with its secret.
        """
        answer = self.transport.post("/api/workers/register", {
            "worker_id": self.settings.worker_id, "worker_type": self.settings.worker_type,
            "capabilities": dict(self.settings.capabilities), "capacity": self.settings.capacity,
            "secret": True})
        secret = answer.get("worker_secret")
        if secret:
            self.transport.headers[WORKER_SECRET_HEADER] = secret
            write_secret(self.settings.secret_path, secret)
        log.info("registered %s (%s, capacity %d)", self.settings.worker_id,
                 self.settings.worker_type, self.settings.capacity)

    def run(self) -> None:
        """Work until ``stopping`` is set, then hand back what is unfinished and unregister.

        Stopping waits at most ``STOP_GRACE_SECONDS`` for running tasks to hand
        themselves back (and results being delivered to arrive), and never for a long
        poll: slot threads are daemons, and a task leased to this worker in the race with
        the stop goes back to the queue with the unregister (not counted as a failure).
        """
        self._check_backend()
        self._register_until_done()
        if not self.stopping.is_set():
            self._work_until_stopped()
        self._unregister()

    def _work_until_stopped(self) -> None:
        threads = [threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)]
        threads += [threading.Thread(target=self._slot_loop, name=f"slot-{n}", daemon=True)
                    for n in range(-(-self.settings.capacity // self.settings.batch))]
        for thread in threads:
            thread.start()
        # Timed waits: a signal the kernel delivered to another thread runs its Python
        # handler only once this main thread wakes up (an untimed wait may never).
        while not self.stopping.wait(SIGNAL_CHECK_SECONDS):
            continue
        self._hand_back_running()

    def stop(self) -> None:
        """Ask the worker to stop: running tasks are handed back, not lost."""
        self.stopping.set()
        self.wake_heartbeat()

    def stop_on_signals(self) -> None:
        """Stop on Ctrl-C (SIGINT) or SIGTERM; call from the main thread.

        The first signal swaps both handlers for a no-op before ``stop`` takes any
        lock: a second signal arriving meanwhile (Ctrl-C reaches a worker of
        ``elastic run`` and its parent's SIGTERM follows) would otherwise run the
        handler again inside the first and deadlock on the lock the first holds.
        """
        def ignore(_signum: int, _frame: object) -> None:
            """Already stopping."""

        def handler(_signum: int, _frame: object) -> None:
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, ignore)
            self.stop()

        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, handler)

    def wake_heartbeat(self) -> None:
        """Send a heartbeat now (the provider's health changed, the worker stops...)."""
        self._beat_now = True
        self._wake_heartbeat.set()

    def _busy_changed(self) -> None:
        """A task ended: heartbeat soon, at most once per BUSY_HEARTBEAT_SECONDS (a worker
        moving thousands of short tasks a second must not send two each), at once when
        the provider's state changed since the last one."""
        if self._info() != self._sent_info:
            self._beat_now = True
        self._wake_heartbeat.set()

    def _info(self) -> dict[str, Any] | None:
        """What heartbeats report besides leases: the provider's state (None: no provider)."""
        if self.provider is None or not hasattr(self.provider, "status"):
            return None
        # A provider's error text may hold what the server's gate refuses (NUL, a lone
        # surrogate): replaced here, or every heartbeat would be refused and we'd "die".
        return finite_json({"provider": self.provider.status()})

    def _hand_back_running(self) -> None:
        """Stop every running task (each hands itself back) and wait a little for them and
        for the results being delivered."""
        with self._idle:
            log.info("stopping: handing back %d running task(s) and unregistering",
                     len(self.running))
            for running in self.running.values():
                if not running.delivering:
                    running.handing_back = True
                    running.context.cancelled.set()
            if not self._idle.wait_for(lambda: not self.running, timeout=STOP_GRACE_SECONDS):
                log.warning("%d task(s) still stopping after %.1f s: the unregister hands "
                            "them back", len(self.running), STOP_GRACE_SECONDS)

    def _unregister(self) -> None:
        try:
            self.transport.post(worker_path(self.settings.worker_id, "unregister"),
                                timeout_seconds=STOP_REQUEST_SECONDS)
        except ElasticError as exc:
            log.warning("could not unregister: %s", exc)

    def _register_until_done(self) -> None:
        """Register, waiting out an unreachable server or a live holder of our id."""
        delay = 0.5
        while not self.stopping.is_set():
            try:
                self.register()
                return
            except (ServerUnreachable, Conflict) as exc:
                log.warning("%s; registering again in %.1f s", exc.message, delay)
                self.stopping.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)

    # -- leasing and executing ----------------------------------------------------------

    def _slot_loop(self) -> None:
        step = self.run_once if self.settings.batch == 1 else self.run_batch_once
        while not self.stopping.is_set():
            try:
                step(wait_seconds=self.settings.poll_wait_seconds)
            except ServerUnreachable as exc:
                log.warning("%s; polling again shortly", exc)
                self._wake_heartbeat.set()  # a lease may have been lost with the answer
                self.stopping.wait(1.0)
            except (NotFound, Unauthorized):
                self._register_until_done()
            except ElasticError as exc:
                log.error("poll failed: %s", exc)
                self.stopping.wait(1.0)

    def run_once(self, *, wait_seconds: float = 0.0) -> bool:
        """Lease one task, run it and report its result; False when there was none."""
        payloads = self._poll(wait_seconds, limit=None)
        for payload in payloads:
            self.execute_and_report(payload)
        return bool(payloads)

    def run_batch_once(self, *, wait_seconds: float = 0.0) -> bool:
        """Lease up to ``batch`` tasks in one poll, run them one after another and report
        their results in one request; False when there was none."""
        payloads = self._poll(wait_seconds, limit=self.settings.batch)
        held = [self._start(payload) for payload in payloads]
        try:
            ended = [(running, self._outcome(payload, running))
                     for payload, running in zip(payloads, held, strict=True)]
            self._deliver_results([(running, result) for running, result in ended
                                   if result is not None])
        finally:
            self._forget(held)
        return bool(payloads)

    def _poll(self, wait_seconds: float, *, limit: int | None) -> list[dict[str, Any]]:
        """Long-poll for up to ``limit`` tasks (None: the seed's one); those leased in the
        race with a stop are given straight back."""
        allowance = self._token_allowance()
        wait_seconds = self._poll_seconds(wait_seconds)
        params: dict[str, Any] = {"wait": wait_seconds}
        if allowance is not None:
            params["max_tokens"] = allowance
        if limit is not None:
            params["limit"] = limit
        answer = self.transport.get(worker_path(self.settings.worker_id, "tasks"), params=params,
                                    timeout_seconds=wait_seconds + 30)
        payloads = answer.get("tasks") if limit is not None else [answer.get("task")]
        payloads = [payload for payload in payloads or [] if payload]
        if not payloads and answer.get("retry_after"):  # the server could not hold the poll
            self.stopping.wait(float(answer["retry_after"]) * (1 + random.random() / 2))
        if self.stopping.is_set():
            for payload in payloads:
                self._release(payload["task_id"], payload["lease_token"])
            return []
        return payloads

    def _token_allowance(self) -> int | None:
        """What the provider's budget lets this worker take now (None: anything).

        A provider cooling down, out of budget or whose backend is down (its breaker
        open; a due health check runs first) gets 0, so the orchestrator hands this
        worker only tasks that need no LLM and LLM tasks flow to other workers.
        """
        breaker = getattr(self.provider, "breaker", None)
        if breaker is not None and not breaker.is_ready(self.provider.health_problem):
            return 0
        limiter = getattr(self.provider, "limiter", None)
        return None if limiter is None else limiter.token_allowance(time.time())

    def _poll_seconds(self, wait_seconds: float) -> float:
        """The long poll's wait, cut short when the backend's next health check is due."""
        breaker = getattr(self.provider, "breaker", None)
        due = None if breaker is None else breaker.seconds_until_probe()
        return wait_seconds if due is None else min(wait_seconds, due)

    def _check_backend(self) -> None:
        """Check the provider's backend at start: if it does not answer, say so and lease
        no LLM task until it does (the breaker opens and logs why)."""
        breaker = getattr(self.provider, "breaker", None)
        if breaker is not None:
            breaker.on_change = self.wake_heartbeat
            breaker.check(self.provider.health_problem)

    def execute_and_report(self, payload: Mapping[str, Any]) -> None:
        """Run one leased task and deliver its result (or hand it back when stopping)."""
        running = self._start(payload)
        try:
            result = self._outcome(payload, running)
            if result is not None:
                self._deliver_result(running, result)
        finally:
            self._forget([running])

    def _outcome(self, payload: Mapping[str, Any], running: RunningTask) -> dict[str, Any] | None:
        """Run a held task to the result to deliver; None when it was handed back or dropped."""
        running.started_at = time.time()  # a task of a batch waits for those before it
        try:
            running.context.check_cancelled()  # stopping, or revoked while it waited
            result = self._execute(payload, running.context)
        except TaskCancelled:
            if not running.timed_out:
                self._after_cancel(running)
                return None
            result = {"success": False, "retryable": True,
                      "error": time_limit_error(running.context.time_limit_seconds or 0)}
        except ElasticError as exc:
            log.info("handing %s back: %s", running.task_id, exc.message)
            running.handing_back = True
            self._after_cancel(running)
            return None
        if running.checkpoint_error is not None:
            result["checkpoint_error"] = running.checkpoint_error
        running.delivering = True
        self._record_history(running, result)
        return result

    def _forget(self, ended: list[RunningTask]) -> None:
        """The tasks are no longer held: delivered, refused or handed back."""
        with self._idle:
            for running in ended:
                self.running.pop(running.task_id, None)
            self._idle.notify_all()
        self._busy_changed()

    def _start(self, payload: Mapping[str, Any]) -> RunningTask:
        context = ExecutionContext(
            task_id=payload["task_id"], resume_from=payload.get("checkpoint"),
            provider=self.provider,
            checkpoint_interval_seconds=self.settings.checkpoint_interval_seconds,
            time_limit_seconds=self._time_limit(payload.get("timeout_seconds")))
        running = RunningTask(task_id=payload["task_id"], task_type=payload["type"],
                              lease_token=payload["lease_token"], context=context)
        context.on_progress = lambda fraction: setattr(running, "progress", fraction)
        context.on_checkpoint = lambda state: self._save_checkpoint(running, state)
        with self._lock:
            self.running[running.task_id] = running
        # At once: a beat that left before this lease must not be the last word on it (a
        # worker dying now is then declared dead, not its lease expired).
        self.wake_heartbeat()
        log.debug("running %s (%s, attempt %s)", running.task_id, running.task_type,
                  payload.get("attempt"))
        return running

    def _time_limit(self, task_seconds: object) -> float | None:
        """The smaller of the lease's ``timeout_seconds`` and this worker's ``max_task_seconds``."""
        limits = [limit for limit in (task_seconds, self.settings.max_task_seconds)
                  if isinstance(limit, int | float) and not isinstance(limit, bool) and limit > 0]
        return float(min(limits)) if limits else None

    def _execute(self, payload: Mapping[str, Any], context: ExecutionContext) -> dict[str, Any]:
        try:
            executor = self.executors.get(payload["type"]) or get_executor(payload["type"])
            params = executor.validate(payload.get("data") or {})
            result = executor.run(params, context)
        except TaskCancelled:
            raise
        except ElasticError as exc:
            if exc.hand_back:
                raise
            failure = {"success": False, "error": exc.message, "retryable": exc.retryable}
            return failure if exc.retryable else {**failure, "reason": exc.held_reason}
        except Exception as exc:
            log.exception("task %s raised", payload["task_id"])
            return {"success": False, "error": f"{type(exc).__name__}: {exc}", "retryable": True}
        return {"success": True, **result}

    def _after_cancel(self, running: RunningTask) -> None:
        if not running.handing_back:
            log.info("task %s was cancelled or re-leased; dropped", running.task_id)
            return
        self._release(running.task_id, running.lease_token)

    def _release(self, task_id: str, lease_token: int) -> None:
        """Hand a leased task back unfinished (requeued, not counted as a failure)."""
        try:
            self.transport.post(task_path(task_id, "release"), {
                "worker_id": self.settings.worker_id, "lease_token": lease_token})
            log.info("handed back %s", task_id)
        except Conflict as exc:  # cancelled, or already back in the queue (unregistered)
            log.info("%s needs no handing back: %s", task_id, exc.message)
        except ElasticError as exc:
            log.warning("could not hand back %s (no longer listed in heartbeats, it goes back "
                        "to the queue shortly): %s", task_id, exc)

    def _save_checkpoint(self, running: RunningTask, state: dict[str, Any]) -> None:
        """Send a checkpoint. A lost lease stops the task; a server failing for now (5xx,
        its disk full) gets the next one; any other refusal (too large, say) is logged and
        said in the result (``checkpoint_error``), and the task runs on without."""
        if running.checkpoint_error is not None:
            return
        try:
            self.transport.post(task_path(running.task_id, "checkpoint"), {
                "worker_id": self.settings.worker_id, "lease_token": running.lease_token,
                "checkpoint": state, "progress": running.progress})
        except (Conflict, NotFound):  # cancelled or re-leased: the task is not ours any more
            running.context.cancelled.set()
        except ElasticError as exc:
            if is_worth_retrying(exc):  # unreachable or failing for now: the next one may do
                log.warning("checkpoint of %s not saved: %s", running.task_id, exc.message)
                return
            running.checkpoint_error = f"checkpoint refused by the orchestrator: {exc.message}"
            log.warning("checkpoint of %s refused (%s): it runs on without checkpoints",
                        running.task_id, exc.message)

    def _deliver_result(self, running: RunningTask, result: dict[str, Any]) -> None:
        """Report until the server takes it or refuses it for good: never dropped silently.

        Unreachable, 5xx (507: its disk is full) are tried again with backoff for up to
        ``result_delivery_seconds``; a result over the server's body limit (413) is
        replaced by a failure that says so; a 409 (the lease is not current) ends it.
        The task stays listed in heartbeats meanwhile, so its lease stays renewed.
        """
        body = {"worker_id": self.settings.worker_id, "lease_token": running.lease_token,
                "result": finite_json(result)}
        deadline = time.monotonic() + self.settings.result_delivery_seconds
        delay = 0.5
        while True:
            try:
                self.transport.post(task_path(running.task_id, "result"), body)
                self.counts["completed" if body["result"].get("success") else "failed"] += 1
                return
            except BodyTooLarge as exc:
                if body["result"].get("reason") != "result_too_large":
                    body = {**body, "result": too_large_failure(body, exc)}
                    continue
                error: ElasticError = exc
            except ElasticError as exc:
                error = exc
            if self.stopping.is_set():
                deadline = min(deadline, time.monotonic() + STOPPING_DELIVERY_SECONDS)
            if not is_worth_retrying(error) or time.monotonic() > deadline:
                log.error("result of %s not delivered: %s", running.task_id, error.message)
                self.counts["refused"] += 1
                return
            log.warning("result of %s not delivered (%s); retrying in %.1f s",
                        running.task_id, error.message, delay)
            time.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)

    def _deliver_results(self, ended: list[tuple[RunningTask, dict[str, Any]]]) -> None:
        """Report several results in one request (``POST /api/workers/<id>/results``),
        retried like one result; each is answered on its own (a stale lease refused
        alone). A request over the server's body limit is sent one result at a time."""
        if not ended:
            return
        items = [{"task_id": running.task_id, "lease_token": running.lease_token,
                  "result": finite_json(result)} for running, result in ended]
        deadline = time.monotonic() + self.settings.result_delivery_seconds
        delay = 0.5
        while True:
            try:
                answer = self.transport.post(worker_path(self.settings.worker_id, "results"),
                                             {"results": items})
                break
            except BodyTooLarge:
                for running, result in ended:
                    self._deliver_result(running, result)
                return
            except ElasticError as exc:
                if self.stopping.is_set():
                    deadline = min(deadline, time.monotonic() + STOPPING_DELIVERY_SECONDS)
                if not is_worth_retrying(exc) or time.monotonic() > deadline:
                    log.error("%d results not delivered: %s", len(items), exc.message)
                    self.counts["refused"] += len(items)
                    return
                log.warning("%d results not delivered (%s); retrying in %.1f s",
                            len(items), exc.message, delay)
            time.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)
        self._count_answers(items, answer.get("results", []))

    def _count_answers(self, items: list[dict[str, Any]], answers: list[dict[str, Any]]) -> None:
        for item, answer in zip(items, answers, strict=False):
            if answer.get("status") != "received":
                log.error("result of %s not accepted: %s", item["task_id"], answer.get("error"))
                self.counts["refused"] += 1
            else:
                self.counts["completed" if item["result"].get("success") else "failed"] += 1

    def _record_history(self, running: RunningTask, result: Mapping[str, Any]) -> None:
        ended = time.time()
        self.history.appendleft({
            "task_id": running.task_id, "type": running.task_type,
            "status": "completed" if result.get("success") else "failed",
            "error": result.get("error"), "started_at": running.started_at, "ended_at": ended,
            "execution_time": ended - running.started_at})

    # -- heartbeats -----------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        failures = 0
        while not self.stopping.is_set():
            try:
                self.send_heartbeat()
                failures = 0
            except ServerUnreachable as exc:
                log.warning("heartbeat not delivered: %s", exc)
                failures += 1
            except (NotFound, Unauthorized):
                self._register_until_done()
            except ElasticError as exc:
                log.error("heartbeat refused: %s", exc)
            self._stop_overdue_tasks()
            pause = self.settings.heartbeat_interval_seconds
            if self.running:
                pause = min(pause, BUSY_HEARTBEAT_SECONDS)
            if failures:  # try again soon: the server may be back and our leases at stake
                pause = min(pause, 0.5 * 2 ** min(failures, 5))
            sent = time.monotonic()
            self._wake_heartbeat.wait(pause)
            self._wake_heartbeat.clear()
            rest = sent + BUSY_HEARTBEAT_SECONDS - time.monotonic()
            if rest > 0 and not failures and not self._beat_now:  # see _busy_changed
                self.stopping.wait(rest)
            self._beat_now = False

    def _stop_overdue_tasks(self) -> None:
        """Cancel the tasks running past their time limit (they report a failure saying so)."""
        now = time.time()
        with self._lock:
            for running in self.running.values():
                if running.is_overdue(now) and not running.timed_out:
                    log.warning("task %s ran past its time limit of %g s: stopping it",
                                running.task_id, running.context.time_limit_seconds)
                    running.timed_out = True
                    running.context.cancelled.set()

    def send_heartbeat(self) -> list[str]:
        """Report liveness, progress and every lease held; stop the tasks revoked."""
        with self._lock:
            running = {r.task_id: {"lease_token": r.lease_token, "progress": r.progress}
                       for r in self.running.values()}
        body: dict[str, Any] = {"tasks": running}
        info = self._info()
        if info is not None:
            body["info"] = self._sent_info = info
        answer = self.transport.post(worker_path(self.settings.worker_id, "heartbeat"), body)
        revoked = answer.get("revoked", [])
        with self._lock:
            for task_id in revoked:
                if task_id in self.running:
                    log.info("task %s revoked by the orchestrator: stopping it", task_id)
                    self.running[task_id].context.cancelled.set()
        return revoked

    def status(self) -> dict[str, Any]:
        """This worker's state, for its own /status endpoint."""
        with self._lock:
            running = [{"task_id": r.task_id, "type": r.task_type, "progress": r.progress,
                        "running_seconds": time.time() - r.started_at}
                       for r in self.running.values()]
        return {"worker_id": self.settings.worker_id, "worker_type": self.settings.worker_type,
                "capacity": self.settings.capacity, "running": running,
                "stopping": self.stopping.is_set(), "counts": dict(self.counts)}


def is_worth_retrying(error: ElasticError) -> bool:
    """Whether delivering again could succeed: the server unreachable, or failing (5xx,
    507 while its disk is full). A 4xx answer will not change."""
    return isinstance(error, ServerUnreachable) or error.http_status >= 500


def too_large_failure(body: Mapping[str, Any], error: ElasticError) -> dict[str, Any]:
    """The failure to report instead of a result the server refused as too large."""
    size = len(json.dumps(body).encode())
    return {"success": False, "retryable": False, "reason": "result_too_large",
            "error": f"the result of {size} bytes was refused as too large: {error.message}"}
