"""``elastic worker --processes MIN:MAX``: a supervised, autoscaling pool of worker processes.

The supervisor runs no task itself. Every ``POOL_CHECK_SECONDS`` it asks the
orchestrator how many pending tasks its children could lease
(``GET /api/queue/servable``) and which of its children hold leases
(``GET /api/workers/list``), then:

- **grows** by as many children as the backlog needs beyond the idle ones (a child
  still starting counts as idle), up to its limit;
- **shrinks** by stopping (SIGTERM: it hands back what it holds and unregisters) a
  child that has had nothing to do for ``pool_idle_seconds``, while more than MIN run;
- **restarts** a child that exited without being asked, after a backoff (0.5 s,
  doubling); a slot that crashed ``CRASH_LIMIT`` times within ``CRASH_WINDOW_SECONDS``
  is a crash loop: it is not restarted again (nor replaced), and the pool says so (and
  exits 1 once every slot it started is one);
- on SIGTERM or Ctrl-C **drains**: every child is asked to stop and hands its running
  tasks back; one still running after ``DRAIN_SECONDS`` is killed, and the server
  requeues its tasks when its lease runs out. Nothing is lost.

Each child is ``elastic worker --slot N`` with the pool's other flags, so its id
``<type>-<host>-<N>`` is stable: a restarted child takes its row (and its secret)
back, and the tasks its dead life held go back to the queue at once.

The limit is MAX, but never more simulation or evolution processes (times their
``--capacity``) than this machine has cores, nor more simulation processes than its
available memory holds at ``memory_limit_mb`` each. LLM children wait on their
provider, not on a core: their limit is MAX, capped by the provider's
``requests_per_minute`` when it has one.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from elastic.config import Config
from elastic.errors import ConfigError, ElasticError
from elastic.transport import Transport
from elastic.worker.slots import default_worker_id
from elastic.worker_types import get_worker_type

log = logging.getLogger("elastic.pool")

POOL_CHECK_SECONDS = 1.0
CRASH_LIMIT = 5
CRASH_WINDOW_SECONDS = 60.0
FIRST_RESTART_DELAY_SECONDS = 0.5
MAX_RESTART_DELAY_SECONDS = 30.0
DRAIN_SECONDS = 30.0
CRASH_LOOP_EXIT_CODE = 1


@dataclass(frozen=True, kw_only=True)
class PoolSettings:
    """What the pool runs and how far it may grow."""

    worker_type: str
    min_processes: int
    max_processes: int
    idle_seconds: float
    capabilities: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Child:
    """One worker process of the pool, in its slot."""

    slot: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    busy_at: float = 0.0  # the last time it held a task or the backlog needed it
    registered: bool = False
    stopping: bool = False
    crashes: collections.deque[float] = field(default_factory=collections.deque)
    restart_at: float | None = None
    given_up: bool = False

    @property
    def is_running(self) -> bool:
        """Whether its process is alive."""
        return self.process is not None and self.process.poll() is None


def parse_processes(text: str) -> tuple[int, int]:
    """``MIN:MAX`` (or ``N`` for a fixed pool) as two whole numbers, 0 <= MIN <= MAX >= 1.

    Raises:
        ConfigError: naming ``--processes``.
    """
    low, _, high = text.partition(":")
    try:
        minimum, maximum = int(low), int(high or low)
    except ValueError:
        raise ConfigError("processes", "flag", "MIN:MAX, such as 1:4", text) from None
    if not 0 <= minimum <= maximum or maximum < 1:
        raise ConfigError("processes", "flag", "MIN:MAX with 0 <= MIN <= MAX and MAX >= 1", text)
    return minimum, maximum


def process_limit(*, maximum: int, is_llm: bool, runs_simulation: bool, capacity: int,
                  cores: int, available_memory_mb: float | None, memory_limit_mb: float,
                  requests_per_minute: int | None) -> tuple[int, str]:
    """How many children the pool may run, and what set that limit (for the log)."""
    if is_llm:
        if requests_per_minute is not None and requests_per_minute < maximum:
            return max(1, requests_per_minute), f"the provider's {requests_per_minute} requests/min"
        return maximum, f"--processes MAX {maximum}"
    limits = [(maximum, f"--processes MAX {maximum}"),
              (max(1, cores // capacity), f"{cores} cores at --capacity {capacity}")]
    if runs_simulation and available_memory_mb is not None:
        fits = int(available_memory_mb // (memory_limit_mb * capacity))
        limits.append((max(1, fits), f"{available_memory_mb:.0f} MB available at "
                                     f"memory_limit_mb {memory_limit_mb:g} x {capacity}"))
    return min(limits)


def available_memory_mb() -> float | None:
    """The memory this machine has available now (MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def children_needed(*, pending: int, idle: int, capacity: int) -> int:
    """How many more children the backlog needs beyond the idle ones."""
    return max(0, math.ceil(pending / capacity) - idle)


class WorkerPool:
    """The supervisor: starts, scales, restarts and drains the children."""

    def __init__(self, settings: PoolSettings, transport: Transport, *, limit: int,
                 command: Callable[[int], Sequence[str]], capacity: int = 1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.transport = transport
        self.limit = limit
        self.command = command
        self.capacity = capacity
        self.clock = clock
        self.children: dict[int, Child] = {}
        self.stopping = threading.Event()

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> int:
        """Supervise until stopped (then drain) or until every slot is a crash loop.

        Returns:
            The exit code: 0, or 1 when the pool gave up on crash-looping children.
        """
        for slot in range(min(self.settings.min_processes, self.limit)):
            self._start(self._child(slot))
        while not self.stopping.wait(POOL_CHECK_SECONDS):
            self.step()
            if self._all_given_up():
                log.error("every worker process of the pool is in a crash loop: stopping")
                return CRASH_LOOP_EXIT_CODE
        self.drain()
        return 0

    def step(self) -> None:
        """One supervision pass: reap, restart what is due, grow or shrink."""
        now = self.clock()
        for child in self.children.values():
            self._reap(child, now)
        self._restart_due(now)
        observed = self._observe()
        if observed is not None:
            self._scale(*observed, now=now)

    def stop(self) -> None:
        """Ask the pool to drain and end."""
        self.stopping.set()

    def stop_on_signals(self) -> None:
        """Drain on SIGTERM or Ctrl-C (SIGINT); call from the main thread."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda _signum, _frame: self.stop())

    def drain(self) -> None:
        """Stop every child (each hands back its tasks), kill any left after DRAIN_SECONDS."""
        running = [child for child in self.children.values() if child.is_running]
        log.info("draining the pool: stopping %d worker process(es)", len(running))
        for child in running:
            self._terminate(child)
        deadline = self.clock() + DRAIN_SECONDS
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(timeout=max(0.1, deadline - self.clock()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %g s: killed (its tasks go back to the queue "
                            "when their leases run out)", self.worker_id(child.slot), DRAIN_SECONDS)
                child.process.kill()
                child.process.wait()

    # -- children -------------------------------------------------------------------------

    def worker_id(self, slot: int) -> str:
        """The id the child in ``slot`` registers under."""
        return default_worker_id(self.settings.worker_type, slot)

    def running_children(self) -> list[Child]:
        """The children whose process is alive and not being stopped."""
        return [c for c in self.children.values() if c.is_running and not c.stopping]

    def _child(self, slot: int) -> Child:
        return self.children.setdefault(slot, Child(slot))

    def _start(self, child: Child) -> None:
        now = self.clock()
        child.process = subprocess.Popen(list(self.command(child.slot)))
        child.started_at = child.busy_at = now
        child.registered = child.stopping = False
        child.restart_at = None
        log.info("started %s (pid %d)", self.worker_id(child.slot), child.process.pid)

    def _terminate(self, child: Child) -> None:
        child.stopping = True
        if child.is_running:
            assert child.process is not None
            child.process.send_signal(signal.SIGTERM)

    def _reap(self, child: Child, now: float) -> None:
        """Note a child that exited: asked to (stopped) or not (a crash, restarted later)."""
        if child.process is None or child.process.poll() is None:
            return
        code, child.process = child.process.returncode, None
        if child.stopping:
            child.stopping = False
            return
        child.crashes.append(now)
        while child.crashes and child.crashes[0] < now - CRASH_WINDOW_SECONDS:
            child.crashes.popleft()
        name = self.worker_id(child.slot)
        if len(child.crashes) >= CRASH_LIMIT:
            child.given_up = True
            log.error("%s exited %d times in %g s (last exit code %s): a crash loop, not "
                      "restarting it; see its messages above", name, len(child.crashes),
                      CRASH_WINDOW_SECONDS, code)
            return
        delay = min(FIRST_RESTART_DELAY_SECONDS * 2 ** (len(child.crashes) - 1),
                    MAX_RESTART_DELAY_SECONDS)
        child.restart_at = now + delay
        log.warning("%s exited unexpectedly (exit code %s): restarting it in %.1f s",
                    name, code, delay)

    def _restart_due(self, now: float) -> None:
        for child in self.children.values():
            if child.restart_at is not None and child.restart_at <= now and not child.given_up:
                self._start(child)

    def _all_given_up(self) -> bool:
        """Whether every slot ever started is a crash loop (none runs or waits to restart)."""
        return bool(self.children) and all(child.given_up for child in self.children.values())

    # -- scaling --------------------------------------------------------------------------

    def _observe(self) -> tuple[int, dict[str, int]] | None:
        """The backlog this pool could serve and each registered child's leases held
        (None: the server did not answer; the pool keeps its size)."""
        types = ",".join(self.settings.capabilities.get("task_types") or
                         get_worker_type(self.settings.worker_type).task_types)
        algorithms = ",".join(self.settings.capabilities.get("algorithms") or [])
        try:
            pending = self.transport.get("/api/queue/servable", params={
                "types": types, "algorithms": algorithms})["pending"]
            workers = self.transport.get("/api/workers/list")["workers"]
        except ElasticError as exc:
            log.warning("could not ask the orchestrator about its queue: %s", exc)
            return None
        active = {w["worker_id"]: int(w.get("active_tasks") or 0) for w in workers
                  if w.get("status") in ("online", "busy")}
        return int(pending), active

    def _scale(self, pending: int, active: dict[str, int], *, now: float) -> None:
        running = self.running_children()
        idle = []
        for child in running:
            held = active.get(self.worker_id(child.slot))
            child.registered = child.registered or held is not None
            if held or pending:
                child.busy_at = now
            if not held:
                idle.append(child)
        wanted = children_needed(pending=pending, idle=len(idle), capacity=self.capacity)
        # Children still stopping or waiting to restart count against the limit too.
        taken = sum(c.is_running or c.restart_at is not None for c in self.children.values())
        for _ in range(min(wanted, self.limit - taken)):
            self._start(self._child(self._free_slot()))
        self._shrink(idle, running_count=len(running), now=now)

    def _shrink(self, idle: list[Child], *, running_count: int, now: float) -> None:
        """Stop the idle children past the cool-down, highest slot first, down to MIN."""
        for child in sorted(idle, key=lambda c: -c.slot):
            if running_count <= self.settings.min_processes:
                return
            if child.registered and now - child.busy_at >= self.settings.idle_seconds:
                log.info("%s idle for %g s: stopping it", self.worker_id(child.slot),
                         self.settings.idle_seconds)
                self._terminate(child)
                running_count -= 1

    def _free_slot(self) -> int:
        """The lowest slot with no live child, not given up, not awaiting a restart."""
        slot = 0
        while slot in self.children and (self.children[slot].process is not None
                                         or self.children[slot].given_up
                                         or self.children[slot].restart_at is not None):
            slot += 1
        return slot


def run_pool(config: Config, *, worker_type: str, processes: str, capacity: int,
             capabilities: Mapping[str, Any], child_options: Sequence[str]) -> int:
    """Run ``elastic worker --processes``: supervise until SIGTERM, then drain.

    Returns:
        The exit code (see ``WorkerPool.run``).
    """
    minimum, maximum = parse_processes(processes)
    kind = get_worker_type(worker_type)
    limits = config.provider_settings(kind.provider).get("limits", {}) if kind.provider else {}
    limit, reason = process_limit(
        maximum=maximum, is_llm=kind.is_llm, runs_simulation="simulation" in kind.task_types,
        capacity=capacity, cores=os.cpu_count() or 1, available_memory_mb=available_memory_mb(),
        memory_limit_mb=config.memory_limit_mb,
        requests_per_minute=limits.get("requests_per_minute"))
    if limit < minimum:
        log.warning("the pool runs at most %d process(es) here (%s), fewer than MIN %d",
                    limit, reason, minimum)
    log.info("worker pool of %s: %d to %d process(es) (limit set by %s)", worker_type,
             min(minimum, limit), limit, reason)
    settings = PoolSettings(worker_type=worker_type, min_processes=minimum,
                            max_processes=maximum, idle_seconds=config.pool_idle_seconds,
                            capabilities=capabilities)
    pool = WorkerPool(settings, Transport(config.server_url, token=config.token), limit=limit,
                      capacity=capacity, command=lambda slot: [
                          sys.executable, "-m", "elastic", "worker", "--type", worker_type,
                          "--slot", str(slot), *child_options])
    pool.stop_on_signals()
    return pool.run()
