"""Task and worker records, their states, the allowed transitions and the priority rule.

This module is the one place for these rules: the store, the server views and the
CLI all call it. Times are seconds since the epoch (UTC) as floats: the same on
SQLite and PostgreSQL, and trivially comparable.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

TASK_TYPES = (
    "agent_action",
    "code_generation",
    "evolution_crossover",
    "evolution_mutation",
    "simulation",
    "noop",
)
LLM_TASK_TYPES = ("agent_action", "code_generation")
EVOLUTION_TASK_TYPES = ("evolution_crossover", "evolution_mutation")

PRIORITY_WORDS = {"high": 8, "medium": 5, "low": 2}
DEFAULT_PRIORITY = 5
MIN_PRIORITY, MAX_PRIORITY = 1, 10
MAX_ID_LENGTH = 200  # task and worker ids (the tables' String(200))
MAX_SOURCE_LENGTH = 500  # a task's source: the file it came from (the table's String(500))
MAX_ESTIMATED_TOKENS = 10**9  # the most tokens a request or a budget may speak of
MAX_TIMEOUT_SECONDS = 30 * 86_400  # the longest time limit a task may ask for
MAX_MODEL_LENGTH = 200  # a task's model name (the tasks table's String(200))
MAX_ALGORITHM_LENGTH = 64  # a task's algorithm (the tasks table's String(64))
# What any JSON we take in may hold (HTTP bodies, task files, the client's local path):
# deeper nesting overflows the recursive code that walks it, more than 64-bit integers do
# not fit the databases' integer columns, and a body of ten million tiny values is a bomb.
MAX_JSON_DEPTH = 64
MAX_JSON_VALUES = 1_000_000
MIN_JSON_INTEGER, MAX_JSON_INTEGER = -(2**63), 2**63 - 1


class TaskStatus(enum.StrEnum):
    """Where a task is in its life. ``pending`` after a failed attempt reads
    ``redistributed`` in the seed-004 views (see elastic/seed004.py). ``held`` waits for
    a person (``elastic release``): its attempts killed workers, or a retry cannot fix it;
    it shows as ``held`` in every view."""

    PENDING = "pending"
    ASSIGNED = "assigned"
    HELD = "held"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        """Whether the task has ended for good."""
        return self in FINAL_STATUSES

    @property
    def is_settled(self) -> bool:
        """Whether the task will not move by itself: ended, or held for a person.

        Whoever waits for a task (``elastic run``, ``submit --wait``, a long poll) stops here.
        """
        return self in SETTLED_STATUSES


# The state machine: every status write in the store is guarded by this table (see
# ``statuses_that_may_become``), so a new state is one enum member and one row here.
ALLOWED_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.PENDING: frozenset({TaskStatus.ASSIGNED, TaskStatus.CANCELLED}),
    TaskStatus.ASSIGNED: frozenset({TaskStatus.PENDING, TaskStatus.HELD, TaskStatus.COMPLETED,
                                    TaskStatus.FAILED, TaskStatus.CANCELLED}),
    TaskStatus.HELD: frozenset({TaskStatus.PENDING, TaskStatus.CANCELLED}),
    TaskStatus.COMPLETED: frozenset(),
    TaskStatus.FAILED: frozenset({TaskStatus.PENDING}),  # retried by hand
    TaskStatus.CANCELLED: frozenset({TaskStatus.PENDING}),  # retried by hand
}

FINAL_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED})
# Statuses only a person moves a task out of (``held``: ``elastic release`` or cancel).
SETTLED_STATUSES = FINAL_STATUSES | {TaskStatus.HELD}


def can_transition(old: TaskStatus, new: TaskStatus) -> bool:
    """Whether the state machine allows ``old`` -> ``new``."""
    return new in ALLOWED_TRANSITIONS[old]


# Ended tasks that a user may put back in the queue (``elastic retry``, ``submit --replace``).
RETRYABLE_STATUSES = frozenset(status for status in FINAL_STATUSES
                               if can_transition(status, TaskStatus.PENDING))


def statuses_that_may_become(new: TaskStatus) -> tuple[TaskStatus, ...]:
    """Every status the state machine lets move to ``new``, in the enum's order."""
    return tuple(old for old in TaskStatus if can_transition(old, new))


class WorkerStatus(enum.StrEnum):
    """A worker's state in the seed-000 words. ``busy`` is derived (online with leases)."""

    ONLINE = "online"
    BUSY = "busy"
    DEAD = "dead"
    OFFLINE = "offline"


class AttemptOutcome(enum.StrEnum):
    """How one lease of a task ended."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    TIMED_OUT = "timed_out"  # ran past its timeout_seconds
    WORKER_DEAD = "worker_dead"
    HANDED_BACK = "handed_back"
    UNDELIVERED = "undelivered"  # the worker never got the lease (the answer was lost)
    CANCELLED = "cancelled"


class HeldReason(enum.StrEnum):
    """Why a task is ``held``: machine-readable, in ``held_reason``."""

    WORKER_DEATHS = "worker_deaths"  # workers died while running it, max_worker_deaths times
    INVALID_INPUT = "invalid_input"  # its data is not valid (checked where it runs)
    REJECTED_BY_PROVIDER = "rejected_by_provider"  # bad API key, unknown model...
    UNAVAILABLE = "unavailable"  # what it needs is missing on the worker (a kernel not built)
    RESULT_TOO_LARGE = "result_too_large"  # over the server's max_body_bytes
    NOT_RETRYABLE = "not_retryable"  # any other failure its worker says a retry cannot fix

    @classmethod
    def of(cls, word: object) -> HeldReason:
        """The reason a worker reported (``reason`` of a failed result); unknown words are
        ``not_retryable``."""
        try:
            return cls(word)
        except ValueError:
            return cls.NOT_RETRYABLE


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """What happens after an attempt ends without a result: the one place for the rule.

    A failed attempt is retried ``max_retries`` times; a worker dying while it runs the
    task is counted apart (``worker_deaths``) and the task is held after
    ``max_worker_deaths`` of them (a poison task); a retry waits ``backoff_seconds``,
    doubling up to ``backoff_max_seconds``, times a random factor in [0.5, 1] (jitter),
    and for one more such wait only other workers than the last one to fail it may take it.
    """

    max_retries: int = 3
    max_worker_deaths: int = 3
    backoff_seconds: float = 2.0
    backoff_max_seconds: float = 60.0

    def delay_seconds(self, bad_attempts: int, jitter: float) -> float:
        """The wait before retry number ``bad_attempts`` (1 = the first), ``jitter`` in [0, 1)."""
        if bad_attempts <= 0 or self.backoff_seconds <= 0:
            return 0.0
        doubled = self.backoff_seconds * 2.0 ** min(bad_attempts - 1, 30)
        return min(self.backoff_max_seconds, doubled) * (0.5 + jitter / 2)


def whole_number(value: object) -> int | None:
    """``value`` as an int where JSON calls it an integer (``5`` or ``5.0``, not ``true``), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value if isinstance(value, int) else None


def parse_priority(value: object) -> int:
    """Turn a priority word (high/medium/low) or an integer 1..10 into 1..10.

    Raises:
        ValueError: with a message saying what is accepted.
    """
    if isinstance(value, str) and value.strip().lower() in PRIORITY_WORDS:
        return PRIORITY_WORDS[value.strip().lower()]
    number = whole_number(value)
    if number is None:
        raise ValueError(f"must be an integer 1..10 or one of high/medium/low, got {value!r}")
    if not MIN_PRIORITY <= number <= MAX_PRIORITY:
        raise ValueError(f"must be between 1 and 10, got {number}")
    return number


def id_problem(value: object) -> str | None:
    """What is wrong with ``value`` as a task or worker id, or None when it is a good one."""
    if (not isinstance(value, str) or not value.strip() or len(value) > MAX_ID_LENGTH
            or "/" in value or "\x00" in value):
        return f"must be a string of 1..{MAX_ID_LENGTH} characters without '/' or NUL"
    return None


def parse_timeout_seconds(value: object) -> float:
    """A task's ``timeout_seconds``: a number of seconds above 0, at most 30 days.

    Raises:
        ValueError: saying what is accepted.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number of seconds, got {value!r}")
    if not 0 < value <= MAX_TIMEOUT_SECONDS:
        raise ValueError(f"must be above 0 and at most {MAX_TIMEOUT_SECONDS} seconds, got {value!r}")
    return float(value)


def time_limit_error(timeout_seconds: float) -> str:
    """The error of an attempt stopped at its time limit (by its worker or the server)."""
    return f"ran longer than its time limit of {timeout_seconds:g} s (timeout_seconds)"


def priority_word(priority: int) -> str:
    """The seed-004 word for a numeric priority (8+ high, 4..7 medium, else low)."""
    if priority >= 8:
        return "high"
    if priority >= 4:
        return "medium"
    return "low"


def needs_llm(task_type: str, data: Mapping[str, Any]) -> bool:
    """Whether a task calls an LLM: an LLM task type, or evolution in ``mode: "llm"``."""
    return task_type in LLM_TASK_TYPES or data.get("mode") == "llm"


def estimate_tokens(task_type: str, data: Mapping[str, Any]) -> int:
    """A rough token estimate for an LLM task (prompt chars / 4 + the answer budget).

    Used by workers to check a provider's budget before leasing; 0 for non-LLM tasks.
    """
    if not needs_llm(task_type, data):
        return 0
    text = repr(data.get("messages") or data.get("prompt") or data)
    answer = data.get("max_tokens") if isinstance(data.get("max_tokens"), int) else 1024
    return math.ceil(len(text) / 4) + answer


def content_hash(task_type: str, data: Mapping[str, Any]) -> str:
    """A digest of what a task does (its type and data; not its priority or description),
    stored with it, so that a known task id submitted again with other content is seen."""
    text = json.dumps([task_type, data], sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def requirement_of(task_type: str, data: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The (algorithm, model) a worker must offer to take this task; None means any."""
    algorithm = data.get("algorithm") if task_type == "simulation" else None
    model = data.get("model") if isinstance(data.get("model"), str) else None
    return (algorithm if isinstance(algorithm, str) else None), model


def requirement_problem(task_type: str, data: Mapping[str, Any]) -> tuple[str, str] | None:
    """An algorithm or model name too long to store (the tasks table's columns), as
    ``(field in data, problem)``, or None."""
    algorithm, model = requirement_of(task_type, data)
    if algorithm is not None and len(algorithm) > MAX_ALGORITHM_LENGTH:
        return "algorithm", f"must be at most {MAX_ALGORITHM_LENGTH} characters"
    if model is not None and len(model) > MAX_MODEL_LENGTH:
        return "model", f"must be at most {MAX_MODEL_LENGTH} characters"
    return None


@dataclass(frozen=True, kw_only=True)
class Requirement:
    """What a worker must offer to run a task: its type, and the algorithm or model it names."""

    task_type: str
    algorithm: str | None = None
    model: str | None = None

    @classmethod
    def of(cls, task_type: str, data: Mapping[str, Any]) -> Requirement:
        """The requirement of a task of ``task_type`` with ``data``."""
        algorithm, model = requirement_of(task_type, data)
        return cls(task_type=task_type, algorithm=algorithm, model=model)

    def is_met_by(self, worker: Worker) -> bool:
        """Whether ``worker`` can run it: the rule the store's lease statement applies in SQL."""
        return (self.task_type in worker.task_types
                and (self.algorithm is None or self.algorithm in worker.algorithms)
                and (self.model is None or not worker.models or self.model in worker.models))

    def unmet_reason(self, workers: Iterable[Worker]) -> str | None:
        """Why none of the live ``workers`` can run it (naming the type, algorithm or
        model nobody offers), or None when one of them can."""
        live = [worker for worker in workers if worker.is_live]
        if any(self.is_met_by(worker) for worker in live):
            return None
        typed = [worker for worker in live if self.task_type in worker.task_types]
        if not typed:
            return f"no online worker runs {self.task_type} tasks"
        if self.algorithm is not None and not any(self.algorithm in w.algorithms for w in typed):
            return f"no online worker offers algorithm {self.algorithm!r}"
        return f"no online worker offers model {self.model!r}"


def json_value_problem(value: object, *, path: str = "") -> tuple[str, str] | None:
    """The first thing in decoded JSON ``value`` that elastic refuses to take in, as
    ``(field path, problem)``, or None: the one gate for bodies, task files and tasks.

    Refused: nesting deeper than ``MAX_JSON_DEPTH``, more than ``MAX_JSON_VALUES`` values,
    a lone surrogate or a NUL character in a string or key (not storable as UTF-8 text,
    nor in PostgreSQL), a number that is not finite (``1e999``) and an integer beyond 64 bits.
    """
    pending: list[tuple[str, object, int]] = [(path, value, 0)]
    for _ in range(MAX_JSON_VALUES):
        if not pending:
            return None
        where, item, depth = pending.pop()
        problem = _scalar_problem(item)
        if problem:
            return where, problem
        if isinstance(item, dict | list) and depth >= MAX_JSON_DEPTH:
            return where, f"nested deeper than {MAX_JSON_DEPTH} levels"
        if isinstance(item, dict):
            for key, child in item.items():
                key_problem = _scalar_problem(key)
                child_path = f"{where}.{key}" if where else str(key)
                if key_problem:
                    return child_path.encode("utf-8", "backslashreplace").decode(), key_problem
                pending.append((child_path, child, depth + 1))
        elif isinstance(item, list):
            pending.extend((f"{where}[{index}]", child, depth + 1)
                           for index, child in enumerate(item))
    return path, f"holds more than {MAX_JSON_VALUES} values"


def _scalar_problem(item: object) -> str | None:
    if isinstance(item, str):
        if "\x00" in item:
            return "must not contain a NUL character"
        try:
            item.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"holds a lone surrogate ({item[exc.start]!a}), which is not text"
    elif isinstance(item, float) and not math.isfinite(item):
        return f"must be a finite number, got {item}"
    elif isinstance(item, int) and not MIN_JSON_INTEGER <= item <= MAX_JSON_INTEGER:
        return "must be an integer that fits in 64 bits"
    return None


def finite_json(value: Any) -> Any:
    """``value`` made writable as strict UTF-8 JSON whatever it holds: NaN and infinities
    (a diverged simulation's energy) become null, a lone surrogate or a NUL character
    (say in a model's answer) becomes U+FFFD.

    None of them is storable JSON text: PostgreSQL refuses them, strict parsers and UTF-8
    files choke on them. Cheap in the common case: only a string that is bad is rebuilt.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str):
        return _text_of(value)
    if isinstance(value, dict):
        return {_text_of(key) if isinstance(key, str) else key: finite_json(item)
                for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(item) for item in value]
    return value


def _text_of(text: str) -> str:
    text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def iso(timestamp: float | None) -> str | None:
    """Seconds since the epoch as an ISO-8601 UTC string (None stays None)."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, kw_only=True)
class NewTask:
    """A validated task about to be queued."""

    task_id: str
    type: str
    data: dict[str, Any]
    priority: int = DEFAULT_PRIORITY
    description: str | None = None
    source: str | None = None
    timeout_seconds: float | None = None  # None: the server's task_timeout_seconds


@dataclass(frozen=True)
class SubmitOutcome:
    """What submitting one task did: ``created`` is False when the id already existed;
    ``changed``: it existed with other content (type or data); ``replaced``: and that task
    took the new content and went back to the queue (``replace``)."""

    task_id: str
    created: bool
    changed: bool = False
    replaced: bool = False


@dataclass(frozen=True, kw_only=True)
class Task:
    """A task as stored."""

    task_id: str
    seq: int
    type: str
    data: dict[str, Any]
    priority: int
    status: TaskStatus
    algorithm: str | None
    model: str | None
    estimated_tokens: int
    description: str | None
    source: str | None
    attempts: int
    failures: int
    worker_deaths: int
    max_retries: int
    held_reason: str | None
    timeout_seconds: float | None
    not_before: float
    worker_id: str | None
    lease_token: int
    lease_expires_at: float | None
    progress: float | None
    checkpoint: dict[str, Any] | None
    result: dict[str, Any] | None
    error: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Task:
        """Build from a database row mapping."""
        values = {name: row[name] for name in cls.__dataclass_fields__}
        values["status"] = TaskStatus(values["status"])
        return cls(**values)

    @property
    def is_redistributed(self) -> bool:
        """Pending again after at least one attempt (the seed-004 'redistributed')."""
        return self.status is TaskStatus.PENDING and self.attempts > 0

    @property
    def execution_time_s(self) -> float | None:
        """Seconds from the last lease start to the end, when ended."""
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


@dataclass(frozen=True, kw_only=True)
class Lease:
    """A task handed to a worker: the task, the fencing token that proves it, and how long
    the attempt may run (the task's ``timeout_seconds`` or the server's default)."""

    task: Task
    lease_token: int
    lease_expires_at: float
    timeout_seconds: float


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """One lease of a task and how it ended."""

    task_id: str
    attempt: int
    worker_id: str
    lease_token: int
    started_at: float
    ended_at: float | None
    outcome: str
    error: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Attempt:
        """Build from a database row mapping."""
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


@dataclass(frozen=True, kw_only=True)
class Worker:
    """A registered worker."""

    worker_id: str
    worker_type: str
    capabilities: dict[str, Any]
    task_types: list[str]
    algorithms: list[str]
    models: list[str]
    capacity: int
    status: WorkerStatus
    registered_at: float
    last_heartbeat_at: float
    tasks_completed: int
    tasks_failed: int
    info: dict[str, Any] = field(default_factory=dict)
    active_tasks: int = 0

    @classmethod
    def from_row(cls, row: Mapping[str, Any], *, active_tasks: int = 0) -> Worker:
        """Build from a database row mapping; ``busy`` is derived from active leases."""
        values = {name: row[name] for name in cls.__dataclass_fields__ if name != "active_tasks"}
        status = WorkerStatus(values["status"])
        if status is WorkerStatus.ONLINE and active_tasks > 0:
            status = WorkerStatus.BUSY
        values["status"] = status
        return cls(**values, active_tasks=active_tasks)

    @property
    def is_live(self) -> bool:
        """Online or busy (the seed-004 'active')."""
        return self.status in (WorkerStatus.ONLINE, WorkerStatus.BUSY)

    @property
    def success_rate(self) -> float | None:
        """Completed / (completed + failed), or None before any result."""
        total = self.tasks_completed + self.tasks_failed
        return None if total == 0 else self.tasks_completed / total
