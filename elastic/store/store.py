"""The Store: every task and worker operation, each one named transaction.

Rules of the queue live here: who may lease what, when a lease is current (the
fencing token), how an attempt ends and whether the task goes back to the queue.
Each public method runs one transaction and returns frozen records from
``elastic.tasks``; no raw rows escape. ``now`` is a parameter (default: the clock)
so tests drive time by hand.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, and_, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import IntegrityError, OperationalError

from elastic.errors import StaleLease, StorageFull, TaskNotFound, WorkerNotFound, WrongState
from elastic.store.dialects import READ_ONLY, create_notifier, is_lock_conflict
from elastic.store.schema import attempts, provider_budgets, provider_requests, tasks, workers
from elastic.tasks import (
    Attempt,
    AttemptOutcome,
    Lease,
    NewTask,
    Requirement,
    Task,
    TaskStatus,
    Worker,
    WorkerStatus,
    can_transition,
    estimate_tokens,
    finite_json,
    requirement_of,
    statuses_that_may_become,
)
from elastic.worker_types import default_task_types

Result = TypeVar("Result")

DB_RETRY_ATTEMPTS = 5
EXPORT_CLAIM_SECONDS = 300.0
PROVIDER_REQUEST_KEEP_SECONDS = 86_400.0  # the longest budget window: a day
DISK_FULL_SIGNS = ("database or disk is full", "no space left on device", "disk full")


def may_become(new: TaskStatus) -> ColumnElement[bool]:
    """The guard of every UPDATE that moves a task to ``new``, read from the state machine."""
    return tasks.c.status.in_([old.value for old in statuses_that_may_become(new)])


@dataclass(frozen=True)
class SubmitOutcome:
    """What submitting one task did: ``created`` is False when the id already existed."""

    task_id: str
    created: bool


@dataclass(frozen=True)
class UnservableWork:
    """Pending tasks that no live worker can run: what they need, how many, and why."""

    requirement: Requirement
    count: int
    reason: str


@dataclass(frozen=True)
class ExpiryReport:
    """What one expiry pass did."""

    workers_dead: list[str]
    tasks_requeued: list[str]
    tasks_failed: list[str]


@dataclass(frozen=True)
class CountedRequest:
    """One request counted against a provider budget: when it started, the tokens it counts for."""

    at: float
    tokens: int


@dataclass(frozen=True)
class BudgetUsage:
    """A provider budget as stored: its cooldown (the key's own or the provider's, whichever
    ends later; None: not resting) and the requests counted since some moment, oldest first."""

    provider: str
    key_id: str
    cooldown_until: float | None
    requests: tuple[CountedRequest, ...]


@dataclass(frozen=True)
class BudgetReservation:
    """What asking a budget for one request did: its ``reservation_id`` when it was counted
    (None: refused), when it fits (``available_at``), and the budget after it."""

    reservation_id: str | None
    available_at: float
    usage: BudgetUsage


class Store:
    """Task and worker state in one SQL database (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine, *, max_retries: int = 3, lease_seconds: float = 90.0,
                 worker_timeout_seconds: float = 60.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.max_retries = max_retries
        self.lease_seconds = lease_seconds
        self.worker_timeout_seconds = worker_timeout_seconds
        self.clock = clock
        self.changes = create_notifier(engine)

    def close(self) -> None:
        """Stop listening for changes and close every connection; on SQLite the last close
        folds the WAL into the file, so the database file alone holds the state (copying
        it is a backup)."""
        self.changes.close()
        if self.engine.dialect.name == "sqlite":
            # On the driver's connection: a SQLAlchemy one would begin a transaction first.
            raw = self.engine.raw_connection()
            try:
                raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                raw.close()
        self.engine.dispose()

    # -- transactions -------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as connection:
            connection = connection.execution_options(**{READ_ONLY: True})
            with connection.begin():
                yield connection

    def _write_transaction(self, work: Callable[[Connection], Result], *,
                           notify: bool = False) -> Result:
        """Run ``work`` in one write transaction; wake waiting long polls after it if ``notify``
        (this process's at once, other processes' through ``Notifier.announce`` at the commit).

        The transaction runs again when the database reports a transient conflict:
        SQLite's busy timeout absorbs nearly all lock waits; what is left (and, on
        PostgreSQL, a unique race between two submits of one id or a deadlock between
        crossing transactions) is retried here so that no "database is locked" or
        "deadlock detected" reaches a user.
        """
        for attempt in range(DB_RETRY_ATTEMPTS):
            try:
                with self.engine.begin() as connection:
                    result = work(connection)
                    if notify:
                        self.changes.announce(connection)
            except (OperationalError, IntegrityError) as exc:
                if any(sign in str(exc).lower() for sign in DISK_FULL_SIGNS):
                    raise StorageFull() from exc
                transient = isinstance(exc, IntegrityError) or is_lock_conflict(exc)
                if not transient or attempt == DB_RETRY_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
                continue
            if notify:
                self.changes.notify()
            return result
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _now(self, now: float | None) -> float:
        return self.clock() if now is None else now

    # -- submitting ---------------------------------------------------------------------

    def submit_tasks(self, new_tasks: Sequence[NewTask], *,
                     now: float | None = None) -> list[SubmitOutcome]:
        """Queue tasks all or nothing; an id that already exists is not queued again."""
        now = self._now(now)

        def transaction(conn: Connection) -> list[SubmitOutcome]:
            ids = [task.task_id for task in new_tasks]
            existing = set(conn.scalars(select(tasks.c.task_id).where(tasks.c.task_id.in_(ids))))
            outcomes, rows = [], []
            for task in new_tasks:
                created = task.task_id not in existing
                outcomes.append(SubmitOutcome(task.task_id, created))
                if created:
                    existing.add(task.task_id)
                    rows.append(self._task_row(task, now))
            if rows:
                conn.execute(insert(tasks), rows)
            return outcomes

        return self._write_transaction(transaction, notify=True)

    def _task_row(self, task: NewTask, now: float) -> dict[str, Any]:
        algorithm, model = requirement_of(task.type, task.data)
        return {
            "task_id": task.task_id, "type": task.type, "data": task.data,
            "priority": task.priority, "status": TaskStatus.PENDING.value,
            "algorithm": algorithm, "model": model,
            "estimated_tokens": estimate_tokens(task.type, task.data),
            "description": task.description, "source": task.source,
            "attempts": 0, "failures": 0, "max_retries": self.max_retries,
            "lease_token": 0, "created_at": now,
        }

    # -- workers ------------------------------------------------------------------------

    def register_worker(self, worker_id: str, *, worker_type: str,
                        capabilities: Mapping[str, Any], capacity: int = 1,
                        now: float | None = None) -> Worker:
        """Register (or re-register) a worker.

        A worker process that registers again under its id has restarted: the tasks
        its previous life held are put back in the queue (a crash, counted as an attempt).
        """
        now = self._now(now)
        task_types = list(capabilities.get("task_types") or default_task_types(worker_type))
        values = {
            "worker_type": worker_type, "capabilities": dict(capabilities),
            "task_types": task_types,
            "algorithms": list(capabilities.get("algorithms") or []),
            "models": list(capabilities.get("models") or []),
            "capacity": capacity, "status": WorkerStatus.ONLINE.value,
            "last_heartbeat_at": now, "registered_at": now,
        }

        def transaction(conn: Connection) -> Worker:
            self._requeue_worker_tasks(conn, worker_id, AttemptOutcome.WORKER_DEAD,
                                       "worker restarted", now)
            found = conn.execute(update(workers).where(workers.c.worker_id == worker_id)
                                 .values(**values)).rowcount
            if not found:
                conn.execute(insert(workers).values(worker_id=worker_id,
                                                    tasks_completed=0, tasks_failed=0,
                                                    info={}, **values))
            return self._load_worker(conn, worker_id)

        return self._write_transaction(transaction, notify=True)

    def heartbeat(self, worker_id: str, *, running: Mapping[str, int] | None = None,
                  progress: Mapping[str, float] | None = None,
                  info: Mapping[str, Any] | None = None,
                  now: float | None = None) -> list[str]:
        """Record a sign of life and extend the leases the worker holds.

        Args:
            running: task id -> lease token the worker believes it holds.
            progress: task id -> fraction done, stored with the task.
            info: worker-reported details (e.g. provider budgets), shown in status.

        Returns:
            The ids in ``running`` the worker no longer holds (cancelled or
            re-leased): it should stop them.
        """
        now = self._now(now)
        running = dict(running or {})
        progress = dict(progress or {})

        def transaction(conn: Connection) -> list[str]:
            values: dict[str, Any] = {"last_heartbeat_at": now,
                                      "status": WorkerStatus.ONLINE.value}
            if info is not None:
                values["info"] = dict(info)
            # The task rows before the worker's row, the order a result takes them in:
            # the other order deadlocks with the worker's results on PostgreSQL.
            held = self._extend_leases(conn, worker_id, now)
            found = conn.execute(update(workers).where(
                workers.c.worker_id == worker_id,
                workers.c.status != WorkerStatus.OFFLINE.value).values(**values)).rowcount
            if not found:
                raise WorkerNotFound(f"worker {worker_id!r} is not registered")
            for task_id, fraction in progress.items():
                if task_id in held:
                    conn.execute(update(tasks).where(tasks.c.task_id == task_id)
                                 .values(progress=float(fraction)))
            return [tid for tid, token in running.items() if held.get(tid) != token]

        return self._write_transaction(transaction)

    def _extend_leases(self, conn: Connection, worker_id: str, now: float) -> dict[str, int]:
        conn.execute(update(tasks).where(tasks.c.worker_id == worker_id,
                                         tasks.c.status == TaskStatus.ASSIGNED.value)
                     .values(lease_expires_at=now + self.lease_seconds))
        rows = conn.execute(select(tasks.c.task_id, tasks.c.lease_token).where(
            tasks.c.worker_id == worker_id, tasks.c.status == TaskStatus.ASSIGNED.value))
        return {row.task_id: row.lease_token for row in rows}

    def unregister_worker(self, worker_id: str, *, now: float | None = None) -> Worker:
        """Mark a worker offline; tasks it still holds go back to the queue, not counted."""
        now = self._now(now)

        def transaction(conn: Connection) -> Worker:
            self._load_worker(conn, worker_id)
            self._requeue_worker_tasks(conn, worker_id, AttemptOutcome.HANDED_BACK,
                                       "worker unregistered", now)
            conn.execute(update(workers).where(workers.c.worker_id == worker_id)
                         .values(status=WorkerStatus.OFFLINE.value, last_heartbeat_at=now))
            return self._load_worker(conn, worker_id)

        return self._write_transaction(transaction, notify=True)

    def get_worker(self, worker_id: str) -> Worker:
        """One worker, with its active lease count."""
        with self._read() as conn:
            return self._load_worker(conn, worker_id)

    def list_workers(self) -> list[Worker]:
        """Every worker ever registered, with active lease counts."""
        with self._read() as conn:
            active = self._active_counts(conn)
            rows = conn.execute(select(workers).order_by(workers.c.worker_id)).mappings()
            return [Worker.from_row(row, active_tasks=active.get(row["worker_id"], 0))
                    for row in rows]

    def _load_worker(self, conn: Connection, worker_id: str) -> Worker:
        row = conn.execute(select(workers).where(workers.c.worker_id == worker_id)).mappings().first()
        if row is None:
            raise WorkerNotFound(f"worker {worker_id!r} is not registered")
        return Worker.from_row(row, active_tasks=self._active_counts(conn, worker_id).get(worker_id, 0))

    def _active_counts(self, conn: Connection, worker_id: str | None = None) -> dict[str, int]:
        query = (select(tasks.c.worker_id, func.count()).where(
            tasks.c.status == TaskStatus.ASSIGNED.value).group_by(tasks.c.worker_id))
        if worker_id is not None:
            query = query.where(tasks.c.worker_id == worker_id)
        return {row[0]: row[1] for row in conn.execute(query)}

    # -- leasing ------------------------------------------------------------------------

    def lease_tasks(self, worker_id: str, *, limit: int = 1, task_types: Sequence[str] | None = None,
                    max_estimated_tokens: int | None = None,
                    now: float | None = None) -> list[Lease]:
        """Lease up to ``limit`` of the most urgent, oldest pending tasks the worker can run.

        One ``UPDATE ... WHERE seq IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING``
        statement claims them, so two workers never get the same task. The worker's
        free slots (capacity minus held leases) cap ``limit``. ``task_types`` narrows
        the worker's registered types (e.g. while its provider cools down).
        """
        now = self._now(now)

        def transaction(conn: Connection) -> list[Lease]:
            worker = self._load_worker(conn, worker_id)
            if worker.status is WorkerStatus.OFFLINE:
                raise WorkerNotFound(f"worker {worker_id!r} unregistered; register again")
            conn.execute(update(workers).where(workers.c.worker_id == worker_id)
                         .values(last_heartbeat_at=now, status=WorkerStatus.ONLINE.value))
            slots = min(limit, worker.capacity - worker.active_tasks)
            types = [t for t in worker.task_types if task_types is None or t in task_types]
            if slots <= 0 or not types:
                return []
            rows = conn.execute(self._lease_statement(worker, types, slots,
                                                      max_estimated_tokens, now)).mappings().all()
            if rows:
                conn.execute(insert(attempts), [{
                    "task_id": row["task_id"], "attempt": row["attempts"],
                    "worker_id": worker_id, "lease_token": row["lease_token"],
                    "started_at": now, "outcome": AttemptOutcome.RUNNING.value}
                    for row in rows])
            leased = [Task.from_row(row) for row in rows]
            leased.sort(key=lambda task: (-task.priority, task.seq))
            return [Lease(task=task, lease_token=task.lease_token,
                          lease_expires_at=now + self.lease_seconds) for task in leased]

        return self._write_transaction(transaction)

    def _lease_statement(self, worker: Worker, types: list[str], slots: int,
                         max_estimated_tokens: int | None, now: float) -> Any:
        # The conditions are Requirement.is_met_by in SQL; change both together.
        conditions = [may_become(TaskStatus.ASSIGNED), tasks.c.type.in_(types),
                      or_(tasks.c.algorithm.is_(None), tasks.c.algorithm.in_(worker.algorithms))]
        if worker.models:
            conditions.append(or_(tasks.c.model.is_(None), tasks.c.model.in_(worker.models)))
        if max_estimated_tokens is not None:
            conditions.append(tasks.c.estimated_tokens <= max_estimated_tokens)
        candidates = (select(tasks.c.seq).where(*conditions)
                      .order_by(tasks.c.priority.desc(), tasks.c.seq).limit(slots)
                      .with_for_update(skip_locked=True))
        return (update(tasks).where(tasks.c.seq.in_(candidates))
                .values(status=TaskStatus.ASSIGNED.value, worker_id=worker.worker_id,
                        lease_token=tasks.c.lease_token + 1, attempts=tasks.c.attempts + 1,
                        lease_expires_at=now + self.lease_seconds, started_at=now, progress=0.0)
                .returning(*tasks.c))

    # -- results and the ends of attempts ---------------------------------------------

    def record_result(self, task_id: str, *, worker_id: str, lease_token: int | None,
                      result: Mapping[str, Any], now: float | None = None) -> Task:
        """Accept a worker's result, only from the current lease.

        ``success: false`` ends the attempt as failed; the task goes back to the
        queue unless ``retryable`` is false or its retries are used up.

        Raises:
            TaskNotFound: no such task.
            StaleLease: the worker or token is not the current lease (409).
        """
        now = self._now(now)
        succeeded = result.get("success", True) is not False

        def transaction(conn: Connection) -> Task:
            row = self._current_lease_row(conn, task_id, worker_id, lease_token)
            if succeeded:
                self._finish_attempt(conn, row, AttemptOutcome.COMPLETED, None, now)
                conn.execute(update(tasks).where(
                    tasks.c.seq == row["seq"], may_become(TaskStatus.COMPLETED)).values(
                    status=TaskStatus.COMPLETED.value, result=finite_json(dict(result)),
                    finished_at=now,
                    progress=1.0, lease_expires_at=None, error=None))
                self._count_for_worker(conn, worker_id, completed=1)
            else:
                error = str(result.get("error") or "the worker reported success: false")
                retry = result.get("retryable", True) is not False
                self._end_attempt(conn, row, AttemptOutcome.FAILED, error, now,
                                  counts_as_failure=True, retry=retry,
                                  result=finite_json(dict(result)))
                self._count_for_worker(conn, worker_id, failed=1)
            return self._load_task(conn, task_id)

        return self._write_transaction(transaction, notify=True)

    def _current_lease_row(self, conn: Connection, task_id: str, worker_id: str,
                           lease_token: int | None) -> RowMapping:
        query = select(tasks).where(tasks.c.task_id == task_id).with_for_update()
        row = conn.execute(query).mappings().first()
        if row is None:
            raise TaskNotFound(f"task {task_id!r} not found")
        current = (row["status"] == TaskStatus.ASSIGNED.value and row["worker_id"] == worker_id
                   and (lease_token is None or row["lease_token"] == lease_token))
        if not current:
            raise StaleLease(f"task {task_id!r}: lease of worker {worker_id!r} (token "
                             f"{lease_token}) is not current; the task is {row['status']}"
                             f" with token {row['lease_token']}")
        return row

    def _finish_attempt(self, conn: Connection, row: RowMapping, outcome: AttemptOutcome,
                        error: str | None, now: float) -> None:
        conn.execute(update(attempts).where(
            attempts.c.task_id == row["task_id"], attempts.c.lease_token == row["lease_token"],
            attempts.c.outcome == AttemptOutcome.RUNNING.value,
        ).values(outcome=outcome.value, ended_at=now, error=error))

    def _end_attempt(self, conn: Connection, row: RowMapping, outcome: AttemptOutcome,
                     error: str | None, now: float, *, counts_as_failure: bool, retry: bool = True,
                     result: dict[str, Any] | None = None) -> TaskStatus | None:
        """End the current lease of ``row`` without success; requeue or fail the task.

        The update is fenced on the lease token: if the lease ended meanwhile (a result
        won the race), nothing changes and None is returned.
        """
        failures = row["failures"] + (1 if counts_as_failure else 0)
        requeue = retry and failures <= row["max_retries"]
        status = TaskStatus.PENDING if requeue else TaskStatus.FAILED
        attempts_done = row["attempts"] if counts_as_failure else row["attempts"] - 1
        changed = conn.execute(update(tasks).where(
            tasks.c.seq == row["seq"], may_become(status),
            tasks.c.lease_token == row["lease_token"],
        ).values(status=status.value, failures=failures, attempts=attempts_done, error=error,
                 worker_id=None if requeue else row["worker_id"], lease_expires_at=None,
                 finished_at=None if requeue else now, result=None if requeue else result)).rowcount
        if not changed:
            return None
        self._finish_attempt(conn, row, outcome, error, now)
        return status

    def _count_for_worker(self, conn: Connection, worker_id: str, *, completed: int = 0,
                          failed: int = 0) -> None:
        conn.execute(update(workers).where(workers.c.worker_id == worker_id).values(
            tasks_completed=workers.c.tasks_completed + completed,
            tasks_failed=workers.c.tasks_failed + failed))

    def _requeue_worker_tasks(self, conn: Connection, worker_id: str, outcome: AttemptOutcome,
                              error: str, now: float) -> list[tuple[str, TaskStatus]]:
        rows = conn.execute(select(tasks).where(tasks.c.worker_id == worker_id,
                                                tasks.c.status == TaskStatus.ASSIGNED.value)
                            .with_for_update(skip_locked=True)).mappings().all()
        crash = outcome is not AttemptOutcome.HANDED_BACK
        ended = [(row["task_id"], self._end_attempt(conn, row, outcome, error, now,
                                                    counts_as_failure=crash)) for row in rows]
        return [(task_id, status) for task_id, status in ended if status is not None]

    def save_checkpoint(self, task_id: str, *, worker_id: str, lease_token: int | None,
                        checkpoint: Mapping[str, Any], progress: float | None = None,
                        now: float | None = None) -> None:
        """Store a running task's checkpoint, only from the current lease (else StaleLease)."""
        now = self._now(now)

        def transaction(conn: Connection) -> None:
            row = self._current_lease_row(conn, task_id, worker_id, lease_token)
            values: dict[str, Any] = {"checkpoint": dict(checkpoint),
                                      "lease_expires_at": now + self.lease_seconds}
            if progress is not None:
                values["progress"] = float(progress)
            conn.execute(update(tasks).where(tasks.c.seq == row["seq"]).values(**values))

        self._write_transaction(transaction)

    def release_task(self, task_id: str, *, worker_id: str, lease_token: int | None,
                     now: float | None = None) -> Task:
        """A worker hands a task back unfinished (shutting down): requeued, not counted."""
        now = self._now(now)

        def transaction(conn: Connection) -> Task:
            row = self._current_lease_row(conn, task_id, worker_id, lease_token)
            self._end_attempt(conn, row, AttemptOutcome.HANDED_BACK, "handed back by worker",
                              now, counts_as_failure=False)
            return self._load_task(conn, task_id)

        return self._write_transaction(transaction, notify=True)

    def cancel_task(self, task_id: str, *, only_pending: bool = False,
                    now: float | None = None) -> Task:
        """Cancel a pending or running task; cancelling a cancelled task is a no-op.

        Args:
            only_pending: cancel only a task no worker holds (a client withdrawing it
                to run it itself); a running or ended one is left as it is.

        Raises:
            WrongState: the task already completed or failed, or (``only_pending``)
                is not pending (409).
        """
        now = self._now(now)

        def transaction(conn: Connection) -> Task:
            task = self._load_task(conn, task_id)
            if task.status is TaskStatus.CANCELLED:
                return task
            if only_pending and task.status is not TaskStatus.PENDING:
                raise WrongState(f"task {task_id!r} is {task.status.value}, not pending")
            if not can_transition(task.status, TaskStatus.CANCELLED):
                raise WrongState(f"task {task_id!r} already {task.status.value}")
            if task.status is TaskStatus.ASSIGNED:
                row = conn.execute(select(tasks).where(tasks.c.task_id == task_id)).mappings().one()
                self._finish_attempt(conn, row, AttemptOutcome.CANCELLED, "cancelled", now)
            cancelled = conn.execute(update(tasks).where(
                tasks.c.task_id == task_id, may_become(TaskStatus.CANCELLED)).values(
                status=TaskStatus.CANCELLED.value, finished_at=now, lease_expires_at=None,
                error="cancelled")).rowcount
            if not cancelled:  # a result ended it between our read and this write
                raise WrongState(f"task {task_id!r} already "
                                 f"{self._load_task(conn, task_id).status.value}")
            return self._load_task(conn, task_id)

        return self._write_transaction(transaction, notify=True)

    # -- expiry -------------------------------------------------------------------------

    def expire_leases(self, *, now: float | None = None) -> ExpiryReport:
        """Declare silent workers dead and requeue (or fail) tasks whose lease ran out."""
        now = self._now(now)

        def transaction(conn: Connection) -> ExpiryReport:
            dead = list(conn.scalars(select(workers.c.worker_id).where(
                workers.c.status == WorkerStatus.ONLINE.value,
                workers.c.last_heartbeat_at < now - self.worker_timeout_seconds)))
            ended: list[tuple[str, TaskStatus]] = []
            for worker_id in dead:
                conn.execute(update(workers).where(workers.c.worker_id == worker_id)
                             .values(status=WorkerStatus.DEAD.value))
                ended += self._requeue_worker_tasks(conn, worker_id, AttemptOutcome.WORKER_DEAD,
                                                    f"worker {worker_id} stopped heartbeating", now)
            expired = conn.execute(select(tasks).where(
                tasks.c.status == TaskStatus.ASSIGNED.value, tasks.c.lease_expires_at < now,
            ).with_for_update(skip_locked=True)).mappings().all()
            for row in expired:
                status = self._end_attempt(conn, row, AttemptOutcome.EXPIRED,
                                           f"lease expired on worker {row['worker_id']}", now,
                                           counts_as_failure=True)
                if status is not None:
                    ended.append((row["task_id"], status))
            if dead or ended:
                self.changes.announce(conn)
            return ExpiryReport(
                workers_dead=dead,
                tasks_requeued=[tid for tid, s in ended if s is TaskStatus.PENDING],
                tasks_failed=[tid for tid, s in ended if s is TaskStatus.FAILED])

        report = self._write_transaction(transaction)
        if report.workers_dead or report.tasks_requeued or report.tasks_failed:
            self.changes.notify()
        return report

    def extend_live_leases(self, *, now: float | None = None) -> int:
        """Give every running lease and live worker a fresh term (the server just started).

        Time the orchestrator was down must not count against workers that kept
        computing: their results arrive once it is back.
        """
        now = self._now(now)

        def transaction(conn: Connection) -> int:
            # Task rows before worker rows, as in a result (see ``heartbeat``).
            renewed = conn.execute(update(tasks).where(tasks.c.status == TaskStatus.ASSIGNED.value)
                                   .values(lease_expires_at=now + self.lease_seconds)).rowcount
            conn.execute(update(workers).where(workers.c.status == WorkerStatus.ONLINE.value)
                         .values(last_heartbeat_at=now))
            return renewed

        return self._write_transaction(transaction)

    # -- provider budgets ---------------------------------------------------------------

    def reserve_provider_request(self, provider: str, key_id: str, *, worker_id: str,
                                 tokens: int, since: float,
                                 available_at: Callable[[BudgetUsage], float],
                                 now: float | None = None) -> BudgetReservation:
        """Count one request against the budget of ``provider`` and ``key_id`` if it fits now.

        ``available_at(usage)`` decides (the budget's limits live with the caller), while
        the budget's row is locked (``FOR UPDATE``; SQLite's write transaction), so two
        replicas never both take a budget's last request. ``usage`` holds the requests
        since ``since``; those older than ``PROVIDER_REQUEST_KEEP_SECONDS`` are deleted.
        """
        now = self._now(now)

        def transaction(conn: Connection) -> BudgetReservation:
            self._lock_budget(conn, provider, key_id)
            usage = self._budget_usage(conn, provider, key_id, since)
            moment = available_at(usage)
            if moment > now:
                return BudgetReservation(None, moment, usage)
            reservation_id = uuid.uuid4().hex
            conn.execute(insert(provider_requests).values(
                reservation_id=reservation_id, provider=provider, key_id=key_id,
                worker_id=worker_id, requested_at=now, tokens=tokens))
            conn.execute(delete(provider_requests).where(
                provider_requests.c.provider == provider, provider_requests.c.key_id == key_id,
                provider_requests.c.requested_at < now - PROVIDER_REQUEST_KEEP_SECONDS))
            counted = (*usage.requests, CountedRequest(now, tokens))
            return BudgetReservation(reservation_id, moment,
                                     dataclasses.replace(usage, requests=counted))

        return self._write_transaction(transaction)

    def settle_provider_request(self, provider: str, reservation_id: str, tokens: int) -> bool:
        """Replace a counted request's estimate with the tokens used; False if it is unknown."""
        def transaction(conn: Connection) -> bool:
            return bool(conn.execute(update(provider_requests).where(
                provider_requests.c.provider == provider,
                provider_requests.c.reservation_id == reservation_id).values(tokens=tokens))
                .rowcount)

        return self._write_transaction(transaction)

    def pause_provider_budget(self, provider: str, key_id: str, until: float) -> None:
        """Rest a budget until ``until`` (a later pause wins; key '' rests every key)."""
        def transaction(conn: Connection) -> None:
            current = self._lock_budget(conn, provider, key_id)
            if current is None or until > current:
                conn.execute(update(provider_budgets).where(
                    provider_budgets.c.provider == provider,
                    provider_budgets.c.key_id == key_id).values(cooldown_until=until))

        self._write_transaction(transaction)

    def provider_budget_usage(self, provider: str, key_id: str, *, since: float) -> BudgetUsage:
        """One budget's cooldown and the requests counted since ``since``."""
        with self._read() as conn:
            return self._budget_usage(conn, provider, key_id, since)

    def list_provider_budgets(self, *, since: float) -> list[BudgetUsage]:
        """Every budget used so far, by provider and key, with its requests since ``since``."""
        with self._read() as conn:
            keys = conn.execute(select(provider_budgets.c.provider, provider_budgets.c.key_id)
                                .order_by(provider_budgets.c.provider, provider_budgets.c.key_id))
            return [self._budget_usage(conn, row.provider, row.key_id, since) for row in keys]

    def _lock_budget(self, conn: Connection, provider: str, key_id: str) -> float | None:
        """Lock a budget's row for this transaction, creating it first; returns its own cooldown.

        Two first requests creating it at once: one insert fails and its transaction runs
        again (``_write_transaction``), then finds the row.
        """
        row = conn.execute(select(provider_budgets.c.cooldown_until).where(
            provider_budgets.c.provider == provider, provider_budgets.c.key_id == key_id)
            .with_for_update()).first()
        if row is None:
            conn.execute(insert(provider_budgets).values(provider=provider, key_id=key_id))
            return None
        return row.cooldown_until

    def _budget_usage(self, conn: Connection, provider: str, key_id: str,
                      since: float) -> BudgetUsage:
        cooldowns = [until for (until,) in conn.execute(
            select(provider_budgets.c.cooldown_until).where(
                provider_budgets.c.provider == provider,
                provider_budgets.c.key_id.in_([key_id, ""]),
                provider_budgets.c.cooldown_until.is_not(None)))]
        requests = conn.execute(select(provider_requests.c.requested_at, provider_requests.c.tokens)
                                .where(provider_requests.c.provider == provider,
                                       provider_requests.c.key_id == key_id,
                                       provider_requests.c.requested_at > since)
                                .order_by(provider_requests.c.requested_at, provider_requests.c.id))
        return BudgetUsage(provider, key_id, max(cooldowns, default=None),
                           tuple(CountedRequest(row.requested_at, row.tokens) for row in requests))

    # -- reading ------------------------------------------------------------------------

    def get_task(self, task_id: str) -> Task:
        """One task. Raises TaskNotFound."""
        with self._read() as conn:
            return self._load_task(conn, task_id)

    def _load_task(self, conn: Connection, task_id: str) -> Task:
        row = conn.execute(select(tasks).where(tasks.c.task_id == task_id)).mappings().first()
        if row is None:
            raise TaskNotFound(f"task {task_id!r} not found")
        return Task.from_row(row)

    def list_tasks(self, *, task_ids: Sequence[str] | None = None,
                   statuses: Sequence[TaskStatus] | None = None,
                   limit: int | None = None, newest_first: bool = False) -> list[Task]:
        """Tasks, optionally only these ids and statuses, in queue order (or newest first)."""
        query = select(tasks)
        if task_ids is not None:
            query = query.where(tasks.c.task_id.in_(list(task_ids)))
        if statuses:
            query = query.where(tasks.c.status.in_([s.value for s in statuses]))
        order = tasks.c.seq.desc() if newest_first else tasks.c.seq
        query = query.order_by(order).limit(limit)
        with self._read() as conn:
            return [Task.from_row(row) for row in conn.execute(query).mappings()]

    def task_statuses(self, task_ids: Sequence[str]) -> dict[str, TaskStatus]:
        """The status of each of ``task_ids`` that exists (a light read for waiters)."""
        query = select(tasks.c.task_id, tasks.c.status).where(tasks.c.task_id.in_(list(task_ids)))
        with self._read() as conn:
            return {row.task_id: TaskStatus(row.status) for row in conn.execute(query)}

    def task_attempts(self, task_id: str) -> list[Attempt]:
        """Every lease of a task, oldest first."""
        with self._read() as conn:
            rows = conn.execute(select(attempts).where(attempts.c.task_id == task_id)
                                .order_by(attempts.c.id)).mappings()
            return [Attempt.from_row(row) for row in rows]

    def count_tasks(self) -> dict[str, int]:
        """Number of tasks per status, plus ``redistributed`` (pending after an attempt)."""
        with self._read() as conn:
            counts = {status.value: 0 for status in TaskStatus}
            query = select(tasks.c.status, func.count()).group_by(tasks.c.status)
            counts.update({row[0]: row[1] for row in conn.execute(query)})
            counts["redistributed"] = conn.scalar(select(func.count()).where(
                tasks.c.status == TaskStatus.PENDING.value, tasks.c.attempts > 0)) or 0
            counts["total"] = sum(counts[status.value] for status in TaskStatus)
            return counts

    def unservable_work(self) -> list[UnservableWork]:
        """Pending work that no live worker can run, grouped by what it needs, with the reason.

        One grouped query over the pending tasks, then ``Requirement.unmet_reason`` (the
        lease rule) against the live workers: cheap however many tasks wait.
        """
        query = (select(tasks.c.type, tasks.c.algorithm, tasks.c.model, func.count())
                 .where(tasks.c.status == TaskStatus.PENDING.value)
                 .group_by(tasks.c.type, tasks.c.algorithm, tasks.c.model))
        with self._read() as conn:
            groups = conn.execute(query).all()
        workers = self.list_workers()
        found = []
        for task_type, algorithm, model, count in groups:
            requirement = Requirement(task_type=task_type, algorithm=algorithm, model=model)
            reason = requirement.unmet_reason(workers)
            if reason is not None:
                found.append(UnservableWork(requirement=requirement, count=count, reason=reason))
        return found

    def total_execution_seconds(self) -> float:
        """Sum of the last attempt's run time over completed tasks."""
        with self._read() as conn:
            return float(conn.scalar(select(func.sum(tasks.c.finished_at - tasks.c.started_at))
                                     .where(tasks.c.status == TaskStatus.COMPLETED.value)) or 0.0)

    def claim_tasks_to_export(self, *, limit: int = 10_000,
                              claim_seconds: float = EXPORT_CLAIM_SECONDS,
                              now: float | None = None) -> list[Task]:
        """Take ended tasks not yet in a results file, in the order they ended, for writing one.

        One statement claims them for ``claim_seconds`` (``SKIP LOCKED``), so replicas
        writing results at once never take the same task; ``mark_exported`` ends the
        claim, and a writer that dies first lets it run out for another to take.
        """
        now = self._now(now)
        candidates = (select(tasks.c.seq).where(
            tasks.c.exported == 0, tasks.c.status.in_([s.value for s in TaskStatus if s.is_final]),
            or_(tasks.c.export_claimed_until.is_(None), tasks.c.export_claimed_until < now))
            .order_by(tasks.c.finished_at, tasks.c.seq).limit(limit)
            .with_for_update(skip_locked=True))

        def transaction(conn: Connection) -> list[Task]:
            rows = conn.execute(update(tasks).where(tasks.c.seq.in_(candidates))
                                .values(export_claimed_until=now + claim_seconds)
                                .returning(*tasks.c)).mappings().all()
            return sorted((Task.from_row(row) for row in rows),
                          key=lambda task: (task.finished_at or 0.0, task.seq))

        return self._write_transaction(transaction)

    def mark_exported(self, task_ids: Sequence[str]) -> None:
        """Remember that these tasks are in a results file."""
        def transaction(conn: Connection) -> None:
            conn.execute(update(tasks).where(tasks.c.task_id.in_(list(task_ids)))
                         .values(exported=1, export_claimed_until=None))

        self._write_transaction(transaction)

    def finished_tasks_since(self, since: float | None = None) -> list[Task]:
        """Ended tasks (completed, failed, cancelled) that ended at or after ``since``."""
        conditions = [tasks.c.status.in_([s.value for s in TaskStatus if s.is_final])]
        if since is not None:
            conditions.append(tasks.c.finished_at >= since)
        query = select(tasks).where(and_(*conditions)).order_by(tasks.c.finished_at, tasks.c.seq)
        with self._read() as conn:
            return [Task.from_row(row) for row in conn.execute(query).mappings()]
