"""The Store: every task and worker operation, each one named transaction.

Rules of the queue live here: who may lease what, when a lease is current (the
fencing token), how an attempt ends and whether the task goes back to the queue.
Each public method runs one transaction and returns frozen records from
``elastic.tasks``; no raw rows escape. ``now`` is a parameter (default: the clock)
so tests drive time by hand.
"""

from __future__ import annotations

import dataclasses
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine, RowMapping
from sqlalchemy.exc import IntegrityError, OperationalError

from elastic.errors import (
    ElasticError,
    StaleLease,
    StorageFull,
    TaskNotFound,
    WorkerIdTaken,
    WorkerNotFound,
    WrongState,
)
from elastic.store.balancing import leaves_to_others, live_workers, record_speed, speeds_for
from elastic.store.dialects import (
    READ_ONLY,
    create_group_commit,
    create_notifier,
    create_write_turns,
    is_lock_conflict,
)
from elastic.store.schema import (
    alert_outbox,
    attempts,
    orchestrator_clock,
    provider_budgets,
    provider_requests,
    tasks,
    workers,
)
from elastic.tasks import (
    RETRYABLE_STATUSES,
    SETTLED_STATUSES,
    Attempt,
    AttemptOutcome,
    HeldReason,
    Lease,
    NewTask,
    Requirement,
    RetryPolicy,
    SubmitOutcome,
    Task,
    TaskStatus,
    Worker,
    WorkerStatus,
    can_transition,
    content_hash,
    estimate_tokens,
    finite_json,
    requirement_of,
    statuses_that_may_become,
    time_limit_error,
)
from elastic.worker_types import default_task_types

Result = TypeVar("Result")

DB_RETRY_ATTEMPTS = 5
# What a task resubmitted with new content takes from it (``submit_tasks(replace=True)``),
# and how it goes back in the queue: its failures counted afresh, its attempts (and their
# history) kept, its old outcome cleared, written to a later results file again.
REPLACED_COLUMNS = ("type", "data", "priority", "algorithm", "model", "estimated_tokens",
                    "content_hash", "description", "source", "timeout_seconds")
REQUEUED_VALUES: dict[str, Any] = {
    "status": TaskStatus.PENDING.value, "failures": 0, "worker_deaths": 0, "held_reason": None,
    "worker_id": None, "result": None, "error": None, "checkpoint": None, "progress": None,
    "lease_expires_at": None, "finished_at": None, "exported": 0, "export_claimed_until": None,
    "avoid_worker_id": None, "avoid_until": None}
EXPORT_CLAIM_SECONDS = 300.0
ALERT_CLAIM_SECONDS = 120.0  # longer than any send may take (timeouts of 10 s per message)
PROVIDER_REQUEST_KEEP_SECONDS = 86_400.0  # the longest budget window: a day
DISK_FULL_SIGNS = ("database or disk is full", "no space left on device", "disk full")
# A lease a worker's heartbeat does not list is given back once it is this old: younger,
# the poll's answer may still be on its way to the worker.
LEASE_DELIVERY_GRACE_SECONDS = 5.0
# How long past its timeout_seconds a running attempt has to report before the server ends it.
TIME_LIMIT_GRACE_SECONDS = 5.0
CLOCK_ROW_ID = 1


def may_become(new: TaskStatus, *, as_equalities: bool = False) -> ColumnElement[bool]:
    """The guard of every UPDATE that moves a task to ``new``, read from the state machine
    (``as_equalities``: ORed, for an executemany statement, which cannot hold an IN list)."""
    olds = [old.value for old in statuses_that_may_become(new)]
    return or_(*(tasks.c.status == old for old in olds)) if as_equalities else tasks.c.status.in_(olds)


def _current_lease(row: Any, item: ReportedResult, worker_id: str) -> Any:
    """``row`` when it is the task's current lease by ``worker_id`` with ``item``'s token.

    Raises:
        TaskNotFound: no row.
        StaleLease: the task is not assigned to that worker under that token (409).
    """
    if row is None:
        raise TaskNotFound(f"task {item.task_id!r} not found")
    current = (row["status"] == TaskStatus.ASSIGNED.value and row["worker_id"] == worker_id
               and (item.lease_token is None or row["lease_token"] == item.lease_token))
    if not current:
        raise StaleLease(f"task {item.task_id!r}: lease of worker {worker_id!r} (token "
                         f"{item.lease_token}) is not current; the task is {row['status']}"
                         f" with token {row['lease_token']}")
    return row


@dataclass(frozen=True)
class ExportClaim:
    """Tasks claimed for one results file (``batch``, written into it) at ``claimed_at``."""

    batch: str
    task_ids: list[str]
    claimed_at: float


@dataclass(frozen=True)
class UnservableWork:
    """Pending tasks that no live worker can run: what they need, how many, and why."""

    requirement: Requirement
    count: int
    reason: str


@dataclass(frozen=True)
class QueueCount:
    """How many tasks are in one status at one priority."""

    status: TaskStatus
    priority: int
    count: int


@dataclass(frozen=True)
class FinishedSummary:
    """Tasks that ended in a span of time: how many, and their mean run and total times."""

    completed: int
    failed: int
    mean_run_seconds: float | None
    mean_latency_seconds: float | None


def _float_or_none(value: Any) -> float | None:
    """An aggregate as a float (PostgreSQL's AVG is a Decimal), None when there was nothing."""
    return None if value is None else float(value)


@dataclass(frozen=True)
class QueueMetrics:
    """What ``/metrics`` reads at scrape time, from grouped counts only: tasks by
    (status, type), pending tasks by priority, the oldest pending task's submission time,
    attempts by outcome and attempts that were retries (attempt number above 1)."""

    tasks_by_status_and_type: dict[tuple[str, str], int]
    pending_by_priority: dict[int, int]
    oldest_pending_created_at: float | None
    attempts_by_outcome: dict[str, int]
    retried_attempts: int


@dataclass(frozen=True, kw_only=True)
class NewAlert:
    """An alert to queue for one channel and target (a webhook URL, or email addresses)."""

    event: str
    subject: str
    channel: str
    target: str
    text: str


@dataclass(frozen=True, kw_only=True)
class QueuedAlert:
    """An alert waiting in the outbox, as a sender claimed it."""

    id: int
    event: str
    subject: str
    channel: str
    target: str
    text: str
    created_at: float
    tries: int


@dataclass(frozen=True)
class ExpiryReport:
    """What one expiry pass did."""

    workers_dead: list[str]
    tasks_requeued: list[str]
    tasks_failed: list[str]
    tasks_held: list[str]
    clocks_shifted_seconds: float = 0.0


@dataclass(frozen=True)
class AttemptEnd:
    """How an attempt ended without a result of success, and what it counts as.

    ``is_failure`` counts against the task's retries, ``is_death`` against its
    ``max_worker_deaths``; ``held_reason`` holds it at once (a retry cannot fix it).
    """

    outcome: AttemptOutcome
    error: str
    is_failure: bool = False
    is_death: bool = False
    held_reason: HeldReason | None = None
    result: dict[str, Any] | None = None

    @property
    def counts(self) -> bool:
        """Whether the attempt counts (as a failure or a death): it waits and avoids the worker."""
        return self.is_failure or self.is_death


def failed_attempt(result: Mapping[str, Any]) -> AttemptEnd:
    """What a worker's ``success: false`` result counts as: a failure, held at once when
    it says ``retryable: false`` (its ``reason`` names why; see ``HeldReason``)."""
    error = str(result.get("error") or "the worker reported success: false")
    is_retryable = result.get("retryable", True) is not False
    return AttemptEnd(AttemptOutcome.FAILED, error, is_failure=True,
                      held_reason=None if is_retryable else HeldReason.of(result.get("reason")),
                      result=finite_json(dict(result)))


@dataclass(frozen=True)
class ReportedResult:
    """One result a worker reports: its task, the lease token it ran under, the result."""

    task_id: str
    lease_token: int | None
    result: Mapping[str, Any]


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


def servable_conditions(*, task_types: Sequence[str], algorithms: Sequence[str],
                        models: Sequence[str], now: float) -> list[ColumnElement[bool]]:
    """SQL conditions of a pending task that a worker with these capabilities may lease now.

    They are ``Requirement.is_met_by`` in SQL; change both together. A retry waits
    until ``not_before``. No models listed means any model.
    """
    conditions = [may_become(TaskStatus.ASSIGNED), tasks.c.type.in_(list(task_types)),
                  or_(tasks.c.algorithm.is_(None), tasks.c.algorithm.in_(list(algorithms))),
                  tasks.c.not_before <= now]
    if models:
        conditions.append(or_(tasks.c.model.is_(None), tasks.c.model.in_(list(models))))
    return conditions


class Store:
    """Task and worker state in one SQL database (SQLite or PostgreSQL)."""

    def __init__(self, engine: Engine, *, max_retries: int = 3, lease_seconds: float = 90.0,
                 worker_timeout_seconds: float = 60.0, task_timeout_seconds: float = 3600.0,
                 retry: RetryPolicy | None = None, load_balancing: str = "priority",
                 clock: Callable[[], float] = time.time,
                 jitter: Callable[[], float] = random.random) -> None:
        self.engine = engine
        self.load_balancing = load_balancing
        self.max_retries = max_retries
        self.lease_seconds = lease_seconds
        self.worker_timeout_seconds = worker_timeout_seconds
        self.task_timeout_seconds = task_timeout_seconds
        self.retry = retry or RetryPolicy()
        self.lease_delivery_grace_seconds = LEASE_DELIVERY_GRACE_SECONDS
        self.clock = clock
        self.jitter = jitter
        self.changes = create_notifier(engine)
        self.group_commit = create_group_commit(engine)
        self.write_turn = create_write_turns(engine)
        # Leases are not flushed one by one (see ``lease_tasks``): tokens start past any
        # that a lease lost with an unflushed WAL tail (a power cut) could have carried.
        # Found at the first lease (None: not yet).
        self.lease_token_floor: int | None = None if self.group_commit.wal_path else 0

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
                           notify: bool = False, durable: bool = True) -> Result:
        """Run ``work`` in one write transaction; wake waiting long polls after it if ``notify``
        (this process's at once, other processes' through ``Notifier.announce`` at the commit).
        It is on disk before this returns unless ``durable`` is False (then the next
        durable one's flush, a few ms later, takes it along: see ``GroupCommit``).

        The transaction runs again when the database reports a transient conflict:
        SQLite's busy timeout absorbs nearly all lock waits; what is left (and, on
        PostgreSQL, a unique race between two submits of one id or a deadlock between
        crossing transactions) is retried here so that no "database is locked" or
        "deadlock detected" reaches a user.
        """
        for attempt in range(DB_RETRY_ATTEMPTS):
            try:
                with self.write_turn(), self.engine.begin() as connection:
                    result = work(connection)
                    if notify:
                        self.changes.announce(connection)
                if durable:
                    self.group_commit.flush()  # on disk before anyone hears of it
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

    def _first_safe_token(self, conn: Connection) -> int:
        """A lease token above every token a lease could have carried before this store
        leased its first task (``lease_token_floor``).

        Every task's next token is at least this, so a lease answered but lost with the
        WAL's unflushed tail can never match a later lease of its task: a lost lease's
        token was at most its task's stored token + 1, hence at most the largest + 1.
        """
        if self.lease_token_floor is None:
            self.lease_token_floor = int(conn.scalar(select(func.max(tasks.c.lease_token)))
                                         or 0) + 2
        return self.lease_token_floor

    # -- submitting ---------------------------------------------------------------------

    def submit_tasks(self, new_tasks: Sequence[NewTask], *, replace: bool = False,
                     now: float | None = None) -> list[SubmitOutcome]:
        """Queue tasks all or nothing; an id that already exists is not queued again.

        A known id whose content (type and data, compared by ``content_hash``) differs
        is ``changed``. With ``replace``, such a task that is pending, held, failed or
        cancelled takes the new content and goes (back) to the queue, its attempt
        history kept and its failures and worker deaths counted afresh (``replaced``); a
        running or completed one is left as it is.
        """
        now = self._now(now)

        def transaction(conn: Connection) -> list[SubmitOutcome]:
            known = {row.task_id: row for row in conn.execute(
                select(tasks.c.task_id, tasks.c.content_hash, tasks.c.status)
                .where(tasks.c.task_id.in_([task.task_id for task in new_tasks])))}
            outcomes, rows = [], []
            for task in new_tasks:
                row = self._task_row(task, now)
                found = known.get(task.task_id)
                if found is None:
                    known[task.task_id] = row  # a repeat in this batch is known now
                    rows.append(row)
                    outcomes.append(SubmitOutcome(task.task_id, created=True))
                    continue
                changed = found.content_hash != row["content_hash"]
                replaced = changed and replace and self._replace_content(conn, row, now)
                outcomes.append(SubmitOutcome(task.task_id, created=False, changed=changed,
                                              replaced=replaced))
            if rows:
                conn.execute(insert(tasks), rows)
            return outcomes

        return self._write_transaction(transaction, notify=True)

    def _replace_content(self, conn: Connection, row: Mapping[str, Any], now: float) -> bool:
        """Give a pending, held, failed or cancelled task the content of ``row`` (a new
        task's row) and put it in the queue; False when it is running or completed."""
        content = {name: row[name] for name in REPLACED_COLUMNS}
        replaceable = [TaskStatus.PENDING.value, TaskStatus.HELD.value,
                       *(status.value for status in RETRYABLE_STATUSES)]
        return bool(conn.execute(update(tasks).where(
            tasks.c.task_id == row["task_id"], tasks.c.status.in_(replaceable),
        ).values(**content, **REQUEUED_VALUES, not_before=now)).rowcount)

    def _task_row(self, task: NewTask, now: float) -> dict[str, Any]:
        algorithm, model = requirement_of(task.type, task.data)
        return {
            "task_id": task.task_id, "type": task.type, "data": task.data,
            "priority": task.priority, "status": TaskStatus.PENDING.value,
            "algorithm": algorithm, "model": model,
            "estimated_tokens": estimate_tokens(task.type, task.data),
            "content_hash": content_hash(task.type, task.data),
            "description": task.description, "source": task.source,
            "attempts": 0, "failures": 0, "max_retries": self.max_retries,
            "timeout_seconds": task.timeout_seconds, "lease_token": 0, "created_at": now,
        }

    # -- workers ------------------------------------------------------------------------

    def register_worker(self, worker_id: str, *, worker_type: str,
                        capabilities: Mapping[str, Any], capacity: int = 1,
                        secret_hash: str | None = None, presented_hash: str | None = None,
                        now: float | None = None) -> Worker:
        """Register (or re-register) a worker.

        A worker process that registers again under its id has restarted: the tasks
        its previous life held are put back in the queue, a worker death each.
        ``secret_hash`` is the hash of the new secret its later calls must carry (None:
        it asked for none).

        Raises:
            WorkerIdTaken: a live worker holds the id with a secret and ``presented_hash``
                is not that secret's hash (409).
        """
        now = self._now(now)
        task_types = list(capabilities.get("task_types") or default_task_types(worker_type))
        values = {
            "worker_type": worker_type, "capabilities": dict(capabilities),
            "task_types": task_types,
            "algorithms": list(capabilities.get("algorithms") or []),
            "models": list(capabilities.get("models") or []),
            "capacity": capacity, "status": WorkerStatus.ONLINE.value,
            "last_heartbeat_at": now, "registered_at": now, "secret_hash": secret_hash,
        }

        def transaction(conn: Connection) -> Worker:
            holder = conn.execute(select(workers).where(workers.c.worker_id == worker_id)
                                  ).mappings().first()
            if holder is None:
                conn.execute(insert(workers).values(worker_id=worker_id, tasks_completed=0,
                                                    tasks_failed=0, info={}, **values))
                return self._load_worker(conn, worker_id)
            self._check_takeover(holder, presented_hash, now)
            # Task rows before the worker's row, as in a result (see ``heartbeat``).
            self._end_dead_workers_leases(conn, worker_id, "worker restarted", now)
            conn.execute(update(workers).where(workers.c.worker_id == worker_id).values(**values))
            return self._load_worker(conn, worker_id)

        return self._write_transaction(transaction, notify=True)

    def _check_takeover(self, holder: RowMapping, presented_hash: str | None, now: float) -> None:
        """Refuse to hand a live worker's id to a caller without its secret."""
        is_live = (holder["status"] == WorkerStatus.ONLINE.value
                   and holder["last_heartbeat_at"] >= now - self.worker_timeout_seconds)
        if is_live and holder["secret_hash"] is not None and presented_hash != holder["secret_hash"]:
            raise WorkerIdTaken(
                f"worker id {holder['worker_id']!r} is held by a live worker with a secret: "
                "register again with its secret (X-Worker-Secret), or after it stops "
                f"(dead {self.worker_timeout_seconds:g} s after its last heartbeat)")

    def worker_secret_hash(self, worker_id: str) -> str | None:
        """The hash of the secret a worker's calls must carry (None: none needed, or no
        such worker: the call itself then says it is not registered)."""
        with self._read() as conn:
            return conn.scalar(select(workers.c.secret_hash).where(
                workers.c.worker_id == worker_id))

    def heartbeat(self, worker_id: str, *, running: Mapping[str, int] | None = None,
                  progress: Mapping[str, float] | None = None,
                  info: Mapping[str, Any] | None = None,
                  now: float | None = None) -> list[str]:
        """Record a sign of life and renew the leases the worker says it runs.

        Args:
            running: task id -> lease token of every task the worker runs. Only these
                leases are renewed; one the worker does not list (the answer to its
                poll was lost) goes back to the queue once older than
                ``LEASE_DELIVERY_GRACE_SECONDS``, not counted against the task. None
                (the seed's bare heartbeat) renews every lease the worker holds.
            progress: task id -> fraction done, stored with the task.
            info: worker-reported details (e.g. provider budgets), shown in status.

        Returns:
            The ids in ``running`` the worker no longer holds (cancelled or
            re-leased): it should stop them.
        """
        now = self._now(now)
        progress = dict(progress or {})

        def transaction(conn: Connection) -> tuple[list[str], bool]:
            values: dict[str, Any] = {"last_heartbeat_at": now,
                                      "status": WorkerStatus.ONLINE.value}
            if info is not None:
                values["info"] = dict(info)
            # The task rows before the worker's row, the order a result takes them in:
            # the other order deadlocks with the worker's results on PostgreSQL.
            held, gave_back = self._renew_leases(conn, worker_id, running, now)
            found = conn.execute(update(workers).where(
                workers.c.worker_id == worker_id,
                workers.c.status != WorkerStatus.OFFLINE.value).values(**values)).rowcount
            if not found:
                raise WorkerNotFound(f"worker {worker_id!r} is not registered")
            if gave_back:
                self.changes.announce(conn)
            for task_id, fraction in progress.items():
                if task_id in held:
                    conn.execute(update(tasks).where(tasks.c.task_id == task_id)
                                 .values(progress=float(fraction)))
            return [tid for tid, token in (running or {}).items() if held.get(tid) != token], gave_back

        # Not flushed on its own, like a lease: lost to a power cut, it only renewed what
        # the restart's clock shift renews anyway, or gave back what the next one does.
        revoked, gave_back = self._write_transaction(transaction, durable=False)
        if gave_back:
            self.changes.notify()
        return revoked

    def _renew_leases(self, conn: Connection, worker_id: str, running: Mapping[str, int] | None,
                      now: float) -> tuple[dict[str, int], bool]:
        """Renew the worker's listed leases (all of them when ``running`` is None) and give
        back the unlisted ones past the delivery grace.

        Returns:
            The leases it holds after that (task id -> token), and whether any went back.
        """
        held = {row.task_id: row.lease_token for row in conn.execute(
            select(tasks.c.task_id, tasks.c.lease_token).where(
                tasks.c.worker_id == worker_id, tasks.c.status == TaskStatus.ASSIGNED.value))}
        listed = list(held) if running is None else [
            tid for tid, token in running.items() if held.get(tid) == token]
        if listed:
            conn.execute(update(tasks).where(
                tasks.c.worker_id == worker_id, tasks.c.status == TaskStatus.ASSIGNED.value,
                tasks.c.task_id.in_(listed)).values(lease_expires_at=now + self.lease_seconds))
        if running is None:
            return held, False
        unknown = conn.execute(select(tasks).where(
            tasks.c.worker_id == worker_id, tasks.c.status == TaskStatus.ASSIGNED.value,
            tasks.c.task_id.not_in(listed),
            tasks.c.started_at < now - self.lease_delivery_grace_seconds)).mappings().all()
        for row in unknown:
            self._end_attempt(conn, row, AttemptEnd(
                AttemptOutcome.UNDELIVERED, f"worker {worker_id} does not know of this lease "
                "(the answer to its poll was lost): put back in the queue"), now)
            del held[row["task_id"]]
        return held, bool(unknown)

    def unregister_worker(self, worker_id: str, *, now: float | None = None) -> Worker:
        """Mark a worker offline; tasks it still holds go back to the queue, not counted."""
        now = self._now(now)

        def transaction(conn: Connection) -> Worker:
            self._load_worker(conn, worker_id)
            # Offline first (see lease_tasks): a lease racing this one is then either
            # refused or committed before the tasks below are handed back.
            conn.execute(update(workers).where(workers.c.worker_id == worker_id)
                         .values(status=WorkerStatus.OFFLINE.value, last_heartbeat_at=now))
            for row in self._leases_of(conn, worker_id):
                self._end_attempt(conn, row, AttemptEnd(AttemptOutcome.HANDED_BACK,
                                                        "worker unregistered"), now)
            return self._load_worker(conn, worker_id)

        return self._write_transaction(transaction, notify=True)

    def prune_workers(self, *, older_than_seconds: float, now: float | None = None) -> list[str]:
        """Delete the workers silent for more than ``older_than_seconds`` that are offline or
        dead and hold no lease; returns their ids, sorted. A live worker is never pruned,
        however old its heartbeat (it is declared dead first)."""
        now = self._now(now)

        def transaction(conn: Connection) -> list[str]:
            holding = select(tasks.c.worker_id).where(
                tasks.c.status == TaskStatus.ASSIGNED.value, tasks.c.worker_id.is_not(None))
            rows = conn.execute(delete(workers).where(
                workers.c.status.in_([WorkerStatus.OFFLINE.value, WorkerStatus.DEAD.value]),
                workers.c.last_heartbeat_at < now - older_than_seconds,
                workers.c.worker_id.not_in(holding)).returning(workers.c.worker_id))
            return sorted(row.worker_id for row in rows)

        return self._write_transaction(transaction)

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
            # The worker's row first: an unregister racing this lease either comes first
            # (no lease for an offline worker) or waits for it and hands its tasks back.
            touched = conn.execute(update(workers).where(
                workers.c.worker_id == worker_id, workers.c.status != WorkerStatus.OFFLINE.value,
            ).values(last_heartbeat_at=now, status=WorkerStatus.ONLINE.value)).rowcount
            worker = self._load_worker(conn, worker_id)
            if not touched:
                raise WorkerNotFound(f"worker {worker_id!r} unregistered; register again")
            slots = min(limit, worker.capacity - worker.active_tasks)
            types = [t for t in worker.task_types if task_types is None or t in task_types]
            if slots <= 0 or not types:
                return []
            conditions = self._lease_conditions(worker, types, max_estimated_tokens, now)
            if self._leaves_to_others(conn, worker, conditions, now):
                return []
            rows = conn.execute(self._lease_statement(
                worker, conditions, slots, now, floor=self._first_safe_token(conn))
            ).mappings().all()
            if rows:
                conn.execute(insert(attempts), [{
                    "task_id": row["task_id"], "attempt": row["attempts"],
                    "worker_id": worker_id, "lease_token": row["lease_token"],
                    "started_at": now, "outcome": AttemptOutcome.RUNNING.value}
                    for row in rows])
            leased = [Task.from_row(row) for row in rows]
            leased.sort(key=lambda task: (-task.priority, task.seq))
            return [Lease(task=task, lease_token=task.lease_token,
                          lease_expires_at=now + self.lease_seconds,
                          timeout_seconds=task.timeout_seconds or self.task_timeout_seconds)
                    for task in leased]

        # Not flushed on its own: the result that follows (or any other write) flushes it
        # with the next group commit; one lost to a power cut leaves its task pending
        # and its token unusable (``lease_token_floor``), so fencing holds.
        return self._write_transaction(transaction, durable=False)

    def count_servable_tasks(self, *, task_types: Sequence[str], algorithms: Sequence[str],
                             models: Sequence[str] = (), now: float | None = None) -> int:
        """How many pending tasks a worker with these capabilities could lease now (a
        worker pool grows while this is above its idle children)."""
        now = self._now(now)
        conditions = servable_conditions(task_types=task_types, algorithms=algorithms,
                                         models=models, now=now)
        with self._read() as conn:
            return int(conn.scalar(select(func.count()).select_from(tasks).where(*conditions)))

    def _lease_conditions(self, worker: Worker, types: list[str],
                          max_estimated_tokens: int | None, now: float) -> list[Any]:
        conditions = servable_conditions(task_types=types, algorithms=worker.algorithms,
                                         models=worker.models, now=now)
        # The worker that failed a retried task last waits until avoid_until.
        conditions.append(or_(tasks.c.avoid_worker_id.is_(None),
                              tasks.c.avoid_worker_id != worker.worker_id,
                              tasks.c.avoid_until <= now))
        if max_estimated_tokens is not None:
            conditions.append(tasks.c.estimated_tokens <= max_estimated_tokens)
        return conditions

    def _leaves_to_others(self, conn: Connection, worker: Worker, conditions: list[Any],
                          now: float) -> bool:
        """Whether the load balancing leaves the task this worker would lease to a better
        live worker (see ``elastic.store.balancing``)."""
        if self.load_balancing == "priority":
            return False
        task = conn.execute(select(tasks).where(*conditions)
                            .order_by(tasks.c.priority.desc(), tasks.c.seq).limit(1)
                            ).mappings().first()
        if task is None:
            return False
        others = live_workers(conn, since=now - self.worker_timeout_seconds)
        backlog = conn.scalar(select(func.count()).select_from(tasks).where(*conditions))
        return leaves_to_others(
            self.load_balancing, me=worker, task=task, others=others,
            active={**self._active_counts(conn), worker.worker_id: worker.active_tasks},
            speeds=speeds_for(conn, task["type"], task["algorithm"]),
            backlog=int(backlog or 0), now=now)

    def _lease_statement(self, worker: Worker, conditions: list[Any], slots: int,
                         now: float, *, floor: int) -> Any:
        """The lease: the token goes up by one, never below ``floor`` (``lease_token_floor``)."""
        candidates = (select(tasks.c.seq).where(*conditions)
                      .order_by(tasks.c.priority.desc(), tasks.c.seq).limit(slots)
                      .with_for_update(skip_locked=True))
        return (update(tasks).where(tasks.c.seq.in_(candidates))
                .values(status=TaskStatus.ASSIGNED.value, worker_id=worker.worker_id,
                        lease_token=case((tasks.c.lease_token + 1 > floor, tasks.c.lease_token + 1),
                                         else_=floor),
                        attempts=tasks.c.attempts + 1,
                        lease_expires_at=now + self.lease_seconds, started_at=now, progress=0.0)
                .returning(*tasks.c))

    # -- results and the ends of attempts ---------------------------------------------

    def record_result(self, task_id: str, *, worker_id: str, lease_token: int | None,
                      result: Mapping[str, Any], now: float | None = None) -> Task:
        """Accept a worker's result, only from the current lease.

        ``success: false`` ends the attempt as failed; the task goes back to the queue
        (after a backoff) until its retries are used up. ``retryable: false`` holds it at
        once, ``held_reason`` from the result's ``reason`` (see ``HeldReason``).

        Raises:
            TaskNotFound: no such task.
            StaleLease: the worker or token is not the current lease (409).
        """
        now = self._now(now)

        def transaction(conn: Connection) -> Task:
            refusal = self._record(conn, [ReportedResult(task_id, lease_token, result)],
                                   worker_id, now)[0]
            if refusal is not None:
                raise refusal
            return self._load_task(conn, task_id)

        return self._write_transaction(transaction, notify=True)

    def record_results(self, reported: Sequence[ReportedResult], *, worker_id: str,
                       now: float | None = None) -> list[ElasticError | None]:
        """Accept several results of one worker in one transaction, each on its own: one
        from a lease that is not current (or of an unknown task) is refused alone and
        changes nothing; the others are taken.

        Returns:
            For each result in order, None (taken) or the error that refused it.
        """
        now = self._now(now)
        return self._write_transaction(
            lambda conn: self._record(conn, reported, worker_id, now), notify=True)

    def _record(self, conn: Connection, reported: Sequence[ReportedResult], worker_id: str,
                now: float) -> list[ElasticError | None]:
        """Take each result of a current lease (successes in two statements for them all)."""
        rows: dict[str, Mapping[str, Any]] = {row["task_id"]: row for row in conn.execute(
            select(tasks).where(tasks.c.task_id.in_({item.task_id for item in reported}))
            .with_for_update()).mappings()}
        answers: list[ElasticError | None] = []
        succeeded: list[tuple[Mapping[str, Any], Mapping[str, Any]]] = []
        for item in reported:
            try:
                row = _current_lease(rows.get(item.task_id), item, worker_id)
            except (StaleLease, TaskNotFound) as exc:
                answers.append(exc)
                continue
            answers.append(None)
            rows[item.task_id] = {**row, "status": "ended"}  # a second result for it is stale
            if item.result.get("success", True) is not False:
                succeeded.append((row, item.result))
                record_speed(conn, worker_id=worker_id, task_type=row["type"],
                             algorithm=row["algorithm"],
                             seconds=now - (row["started_at"] or now), now=now)
            else:
                self._end_attempt(conn, row, failed_attempt(item.result), now)
        self._complete(conn, succeeded, now)
        failed = sum(answer is None for answer in answers) - len(succeeded)
        if succeeded or failed:
            self._count_for_worker(conn, worker_id, completed=len(succeeded), failed=failed)
        return answers

    def _complete(self, conn: Connection,
                  succeeded: Sequence[tuple[Mapping[str, Any], Mapping[str, Any]]],
                  now: float) -> None:
        """Complete these tasks (row, result) and their attempts: two executemany statements."""
        if not succeeded:
            return
        conn.execute(update(attempts).where(
            attempts.c.task_id == bindparam("done_task"),
            attempts.c.lease_token == bindparam("done_token"),
            attempts.c.outcome == AttemptOutcome.RUNNING.value,
        ).values(outcome=AttemptOutcome.COMPLETED.value, ended_at=now, error=None), [
            {"done_task": row["task_id"], "done_token": row["lease_token"]}
            for row, _ in succeeded])
        conn.execute(update(tasks).where(
            tasks.c.seq == bindparam("done_seq"),
            may_become(TaskStatus.COMPLETED, as_equalities=True)).values(
            status=TaskStatus.COMPLETED.value, finished_at=now, progress=1.0,
            lease_expires_at=None, error=None,
            result=bindparam("done_result", type_=tasks.c.result.type)), [
            {"done_seq": row["seq"], "done_result": finite_json(dict(result))}
            for row, result in succeeded])

    def _current_lease_row(self, conn: Connection, task_id: str, worker_id: str,
                           lease_token: int | None) -> RowMapping:
        query = select(tasks).where(tasks.c.task_id == task_id).with_for_update()
        row = conn.execute(query).mappings().first()
        return _current_lease(row, ReportedResult(task_id, lease_token, {}), worker_id)

    def _finish_attempt(self, conn: Connection, row: RowMapping, outcome: AttemptOutcome,
                        error: str | None, now: float) -> None:
        conn.execute(update(attempts).where(
            attempts.c.task_id == row["task_id"], attempts.c.lease_token == row["lease_token"],
            attempts.c.outcome == AttemptOutcome.RUNNING.value,
        ).values(outcome=outcome.value, ended_at=now, error=error))

    def _end_attempt(self, conn: Connection, row: RowMapping, end: AttemptEnd,
                     now: float) -> TaskStatus | None:
        """End the current lease of ``row`` without success: requeue, hold or fail the task.

        The update is fenced on the lease token: if the lease ended meanwhile (a result
        won the race), nothing changes and None is returned.
        """
        failures = row["failures"] + end.is_failure
        deaths = row["worker_deaths"] + end.is_death
        held_reason, error = end.held_reason, end.error
        if held_reason is None and end.is_death and deaths >= self.retry.max_worker_deaths:
            held_reason = HeldReason.WORKER_DEATHS
            error = f"held: {deaths} workers died while running it (the last: {end.error})"
        if held_reason is not None:
            status = TaskStatus.HELD
        else:
            status = TaskStatus.PENDING if failures <= row["max_retries"] else TaskStatus.FAILED
        values: dict[str, Any] = {
            "status": status.value, "failures": failures, "worker_deaths": deaths,
            "attempts": row["attempts"] if end.counts else row["attempts"] - 1,
            "error": error, "held_reason": held_reason, "lease_expires_at": None}
        if status is TaskStatus.PENDING:
            values.update(self._retry_values(row, end, failures + deaths, now))
        else:
            values.update(finished_at=now, result=end.result)
        changed = conn.execute(update(tasks).where(
            tasks.c.seq == row["seq"], may_become(status),
            tasks.c.status == TaskStatus.ASSIGNED.value,
            tasks.c.lease_token == row["lease_token"]).values(**values)).rowcount
        if not changed:
            return None
        self._finish_attempt(conn, row, end.outcome, end.error, now)
        return status

    def _retry_values(self, row: RowMapping, end: AttemptEnd, bad_attempts: int,
                      now: float) -> dict[str, Any]:
        """Back in the queue: after a counted attempt, wait a backoff, then prefer other workers."""
        delay = self.retry.delay_seconds(bad_attempts, self.jitter()) if end.counts else 0.0
        return {"worker_id": None, "finished_at": None, "result": None,
                "not_before": now + delay,
                "avoid_worker_id": row["worker_id"] if delay else None,
                "avoid_until": now + 2 * delay if delay else None}

    def _count_for_worker(self, conn: Connection, worker_id: str, *, completed: int = 0,
                          failed: int = 0) -> None:
        conn.execute(update(workers).where(workers.c.worker_id == worker_id).values(
            tasks_completed=workers.c.tasks_completed + completed,
            tasks_failed=workers.c.tasks_failed + failed))

    def _leases_of(self, conn: Connection, worker_id: str) -> Sequence[RowMapping]:
        """The rows of the tasks ``worker_id`` holds (rows another transaction locks skipped)."""
        return conn.execute(select(tasks).where(tasks.c.worker_id == worker_id,
                                                tasks.c.status == TaskStatus.ASSIGNED.value)
                            .with_for_update(skip_locked=True)).mappings().all()

    def _end_dead_workers_leases(self, conn: Connection, worker_id: str, error: str,
                                 now: float) -> list[tuple[str, TaskStatus]]:
        """Put back the tasks of a worker that died, each counting the death.

        Every lease it held is a suspect: one its heartbeats list ran in the process that
        died, and one too young to be listed (its poll's answer may have just arrived)
        may be what killed it at once. A lease it never got is not held any more: its
        next heartbeat already gave it back, uncounted (see ``heartbeat``).
        """
        ended = []
        for row in self._leases_of(conn, worker_id):
            status = self._end_attempt(conn, row, AttemptEnd(AttemptOutcome.WORKER_DEAD, error,
                                                             is_death=True), now)
            if status is not None:
                ended.append((row["task_id"], status))
        return ended

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
            self._end_attempt(conn, row, AttemptEnd(AttemptOutcome.HANDED_BACK,
                                                    "handed back by worker"), now)
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

    def expire_leases(self, *, quiet_seconds: float | None = None,
                      now: float | None = None) -> ExpiryReport:
        """Declare silent workers dead, end the attempts whose lease or time limit ran out,
        and note in the orchestrator clock that an expiry pass ran.

        Args:
            quiet_seconds: given (by a serving orchestrator), a gap since the last pass
                longer than this is shifted off live workers' clocks first (see
                ``_shift_clocks``): nobody could hear their heartbeats meanwhile.
        """
        now = self._now(now)

        def transaction(conn: Connection) -> ExpiryReport:
            shifted = 0.0 if quiet_seconds is None else self._shift_clocks(conn, quiet_seconds,
                                                                           now)
            dead = list(conn.scalars(select(workers.c.worker_id).where(
                workers.c.status == WorkerStatus.ONLINE.value,
                workers.c.last_heartbeat_at < now - self.worker_timeout_seconds)))
            ended: list[tuple[str, TaskStatus]] = []
            for worker_id in dead:
                conn.execute(update(workers).where(workers.c.worker_id == worker_id)
                             .values(status=WorkerStatus.DEAD.value))
                ended += self._end_dead_workers_leases(
                    conn, worker_id, f"worker {worker_id} stopped heartbeating", now)
            ended += self._end_overdue_attempts(conn, now)
            self._touch_clock(conn, now)
            if dead or ended:
                self.changes.announce(conn)
            return ExpiryReport(
                workers_dead=dead,
                tasks_requeued=[tid for tid, s in ended if s is TaskStatus.PENDING],
                tasks_failed=[tid for tid, s in ended if s is TaskStatus.FAILED],
                tasks_held=[tid for tid, s in ended if s is TaskStatus.HELD],
                clocks_shifted_seconds=shifted)

        report = self._write_transaction(transaction)
        if report.workers_dead or report.tasks_requeued or report.tasks_failed or report.tasks_held:
            self.changes.notify()
        return report

    def _end_overdue_attempts(self, conn: Connection, now: float) -> list[tuple[str, TaskStatus]]:
        """End the leases nobody renewed and the attempts past their time limit that the
        worker did not stop itself.

        A worker's heartbeats renew every lease it holds, so one that expires was held by
        a worker gone silent: a worker death for the task (found before the worker is
        declared dead when ``lease_seconds`` is the shorter). An attempt past its time
        limit is a failure.
        """
        running = tasks.c.status == TaskStatus.ASSIGNED.value
        limit = func.coalesce(tasks.c.timeout_seconds, self.task_timeout_seconds)
        overdue = [
            (select(tasks).where(running, tasks.c.lease_expires_at < now),
             lambda row: AttemptEnd(AttemptOutcome.EXPIRED,
                                    f"lease expired on worker {row['worker_id']}", is_death=True)),
            (select(tasks).where(running,
                                 tasks.c.started_at + limit + TIME_LIMIT_GRACE_SECONDS < now),
             lambda row: AttemptEnd(AttemptOutcome.TIMED_OUT, time_limit_error(
                 row["timeout_seconds"] or self.task_timeout_seconds), is_failure=True)),
        ]
        ended = []
        for query, end_of in overdue:
            for row in conn.execute(query.with_for_update(skip_locked=True)).mappings().all():
                status = self._end_attempt(conn, row, end_of(row), now)
                if status is not None:
                    ended.append((row["task_id"], status))
        return ended

    def _touch_clock(self, conn: Connection, now: float) -> None:
        """Record that an orchestrator ran the expiry pass at ``now``."""
        last = conn.scalar(select(orchestrator_clock.c.last_expiry_at)
                           .where(orchestrator_clock.c.id == CLOCK_ROW_ID))
        if last is None:
            conn.execute(insert(orchestrator_clock).values(id=CLOCK_ROW_ID, last_expiry_at=now))
        elif last < now:
            conn.execute(update(orchestrator_clock).where(orchestrator_clock.c.id == CLOCK_ROW_ID)
                         .values(last_expiry_at=now))

    def _shift_clocks(self, conn: Connection, quiet_seconds: float, now: float) -> float:
        """Shift live workers' heartbeat clocks and running leases by the time no expiry
        pass ran (all orchestrators down, or the database unwritable: a full disk).

        That time must not count against workers that kept computing (their results
        arrive once the server is back), but a worker already silent keeps the silence it
        had and one that died meanwhile is declared dead on time. A clock is never moved
        past now (a heartbeat heard during the gap is fresh already). A gap up to
        ``quiet_seconds`` means another replica runs the passes: nothing is shifted. The
        clock row is locked, so two replicas starting at once shift once.

        Returns:
            The seconds shifted (0 when none).
        """
        last = conn.scalar(select(orchestrator_clock.c.last_expiry_at)
                           .where(orchestrator_clock.c.id == CLOCK_ROW_ID).with_for_update())
        gap = 0.0 if last is None else now - last
        if gap <= quiet_seconds:
            return 0.0
        expires = tasks.c.lease_expires_at + gap
        renewed = now + self.lease_seconds
        # Task rows before worker rows, as in a result (see ``heartbeat``).
        conn.execute(update(tasks).where(tasks.c.status == TaskStatus.ASSIGNED.value)
                     .values(lease_expires_at=case((expires > renewed, renewed), else_=expires)))
        heard = workers.c.last_heartbeat_at + gap
        conn.execute(update(workers).where(workers.c.status == WorkerStatus.ONLINE.value)
                     .values(last_heartbeat_at=case((heard > now, now), else_=heard)))
        return gap

    def release_hold(self, task_id: str, *, now: float | None = None) -> Task:
        """Put a held task back in the queue with fresh retry and death counts.

        Raises:
            TaskNotFound: no such task.
            WrongState: the task is not held (409).
        """
        now = self._now(now)

        def transaction(conn: Connection) -> Task:
            released = conn.execute(update(tasks).where(
                tasks.c.task_id == task_id, tasks.c.status == TaskStatus.HELD.value,
                may_become(TaskStatus.PENDING)).values(
                status=TaskStatus.PENDING.value, held_reason=None, failures=0, worker_deaths=0,
                worker_id=None, finished_at=None, result=None, exported=0,
                export_claimed_until=None, export_batch=None, not_before=now, avoid_worker_id=None,
                avoid_until=None)).rowcount
            task = self._load_task(conn, task_id)
            if not released:
                raise WrongState(f"task {task_id!r} is {task.status.value}, not held")
            return task

        return self._write_transaction(transaction, notify=True)

    def retry_task(self, task_id: str, *, now: float | None = None) -> Task:
        """Put a failed or cancelled task back in the queue, its attempt history kept and its
        failures and worker deaths counted afresh (its content unchanged).

        Raises:
            TaskNotFound: no such task.
            WrongState: the task is not failed or cancelled (409, naming its state).
        """
        now = self._now(now)
        retryable = [status.value for status in RETRYABLE_STATUSES]

        def transaction(conn: Connection) -> Task:
            requeued = conn.execute(update(tasks).where(
                tasks.c.task_id == task_id, tasks.c.status.in_(retryable)).values(
                **REQUEUED_VALUES, not_before=now)).rowcount
            task = self._load_task(conn, task_id)
            if not requeued:
                raise WrongState(f"task {task_id!r} is {task.status.value}: only a failed or "
                                 "cancelled task can be retried")
            return task

        return self._write_transaction(transaction, notify=True)

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

    def provider_request_holder(self, reservation_id: str) -> str | None:
        """The worker a counted request was granted to (None: no such request)."""
        with self._read() as conn:
            return conn.scalar(select(provider_requests.c.worker_id).where(
                provider_requests.c.reservation_id == reservation_id))

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

    # -- alert outbox -------------------------------------------------------------------

    def enqueue_alerts(self, alerts: Sequence[NewAlert], *, repeat_seconds: float,
                       now: float | None = None) -> int:
        """Queue alerts, leaving out those whose event, subject and target were queued in the
        last ``repeat_seconds``; returns how many were queued."""
        now = self._now(now)

        def transaction(conn: Connection) -> int:
            queued = 0
            for alert in alerts:
                repeated = conn.scalar(select(func.count()).where(
                    alert_outbox.c.event == alert.event, alert_outbox.c.subject == alert.subject,
                    alert_outbox.c.created_at > now - repeat_seconds,
                    alert_outbox.c.target == alert.target))
                if not repeated:
                    conn.execute(insert(alert_outbox).values(
                        **dataclasses.asdict(alert), created_at=now, due_at=now, tries=0))
                    queued += 1
            return queued

        return self._write_transaction(transaction)

    def claim_alerts(self, sender_id: str, *, gather_seconds: float, max_tries: int,
                     claim_seconds: float = ALERT_CLAIM_SECONDS, limit: int = 10_000,
                     now: float | None = None) -> list[QueuedAlert]:
        """Claim the due alerts of every target whose oldest unsent one waited
        ``gather_seconds`` (they go out together), for ``claim_seconds``.

        The claim is a guarded UPDATE (a row already claimed and not run out is left;
        ``SKIP LOCKED`` on PostgreSQL), so replicas never send an alert twice; a sender
        that dies lets its claim run out.
        """
        now = self._now(now)
        claimable = and_(alert_outbox.c.sent_at.is_(None), alert_outbox.c.due_at <= now,
                         alert_outbox.c.tries < max_tries,
                         or_(alert_outbox.c.claimed_until.is_(None),
                             alert_outbox.c.claimed_until < now))
        ready = (select(alert_outbox.c.target).where(claimable).group_by(alert_outbox.c.target)
                 .having(func.min(alert_outbox.c.created_at) <= now - gather_seconds))
        rows = (select(alert_outbox.c.id).where(claimable, alert_outbox.c.target.in_(ready))
                .order_by(alert_outbox.c.id).limit(limit).with_for_update(skip_locked=True))

        def transaction(conn: Connection) -> list[QueuedAlert]:
            claimed = conn.execute(update(alert_outbox).where(
                alert_outbox.c.id.in_(rows), claimable).values(
                claimed_by=sender_id, claimed_until=now + claim_seconds).returning(
                *(alert_outbox.c[name] for name in QueuedAlert.__dataclass_fields__)))
            return sorted((QueuedAlert(**row) for row in claimed.mappings()),
                          key=lambda alert: alert.id)

        return self._write_transaction(transaction)

    def finish_alerts(self, ids: Sequence[int], sender_id: str, *, error: str | None = None,
                      retry_seconds: float = 0.0, now: float | None = None) -> None:
        """End a sender's claim of ``ids``: sent (no ``error``), or failed and due again in
        ``retry_seconds``, its try counted."""
        now = self._now(now)
        values: dict[str, Any] = ({"sent_at": now, "last_error": None} if error is None else
                                  {"due_at": now + retry_seconds, "last_error": error,
                                   "tries": alert_outbox.c.tries + 1})

        def transaction(conn: Connection) -> None:
            conn.execute(update(alert_outbox).where(
                alert_outbox.c.id.in_(list(ids)), alert_outbox.c.claimed_by == sender_id,
                alert_outbox.c.sent_at.is_(None)).values(
                **values, claimed_by=None, claimed_until=None))

        self._write_transaction(transaction)

    def prune_alerts(self, *, older_than: float, max_tries: int) -> int:
        """Delete alerts sent before ``older_than``, and those given up on (``max_tries``
        used) queued before it; returns how many."""
        def transaction(conn: Connection) -> int:
            return conn.execute(delete(alert_outbox).where(or_(
                alert_outbox.c.sent_at < older_than,
                and_(alert_outbox.c.tries >= max_tries, alert_outbox.c.created_at < older_than),
            ))).rowcount

        return self._write_transaction(transaction)

    def last_task_activity_at(self) -> float | None:
        """When a task last started (its newest attempt) or ended; None before any."""
        with self._read() as conn:
            started = conn.scalar(select(attempts.c.started_at).order_by(attempts.c.id.desc())
                                  .limit(1))
            ended = [conn.scalar(select(func.max(tasks.c.finished_at))
                                 .where(tasks.c.exported == flag)) for flag in (0, 1)]
        return max((moment for moment in (started, *ended) if moment is not None), default=None)

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
                   task_types: Sequence[str] | None = None, before_seq: int | None = None,
                   limit: int | None = None, newest_first: bool = False) -> list[Task]:
        """Tasks, optionally only these ids, statuses and types, in queue order (or newest
        first); ``before_seq`` pages on (keyset: only tasks submitted before that one)."""
        query = select(tasks)
        if task_ids is not None:
            query = query.where(tasks.c.task_id.in_(list(task_ids)))
        if statuses:
            query = query.where(tasks.c.status.in_([s.value for s in statuses]))
        if task_types:
            query = query.where(tasks.c.type.in_(list(task_types)))
        if before_seq is not None:
            query = query.where(tasks.c.seq < literal(before_seq, BigInteger()))
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

    def count_queue_by_priority(self) -> list[QueueCount]:
        """Number of tasks per status and priority (one scan of the queue index)."""
        query = (select(tasks.c.status, tasks.c.priority, func.count())
                 .group_by(tasks.c.status, tasks.c.priority))
        with self._read() as conn:
            return [QueueCount(TaskStatus(status), priority, count)
                    for status, priority, count in conn.execute(query)]

    def oldest_pending_created_at(self) -> float | None:
        """When the longest-waiting pending task was submitted (None: nothing waits)."""
        first = (select(func.min(tasks.c.seq))
                 .where(tasks.c.status == TaskStatus.PENDING.value).scalar_subquery())
        with self._read() as conn:
            return conn.scalar(select(tasks.c.created_at).where(tasks.c.seq == first))

    def summarize_finished(self, *, since: float, until: float) -> FinishedSummary:
        """How many tasks ended in ``(since, until]`` and how long they took on average
        (run time from the last start, and time from submit). ``exported IN (0, 1)`` lets
        both databases range-scan the finished-at index instead of every row."""
        is_completed = case((tasks.c.status == TaskStatus.COMPLETED.value, 1), else_=0)
        query = (select(func.count(), func.sum(is_completed),
                        func.avg(tasks.c.finished_at - tasks.c.started_at),
                        func.avg(tasks.c.finished_at - tasks.c.created_at))
                 .where(tasks.c.exported.in_([0, 1]), tasks.c.finished_at > since,
                        tasks.c.finished_at <= until,
                        tasks.c.status.in_([TaskStatus.COMPLETED.value, TaskStatus.FAILED.value])))
        with self._read() as conn:
            ended, completed, run_seconds, latency_seconds = conn.execute(query).one()
        completed = int(completed or 0)
        return FinishedSummary(completed=completed, failed=ended - completed,
                               mean_run_seconds=_float_or_none(run_seconds),
                               mean_latency_seconds=_float_or_none(latency_seconds))

    def queue_metrics(self) -> QueueMetrics:
        """The counts ``/metrics`` shows, in one read: GROUP BY queries over indexes
        (``ix_tasks_status_type``, ``ix_tasks_queue``, ``ix_attempts_outcome``), and one
        row for the oldest pending task; never every row."""
        pending = tasks.c.status == TaskStatus.PENDING.value
        with self._read() as conn:
            by_state = {(row[0], row[1]): row[2] for row in conn.execute(
                select(tasks.c.status, tasks.c.type, func.count())
                .group_by(tasks.c.status, tasks.c.type))}
            by_priority = conn.execute(select(tasks.c.priority, func.count(), func.min(tasks.c.seq))
                                       .where(pending).group_by(tasks.c.priority)).all()
            oldest_seq = min((row[2] for row in by_priority), default=None)
            oldest = None if oldest_seq is None else conn.scalar(
                select(tasks.c.created_at).where(tasks.c.seq == oldest_seq))
            outcomes = {row[0]: row[1] for row in conn.execute(
                select(attempts.c.outcome, func.count()).group_by(attempts.c.outcome))}
            retried = conn.scalar(select(func.count()).where(attempts.c.attempt > 1)) or 0
        return QueueMetrics(tasks_by_status_and_type=by_state,
                            pending_by_priority={row[0]: row[1] for row in by_priority},
                            oldest_pending_created_at=oldest, attempts_by_outcome=outcomes,
                            retried_attempts=retried)

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

    def claim_tasks_to_export(self, batch: str, *, limit: int = 10_000,
                              now: float | None = None) -> list[Task]:
        """Take ended (or held) tasks not yet in a results file, in the order they ended, for
        the results file of ``batch``. A held task is written as held; released, it is
        written again once it ends.

        One statement claims them for ``EXPORT_CLAIM_SECONDS`` (``SKIP LOCKED``), so replicas
        writing results at once never take the same task; ``mark_exported`` ends the
        claim. A writer that dies first lets it run out: ``interrupted_exports`` then
        finds the batch, and the results file (which names its batch) says whether the
        tasks made it into one.
        """
        now = self._now(now)
        candidates = (select(tasks.c.seq).where(
            tasks.c.exported == 0, tasks.c.status.in_([s.value for s in SETTLED_STATUSES]),
            tasks.c.export_batch.is_(None))
            .order_by(tasks.c.finished_at, tasks.c.seq).limit(limit)
            .with_for_update(skip_locked=True))

        def transaction(conn: Connection) -> list[Task]:
            rows = conn.execute(update(tasks).where(tasks.c.seq.in_(candidates))
                                .values(export_claimed_until=now + EXPORT_CLAIM_SECONDS,
                                        export_batch=batch)
                                .returning(*tasks.c)).mappings().all()
            return sorted((Task.from_row(row) for row in rows),
                          key=lambda task: (task.finished_at or 0.0, task.seq))

        return self._write_transaction(transaction)

    def interrupted_exports(self, *, every_claim: bool = False,
                            now: float | None = None) -> list[ExportClaim]:
        """Claims for a results file whose tasks were never marked exported: the writer died.

        A claim counts once it ran out, or at once with ``every_claim`` (an orchestrator
        that alone owns the database, as SQLite's lock makes it, knows any claim it finds
        at start is a dead writer's).
        """
        now = self._now(now)
        conditions = [tasks.c.exported == 0, tasks.c.export_batch.is_not(None)]
        if not every_claim:
            conditions.append(tasks.c.export_claimed_until < now)
        query = select(tasks.c.export_batch, tasks.c.task_id,
                       tasks.c.export_claimed_until).where(*conditions)
        claims: dict[str, ExportClaim] = {}
        with self._read() as conn:
            for batch, task_id, claimed_until in conn.execute(query):
                claim = claims.setdefault(batch, ExportClaim(
                    batch=batch, task_ids=[], claimed_at=claimed_until - EXPORT_CLAIM_SECONDS))
                claim.task_ids.append(task_id)
        return list(claims.values())

    def release_export_claims(self, task_ids: Sequence[str]) -> None:
        """Give claimed tasks back to the next results file (theirs was never written)."""
        def transaction(conn: Connection) -> None:
            conn.execute(update(tasks).where(tasks.c.task_id.in_(list(task_ids)),
                                             tasks.c.exported == 0)
                         .values(export_claimed_until=None, export_batch=None))

        self._write_transaction(transaction)

    def mark_exported(self, task_ids: Sequence[str]) -> None:
        """Remember that these tasks are in a results file."""
        def transaction(conn: Connection) -> None:
            conn.execute(update(tasks).where(tasks.c.task_id.in_(list(task_ids)))
                         .values(exported=1, export_claimed_until=None, export_batch=None))

        self._write_transaction(transaction)

    def ended_tasks_page(self, *, since: float | None = None,
                         after: tuple[float, int] | None = None,
                         limit: int = 500) -> list[Task]:
        """Up to ``limit`` ended tasks (completed, failed, cancelled) and held ones in the order
        they ended (or were held),
        those that ended at or after ``since``, after ``(finished_at, seq)`` of the last
        task of the previous page (keyset paging: a task ending meanwhile comes last)."""
        conditions = [tasks.c.status.in_([s.value for s in SETTLED_STATUSES])]
        if since is not None:
            conditions.append(tasks.c.finished_at >= since)
        if after is not None:
            finished_at, seq = after
            after_seq = literal(seq, BigInteger())  # any cursor compares, however large
            conditions.append(or_(tasks.c.finished_at > finished_at,
                                  and_(tasks.c.finished_at == finished_at,
                                       tasks.c.seq > after_seq)))
        query = (select(tasks).where(and_(*conditions))
                 .order_by(tasks.c.finished_at, tasks.c.seq).limit(limit))
        with self._read() as conn:
            return [Task.from_row(row) for row in conn.execute(query).mappings()]
