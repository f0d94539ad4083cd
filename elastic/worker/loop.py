"""The worker: register, lease, execute, heartbeat, report; hand back on shutdown.

``capacity`` slot threads each long-poll the orchestrator for a task and run it;
a separate heartbeat thread keeps the leases alive (every 0.5 s while a task runs,
so a cancel reaches a running task within a second, else every
``heartbeat_interval_seconds``). Native kernels release the GIL, so a long
computation never starves the heartbeat. ``run_once`` drives one step for tests.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from elastic.errors import ElasticError, NotFound, ServerUnreachable, TaskCancelled
from elastic.executors import EXECUTORS, ExecutionContext, Executor, get_executor
from elastic.tasks import finite_json
from elastic.transport import Transport, task_path, worker_path

log = logging.getLogger("elastic.worker")

BUSY_HEARTBEAT_SECONDS = 0.5
HISTORY_LENGTH = 100
MAX_BACKOFF_SECONDS = 10.0
STOPPING_DELIVERY_SECONDS = 10.0


@dataclass(frozen=True, kw_only=True)
class WorkerSettings:
    """Who the worker is and how it paces itself."""

    worker_id: str
    worker_type: str
    capacity: int = 1
    capabilities: Mapping[str, Any] = field(default_factory=dict)
    heartbeat_interval_seconds: float = 30.0
    poll_wait_seconds: float = 5.0
    checkpoint_interval_seconds: float = 30.0
    result_delivery_seconds: float = 3600.0


@dataclass
class RunningTask:
    """A task this worker is executing."""

    task_id: str
    task_type: str
    lease_token: int
    context: ExecutionContext
    started_at: float = field(default_factory=time.time)
    progress: float = 0.0
    handing_back: bool = False


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

    # -- lifecycle ----------------------------------------------------------------------

    def register(self) -> None:
        """Register with the orchestrator (again, if it forgot us)."""
        self.transport.post("/api/workers/register", {
            "worker_id": self.settings.worker_id, "worker_type": self.settings.worker_type,
            "capabilities": dict(self.settings.capabilities), "capacity": self.settings.capacity})
        log.info("registered %s (%s, capacity %d)", self.settings.worker_id,
                 self.settings.worker_type, self.settings.capacity)

    def run(self) -> None:
        """Work until ``stopping`` is set, then hand back what is unfinished and unregister."""
        self._until_reachable(self.register)
        threads = [threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)]
        threads += [threading.Thread(target=self._slot_loop, name=f"slot-{n}", daemon=True)
                    for n in range(self.settings.capacity)]
        for thread in threads:
            thread.start()
        self.stopping.wait()
        self._cancel_running()
        for thread in threads[1:]:
            thread.join()
        self._unregister()

    def stop(self) -> None:
        """Ask the worker to stop: running tasks are handed back, not lost."""
        self.stopping.set()

    def _cancel_running(self) -> None:
        with self._lock:
            for running in self.running.values():
                running.handing_back = True
                running.context.cancelled.set()

    def _unregister(self) -> None:
        try:
            self.transport.post(worker_path(self.settings.worker_id, "unregister"))
        except ElasticError as exc:
            log.warning("could not unregister: %s", exc)

    def _until_reachable(self, action: Any) -> Any:
        delay = 0.5
        while not self.stopping.is_set():
            try:
                return action()
            except ServerUnreachable as exc:
                log.warning("%s; retrying in %.1f s", exc, delay)
                self.stopping.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)
        return None

    # -- leasing and executing ----------------------------------------------------------

    def _slot_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.run_once(wait_seconds=self.settings.poll_wait_seconds)
            except ServerUnreachable as exc:
                log.warning("%s; polling again shortly", exc)
                self.stopping.wait(1.0)
            except NotFound:
                self._until_reachable(self.register)
            except ElasticError as exc:
                log.error("poll failed: %s", exc)
                self.stopping.wait(1.0)

    def run_once(self, *, wait_seconds: float = 0.0) -> bool:
        """Lease one task, run it and report its result; False when there was none."""
        params: dict[str, Any] = {"wait": wait_seconds}
        allowance = self._token_allowance()
        if allowance is not None:
            params["max_tokens"] = allowance
        answer = self.transport.get(worker_path(self.settings.worker_id, "tasks"), params=params,
                                    timeout_seconds=wait_seconds + 30)
        payload = answer.get("task")
        if not payload:
            return False
        self.execute_and_report(payload)
        return True

    def _token_allowance(self) -> int | None:
        """What the provider's budget lets this worker take now (None: anything).

        A provider cooling down or out of budget gets 0, so the orchestrator hands
        this worker only tasks that need no LLM and LLM tasks flow to other workers.
        """
        limiter = getattr(self.provider, "limiter", None)
        return None if limiter is None else limiter.token_allowance(time.time())

    def execute_and_report(self, payload: Mapping[str, Any]) -> None:
        """Run one leased task and deliver its result (or hand it back when stopping)."""
        running = self._start(payload)
        try:
            result = self._execute(payload, running.context)
        except TaskCancelled:
            self._after_cancel(running)
            return
        except ElasticError as exc:
            log.info("handing %s back: %s", running.task_id, exc.message)
            running.handing_back = True
            self._after_cancel(running)
            return
        finally:
            with self._lock:
                self.running.pop(running.task_id, None)
        self._record_history(running, result)
        self._deliver_result(running, result)

    def _start(self, payload: Mapping[str, Any]) -> RunningTask:
        context = ExecutionContext(
            task_id=payload["task_id"], resume_from=payload.get("checkpoint"),
            provider=self.provider,
            checkpoint_interval_seconds=self.settings.checkpoint_interval_seconds)
        running = RunningTask(task_id=payload["task_id"], task_type=payload["type"],
                              lease_token=payload["lease_token"], context=context)
        context.on_progress = lambda fraction: setattr(running, "progress", fraction)
        context.on_checkpoint = lambda state: self._save_checkpoint(running, state)
        with self._lock:
            self.running[running.task_id] = running
        log.info("running %s (%s, attempt %s)", running.task_id, running.task_type,
                 payload.get("attempt"))
        return running

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
            return {"success": False, "error": exc.message, "retryable": exc.retryable}
        except Exception as exc:
            log.exception("task %s raised", payload["task_id"])
            return {"success": False, "error": f"{type(exc).__name__}: {exc}", "retryable": True}
        return {"success": True, **result}

    def _after_cancel(self, running: RunningTask) -> None:
        if not running.handing_back:
            log.info("task %s was cancelled or re-leased; dropped", running.task_id)
            return
        try:
            self.transport.post(task_path(running.task_id, "release"), {
                "worker_id": self.settings.worker_id, "lease_token": running.lease_token})
            log.info("handed back %s", running.task_id)
        except ElasticError as exc:
            log.warning("could not hand back %s (its lease will expire): %s", running.task_id, exc)

    def _save_checkpoint(self, running: RunningTask, state: dict[str, Any]) -> None:
        try:
            self.transport.post(task_path(running.task_id, "checkpoint"), {
                "worker_id": self.settings.worker_id, "lease_token": running.lease_token,
                "checkpoint": state, "progress": running.progress})
        except ServerUnreachable as exc:
            log.warning("checkpoint of %s not saved: %s", running.task_id, exc)
        except ElasticError:
            running.context.cancelled.set()

    def _deliver_result(self, running: RunningTask, result: dict[str, Any]) -> None:
        """Report until the server answers: a result is never dropped for a network error."""
        body = {"worker_id": self.settings.worker_id, "lease_token": running.lease_token,
                "result": finite_json(result)}
        deadline = time.monotonic() + self.settings.result_delivery_seconds
        delay = 0.5
        while True:
            try:
                self.transport.post(task_path(running.task_id, "result"), body)
                self.counts["completed" if result.get("success") else "failed"] += 1
                return
            except ServerUnreachable as exc:
                if self.stopping.is_set():
                    deadline = min(deadline, time.monotonic() + STOPPING_DELIVERY_SECONDS)
                if time.monotonic() > deadline:
                    log.error("gave up delivering the result of %s (its lease will expire "
                              "and it will run again): %s", running.task_id, exc)
                    return
                log.warning("result of %s not delivered (%s); retrying in %.1f s",
                            running.task_id, exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)
            except ElasticError as exc:
                log.warning("result of %s refused: %s", running.task_id, exc)
                self.counts["refused"] += 1
                return

    def _record_history(self, running: RunningTask, result: Mapping[str, Any]) -> None:
        ended = time.time()
        self.history.appendleft({
            "task_id": running.task_id, "type": running.task_type,
            "status": "completed" if result.get("success") else "failed",
            "error": result.get("error"), "started_at": running.started_at, "ended_at": ended,
            "execution_time": ended - running.started_at})

    # -- heartbeats -----------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.send_heartbeat()
            except ServerUnreachable as exc:
                log.warning("heartbeat not delivered: %s", exc)
            except NotFound:
                self._until_reachable(self.register)
            except ElasticError as exc:
                log.error("heartbeat refused: %s", exc)
            busy = bool(self.running)
            self.stopping.wait(min(self.settings.heartbeat_interval_seconds,
                                   BUSY_HEARTBEAT_SECONDS) if busy
                               else self.settings.heartbeat_interval_seconds)

    def send_heartbeat(self) -> list[str]:
        """Report liveness and progress; stop the tasks the orchestrator revoked."""
        with self._lock:
            running = {r.task_id: {"lease_token": r.lease_token, "progress": r.progress}
                       for r in self.running.values()}
        body: dict[str, Any] = {"tasks": running}
        if self.provider is not None and hasattr(self.provider, "status"):
            body["info"] = {"provider": self.provider.status()}
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
