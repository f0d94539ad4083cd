"""The one error vocabulary of elastic.

Every error the core raises is an ``ElasticError``. Its docstring is the default
message; ``http_status`` is what the HTTP API answers with and ``exit_code`` what
the command line exits with. The store, the server and the CLI translate to and
from these at their edges, and nowhere else.
"""

from __future__ import annotations


class ElasticError(Exception):
    """Something went wrong in elastic."""

    http_status = 500
    exit_code = 1
    retryable = True  # whether another attempt of the task could succeed
    hand_back = False  # True: this worker cannot run it now but another could; not a failure
    # Why a task that raised it (not retryable) is held: one of elastic.tasks.HeldReason.
    held_reason = "not_retryable"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())

    @property
    def message(self) -> str:
        """The human-readable message."""
        return str(self.args[0])


class InvalidInput(ElasticError):
    """The request or file is not valid."""

    http_status = 400
    exit_code = 2
    retryable = False
    held_reason = "invalid_input"


class InvalidTask(InvalidInput):
    """A task is not valid.

    ``field`` names the offending field (dotted path, e.g. ``data.parameters.seed``)
    and ``index`` the task's position in its file or request, when there is one.
    """

    def __init__(self, problem: str, *, field: str | None = None, index: int | None = None) -> None:
        self.problem = problem
        self.field = field
        self.index = index
        where = []
        if index is not None:
            where.append(f"task {index}")
        if field:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {problem}" if prefix else problem)

    def as_dict(self) -> dict[str, object]:
        """The error as JSON-ready data (for rejected-file reports and HTTP bodies)."""
        return {"error": self.message, "index": self.index, "field": self.field,
                "problem": self.problem}


class UnknownTaskType(InvalidTask):
    """The task type is not one elastic knows."""


class UnavailableAlgorithm(ElasticError):
    """The requested simulation algorithm is not available on this machine."""

    retryable = False
    held_reason = "unavailable"


class NotFound(ElasticError):
    """The thing asked for does not exist."""

    http_status = 404


class TaskNotFound(NotFound):
    """No task has that id."""


class WorkerNotFound(NotFound):
    """No worker has that id; register first."""


class Conflict(ElasticError):
    """The request conflicts with the current state."""

    http_status = 409


class StaleLease(Conflict):
    """The lease is not current: the task was given to someone else, or already ended."""


class WrongState(Conflict):
    """The task is not in a state that allows this."""


class WorkerIdTaken(Conflict):
    """A live worker holds this id with a secret; only it (or after it dies, anyone) may register it."""


class Unauthorized(ElasticError):
    """Missing or wrong bearer token."""

    http_status = 401


class UndeclaredWorker(ElasticError):
    """This worker id is not in the declared fleet, and undeclared workers are refused."""

    http_status = 403
    exit_code = 2  # a configuration matter: declare it, or start it under a declared id


class CrossSiteRequest(ElasticError):
    """A browser sent a state-changing request from another site's page (its Origin is not
    this server); open the dashboard from this server instead."""

    http_status = 403


class BodyTooLarge(ElasticError):
    """The request body is larger than the server accepts."""

    http_status = 413


class StorageFull(ElasticError):
    """The database's disk is full: free some space. Nothing already accepted was lost."""

    http_status = 507


class TaskCancelled(ElasticError):
    """The task was cancelled while it ran."""


class ServerUnreachable(ElasticError):
    """The orchestrator could not be reached."""


class TaskTimeout(ElasticError):
    """The task did not end in the time allowed."""


class ConfigError(ElasticError):
    """A configuration value is not valid."""

    exit_code = 2

    def __init__(self, key: str, source: str, wanted: str, value: object = None) -> None:
        self.key, self.source, self.wanted = key, source, wanted
        shown = "" if value is None else f" = {value!r}"
        super().__init__(f"config: {key}{shown} (from {source}): wanted {wanted}")


class AnswerLost(ServerUnreachable):
    """The request reached the orchestrator but no answer came back: it may have acted on it."""


class TaskFailed(ElasticError):
    """The task failed; ``error`` says why and ``status`` is the orchestrator's record of it."""

    def __init__(self, task_id: str, error: str | None, status: dict[str, object]) -> None:
        self.task_id = task_id
        self.error = error
        self.status = dict(status)
        super().__init__(f"task {task_id} failed: {error or 'no error message'}")


class NoWorkerCanRun(ElasticError):
    """No live worker can run the task: none offers its type, algorithm or model."""

    def __init__(self, task_id: str, reason: str) -> None:
        self.task_id = task_id
        self.reason = reason
        super().__init__(f"task {task_id} cannot run: {reason}; it stays queued until such a "
                         "worker is online")


class TaskHeld(ElasticError):
    """The task is held: it will not finish by itself (its attempts crashed workers, or a retry
    cannot fix its error) until someone releases or cancels it."""

    def __init__(self, task_id: str, reason: str | None) -> None:
        self.task_id = task_id
        self.reason = reason
        super().__init__(f"task {task_id} is held: {reason or 'no reason given'}")
