"""The client's sans-IO core: every request it builds, every answer it reads, every rule.

``Client`` (blocking) and ``AsyncClient`` (asyncio) share this module and only carry
out the effects a *flow* yields. A flow is a generator that yields effects and
returns a value:

- ``Call``: one HTTP request; the flow is sent the decoded JSON object back, or the
  ``ElasticError`` is thrown in (``ServerUnreachable`` when nothing answered).
- ``Pause``: sleep that long.
- ``WaitFor``: wait until a task ends or cannot run; sent its record, or None
  after the deadline. A blocking client runs ``settle_flow``; the asyncio one
  gathers every concurrent ``WaitFor`` into a few multiplexed requests.
- ``RunHere``: run a task with this process's executor; sent the result dict.
- ``Emit``: hand a value to the caller (``as_completed``).

Rules that live here: retries with backoff while the orchestrator is unreachable
(bounded by the wait's deadline), the local fallback (never for a task the
orchestrator may still run), and how a task's record becomes a typed result or an error.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx

from elastic import __version__
from elastic.client.results import AgentActionResult, CodeGenerationResult, TaskResult, result_of
from elastic.errors import (
    AnswerLost,
    Conflict,
    ElasticError,
    InvalidTask,
    NotFound,
    NoWorkerCanRun,
    ServerUnreachable,
    TaskCancelled,
    TaskFailed,
    TaskHeld,
    TaskNotFound,
    TaskTimeout,
)
from elastic.tasks import EVOLUTION_TASK_TYPES, LLM_TASK_TYPES
from elastic.transport import (
    DEFAULT_SERVER,
    MAX_IDS_PER_WAIT,
    WAIT_PATH,
    error_from_answer,
    task_path,
    task_status_path,
)

T = TypeVar("T")

DEFAULT_PRIORITY = 5
DEFAULT_REQUEST_TIMEOUT_SECONDS = 10.0
DEFAULT_WAIT_SECONDS = 600.0
DEFAULT_RECHECK_AFTER_SECONDS = 15.0
MAX_HOLD_SECONDS = 30.0
FIRST_RETRY_SECONDS = 0.1
MAX_RETRY_SECONDS = 2.0

GATEWAY_STATUSES = (502, 503, 504)
NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class Call:
    """One HTTP request; ``hold_seconds`` is how long the server may hold it (a long poll)."""

    method: str
    path: str
    body: Any = None
    hold_seconds: float = 0.0
    not_found: type[ElasticError] = NotFound


@dataclass(frozen=True)
class Pause:
    """Sleep ``seconds``."""

    seconds: float


@dataclass(frozen=True)
class WaitFor:
    """Wait until the task ends or cannot run, at most until ``deadline`` (None: no limit)."""

    task_id: str
    deadline: float | None


@dataclass(frozen=True)
class RunHere:
    """Run a task in this process."""

    task_type: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Emit:
    """Hand ``value`` to the caller."""

    value: Any


Effect = Call | Pause | WaitFor | RunHere | Emit
Flow = Generator[Effect, Any, T]


class Stepper(Generic[T]):
    """Advances a flow one effect at a time, for the drivers."""

    def __init__(self, flow: Flow[T]) -> None:
        self.flow = flow
        self._reply: Any = None
        self._error: ElasticError | None = None
        self._done = False
        self._value: Any = None

    def next_effect(self) -> Effect | None:
        """The next effect to carry out, or None once the flow has returned."""
        try:
            if self._error is not None:
                error, self._error = self._error, None
                return self.flow.throw(error)
            reply, self._reply = self._reply, None
            return self.flow.send(reply)
        except StopIteration as stop:
            self._done, self._value = True, stop.value
            return None

    def reply(self, value: Any) -> None:
        """What the last effect gave."""
        self._reply = value

    def fail(self, error: ElasticError) -> None:
        """The last effect failed with ``error``: it is raised inside the flow."""
        self._error = error

    def result(self) -> T:
        """The flow's return value."""
        assert self._done, "the flow has not returned"
        return self._value  # type: ignore[no-any-return]


class ClientBase:
    """What ``Client`` and ``AsyncClient`` share that does no I/O.

    Args:
        server: the orchestrator's base URL; ``$ELASTIC_SERVER`` or
            ``http://127.0.0.1:5000`` when None.
        token: the bearer token; ``$ELASTIC_TOKEN`` when None.
        timeout: seconds allowed for one HTTP request (a long poll gets this on top
            of the time the server holds it).
        local_fallback: whether ``run`` (and the calls built on it) may run a task in
            this process when the orchestrator cannot be reached or no worker can run it.
        local_provider: an LLM provider (``elastic.providers.base.Provider``) for
            running LLM tasks locally; without one they never are.
        recheck_after_seconds: after the orchestrator refused a connection, tasks that
            can run here do so without asking it again for this long.
    """

    def __init__(self, server: str | None = None, *, token: str | None = None,
                 timeout: float = DEFAULT_REQUEST_TIMEOUT_SECONDS, local_fallback: bool = True,
                 local_provider: Any = None,
                 recheck_after_seconds: float = DEFAULT_RECHECK_AFTER_SECONDS) -> None:
        self.core = ClientCore(server, token=token, timeout=timeout,
                               local_fallback=local_fallback, local_provider=local_provider,
                               recheck_after_seconds=recheck_after_seconds)
        self._connect()

    def _connect(self) -> None:
        """Open the HTTP connection pool (each client its own kind)."""
        raise NotImplementedError

    @property
    def server(self) -> str:
        """The orchestrator's base URL."""
        return self.core.server

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.server!r})"

    def can_run_locally(self, task_type: str) -> bool:
        """Whether this client can run ``task_type`` in this process."""
        return self.core.can_run_locally(task_type)


def status_call(task_id: str) -> Call:
    """``GET /api/tasks/status/{id}``."""
    return Call("GET", task_status_path(task_id), not_found=TaskNotFound)


def cancel_call(task_id: str, *, only_pending: bool = False) -> Call:
    """``POST /api/tasks/{id}/cancel``; with ``only_pending``, 409 once a worker holds it."""
    return Call("POST", task_path(task_id, "cancel"), body={"only_pending": only_pending},
                not_found=TaskNotFound)


class ClientCore:
    """Settings, state and flows of one client; no I/O.

    Args:
        server: the orchestrator's base URL (None: ``$ELASTIC_SERVER`` or the default).
        token: the bearer token (None: ``$ELASTIC_TOKEN``).
        timeout: seconds for one HTTP request (a long poll gets this on top of its hold).
        local_fallback: whether ``run`` may run a task in this process instead.
        local_provider: the LLM provider for running LLM tasks locally (None: they never are).
        recheck_after_seconds: after the orchestrator refused a connection, tasks that
            can run here do so without asking it again for this long.
    """

    def __init__(self, server: str | None, *, token: str | None, timeout: float,
                 local_fallback: bool, local_provider: Any,
                 recheck_after_seconds: float) -> None:
        self.server = (server or os.environ.get("ELASTIC_SERVER") or DEFAULT_SERVER).rstrip("/")
        token = token if token is not None else os.environ.get("ELASTIC_TOKEN")
        self.headers = {"User-Agent": f"elastic-client/{__version__}"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout
        self.local_fallback = local_fallback
        self.local_provider = local_provider
        self.recheck_after_seconds = recheck_after_seconds
        self._unreachable_until = 0.0
        self._unreachable_reason = ""

    # -- the HTTP edge ------------------------------------------------------------------

    def request_timeout(self, call: Call) -> float:
        """Seconds to allow for ``call``'s answer."""
        return self.timeout + call.hold_seconds

    def unreachable(self, error: httpx.TransportError) -> ServerUnreachable:
        """The error for a request that got no answer; ``AnswerLost`` if it may have arrived."""
        kind = ServerUnreachable if isinstance(error, NOT_SENT_ERRORS) else AnswerLost
        return kind(f"cannot reach the orchestrator at {self.server}: {type(error).__name__}")

    def answer_of(self, call: Call, status_code: int, content: bytes) -> dict[str, Any]:
        """The JSON object answered to ``call``, or the ElasticError the answer stands for."""
        if status_code in GATEWAY_STATUSES:
            raise AnswerLost(f"the orchestrator at {self.server} is unavailable ({status_code})")
        if status_code >= 400:
            error = error_from_answer(status_code, content, f"{self.server}{call.path}")
            raise call.not_found(error.message) if isinstance(error, NotFound) else error
        try:
            answer = json.loads(content)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise ElasticError(f"{call.method} {call.path}: the orchestrator answered "
                               f"{status_code} without a JSON object")
        return answer

    # -- plain requests -----------------------------------------------------------------

    def retrying(self, make_call: Callable[[], Call], *, until: float | None,
                 retry_refused: bool = True) -> Flow[dict[str, Any]]:
        """``make_call()``'s answer, asked again with backoff while the orchestrator cannot
        be reached, until ``until`` (None: no limit). A refused connection (nothing
        sent) is retried only with ``retry_refused``, or once an earlier try's answer was
        lost: that try may have arrived, so the error raised then is ``AnswerLost``."""
        delay = FIRST_RETRY_SECONDS
        may_have_arrived = False
        while True:
            try:
                answer: dict[str, Any] = yield make_call()
                return answer
            except ServerUnreachable as error:
                may_have_arrived = may_have_arrived or isinstance(error, AnswerLost)
                left = seconds_left(until)
                if left <= 0 or not (retry_refused or may_have_arrived):
                    if may_have_arrived and not isinstance(error, AnswerLost):
                        raise AnswerLost(f"{error.message} (an earlier try's answer was "
                                         "lost: it may have arrived)") from error
                    raise
                yield Pause(min(delay, left))
                delay = min(delay * 2, MAX_RETRY_SECONDS)

    def submit_flow(self, tasks: Iterable[Mapping[str, Any]]) -> Flow[list[str]]:
        """Queue tasks in one request, all or nothing; their ids in order.

        Each task gets an id made here, so sending the batch again after a lost
        answer queues nothing twice.
        """
        batch = [task_body(task, index) for index, task in enumerate(tasks)]
        if not batch:
            return []
        call = Call("POST", "/api/tasks/submit", body={"tasks": batch})
        answer = yield from self.retrying(lambda: call, until=deadline_after(self.timeout),
                                          retry_refused=False)
        return [str(task_id) for task_id in answer["task_ids"]]

    # -- waiting ------------------------------------------------------------------------

    def settled_flow(self, task_ids: Sequence[str],
                     deadline: float | None) -> Flow[list[dict[str, Any]]]:
        """One multiplexed wait on the first ``MAX_IDS_PER_WAIT`` of ``task_ids``: the
        records of those that ended or cannot run, once there is one or the hold is over.

        Ids the orchestrator does not know come back as records with status ``unknown``.
        """
        window = list(task_ids[:MAX_IDS_PER_WAIT])

        def wait_call() -> Call:
            hold = min(MAX_HOLD_SECONDS, seconds_left(deadline))
            return Call("POST", WAIT_PATH, body={"task_ids": window, "wait": round(hold, 3)},
                        hold_seconds=hold)

        answer = yield from self.retrying(wait_call, until=deadline)
        unknown = [{"task_id": task_id, "status": "unknown"} for task_id in answer["unknown"]]
        records = [*answer["tasks"], *unknown]
        if not records and answer.get("retry_after"):
            # Every waiting place on the server was taken: ask again after the time it
            # said, spread out so turned-away clients do not all come back at once.
            pause = answer["retry_after"] * random.uniform(1.0, 1.5)
            yield Pause(min(pause, seconds_left(deadline)))
        return records

    def settle_flow(self, task_id: str, deadline: float | None) -> Flow[dict[str, Any] | None]:
        """The task's record once it ended or cannot run; None if the deadline came first."""
        while True:
            records = yield from self.settled_flow([task_id], deadline)
            if records:
                return records[0]
            if seconds_left(deadline) <= 0:
                return None

    def wait_flow(self, task_id: str, timeout: float | None) -> Flow[TaskResult]:
        """The task's result, or the error that says how it ended (see ``outcome_of``)."""
        record = yield WaitFor(task_id, deadline_after(timeout))
        if record is None:
            raise TaskTimeout(f"task {task_id} did not end within {timeout:g} s")
        return outcome_of(record)

    def completion_flow(self, task_ids: Sequence[str], *, timeout: float | None,
                        ordered: bool, return_exceptions: bool) -> Flow[None]:
        """Emit each task's result (or error) as it ends; in ``task_ids``' order if ``ordered``.

        Waits on at most ``MAX_IDS_PER_WAIT`` ids per request, one request at a time,
        the oldest first: one server thread however many tasks.
        """
        deadline = deadline_after(timeout)
        waiting = list(dict.fromkeys(task_ids))
        release = InOrder(waiting) if ordered else None
        while waiting:
            records = yield from self.settled_flow(waiting, deadline)
            if not records and seconds_left(deadline) <= 0:
                raise TaskTimeout(f"{len(waiting)} tasks did not end within {timeout:g} s "
                                  f"(first: {', '.join(waiting[:3])})")
            ended = {record["task_id"] for record in records}
            waiting = [task_id for task_id in waiting if task_id not in ended]
            for record in records:
                value = outcome_or_error(record, return_exceptions=return_exceptions)
                for released in release.add(record["task_id"], value) if release else [value]:
                    yield Emit(released)

    def map_flow(self, task_type: str, items: Iterable[Mapping[str, Any]], *, priority: int,
                 timeout: float | None, ordered: bool) -> Flow[None]:
        """Submit one task per item in one request, then emit the results as they end."""
        tasks = [{"type": task_type, "data": dict(data), "priority": priority} for data in items]
        task_ids = yield from self.submit_flow(tasks)
        yield from self.completion_flow(task_ids, timeout=timeout, ordered=ordered,
                                        return_exceptions=False)

    # -- LLM tasks ----------------------------------------------------------------------

    def agent_action_flow(self, messages: Sequence[Mapping[str, str]], *, model: str | None,
                          temperature: float | None, max_tokens: int | None, priority: int,
                          timeout: float | None) -> Flow[AgentActionResult]:
        """Run an ``agent_action`` (chat messages -> text)."""
        data = agent_action_data(messages, model, temperature, max_tokens)
        result = yield from self.run_flow("agent_action", data, priority=priority, timeout=timeout,
                                          local_fallback=None)
        return expect(result, AgentActionResult)

    def code_generation_flow(self, prompt: str, language: str, *, model: str | None,
                             temperature: float | None, max_tokens: int | None, priority: int,
                             timeout: float | None) -> Flow[CodeGenerationResult]:
        """Run a ``code_generation`` task."""
        data = without_none(prompt=prompt, language=language, model=model,
                            temperature=temperature, max_tokens=max_tokens)
        result = yield from self.run_flow("code_generation", data, priority=priority,
                                          timeout=timeout, local_fallback=None)
        return expect(result, CodeGenerationResult)

    def execute_agent_action_flow(self, messages: Sequence[Mapping[str, str]], *,
                                  model: str | None, wait_for_result: bool,
                                  temperature: float | None, max_tokens: int | None,
                                  priority: int, timeout: float | None) -> Flow[dict[str, Any]]:
        """The seed's call: the result as the seed's dict, or ``{"task_id": ...}`` without waiting."""
        data = agent_action_data(messages, model, temperature, max_tokens)
        if not wait_for_result:
            [task_id] = yield from self.submit_flow(
                [{"type": "agent_action", "data": data, "priority": priority}])
            return {"task_id": task_id}
        result = yield from self.run_flow("agent_action", data, priority=priority, timeout=timeout,
                                          local_fallback=None)
        return result.to_dict()

    # -- running, with the local fallback -----------------------------------------------

    def run_flow(self, task_type: str, data: Mapping[str, Any], *, priority: int,
                 timeout: float | None, local_fallback: bool | None) -> Flow[TaskResult]:
        """Submit a task and wait for its result; with the local fallback, run it here when
        the orchestrator cannot be reached or cannot run it (see ``take_back_flow``)."""
        fallback = self.local_fallback if local_fallback is None else local_fallback
        if fallback and self.can_run_locally(task_type) and self._is_marked_unreachable():
            return (yield from self.local_flow(task_type, data, reason=self._unreachable_reason))
        deadline = deadline_after(timeout)
        try:
            [task_id] = yield from self.submit_flow(
                [{"type": task_type, "data": dict(data), "priority": priority}])
        except ServerUnreachable as error:
            return (yield from self.instead_of_submit_flow(task_type, data, error,
                                                           fallback=fallback))
        try:
            return (yield from self.wait_flow(task_id, timeout))
        except (TaskTimeout, NoWorkerCanRun) as error:
            if not (fallback and self._may_stand_in(task_type, error)):
                raise
            return (yield from self.take_back_flow(task_id, task_type, data, error,
                                                   deadline=deadline))

    def instead_of_submit_flow(self, task_type: str, data: Mapping[str, Any],
                               error: ServerUnreachable, *, fallback: bool) -> Flow[TaskResult]:
        """After a submit that got no answer: run locally only if nothing reached the
        orchestrator (a refused connection); else raise, as it may have queued the task."""
        if isinstance(error, AnswerLost):
            raise error
        self._mark_unreachable(error)
        if not fallback:
            raise error
        if not self.can_run_locally(task_type):
            raise ServerUnreachable(f"{error.message}; {task_type} tasks cannot run locally"
                                    + local_hint(task_type)) from error
        return (yield from self.local_flow(task_type, data, reason=error.message))

    def take_back_flow(self, task_id: str, task_type: str, data: Mapping[str, Any],
                       error: ElasticError, *, deadline: float | None) -> Flow[TaskResult]:
        """Run a task here only once it is withdrawn from the orchestrator's queue.

        A task that already runs or ended there stays the orchestrator's: its result
        is waited for until ``deadline`` (never run a second time here).
        """
        try:
            yield cancel_call(task_id, only_pending=True)
        except Conflict:
            record = yield from self.settle_flow(task_id, deadline)
            if record is None:
                raise TaskTimeout(f"{error.message}; it runs on the orchestrator, so it is not "
                                  "run here as well") from error
            return outcome_of(record)
        return (yield from self.local_flow(
            task_type, data, reason=f"{error.message}; withdrawn from the orchestrator"))

    def local_flow(self, task_type: str, data: Mapping[str, Any], *,
                   reason: str) -> Flow[TaskResult]:
        """Run the task in this process; its result says ``ran="local"`` and why."""
        reported = yield RunHere(task_type, dict(data))
        return result_of(task_type, None, reported, ran="local", reason=reason)

    def run_here(self, effect: RunHere) -> dict[str, Any]:
        """Carry out ``RunHere`` with the executor a worker would use.

        Raises:
            InvalidTask: the data is not valid for the task type.
        """
        from elastic.executors.base import ExecutionContext
        from elastic.taskfiles import check_json_value

        executor = local_executor(effect.task_type)
        check_json_value(effect.data, path="data")
        params = executor.validate(effect.data)
        context = ExecutionContext(task_id=f"local-{uuid.uuid4()}", provider=self.local_provider)
        return dict(executor.run(params, context))

    def can_run_locally(self, task_type: str) -> bool:
        """Whether ``task_type`` can run in this process."""
        if task_type in EVOLUTION_TASK_TYPES:
            return True
        return task_type in LLM_TASK_TYPES and self.local_provider is not None

    def _may_stand_in(self, task_type: str, error: ElasticError) -> bool:
        """Whether a local run may replace the orchestrator's after ``error``: any task that
        can run here when no worker can; only evolution tasks after a timeout."""
        if isinstance(error, TaskTimeout):
            return task_type in EVOLUTION_TASK_TYPES
        return self.can_run_locally(task_type)

    def _mark_unreachable(self, error: ServerUnreachable) -> None:
        self._unreachable_until = time.monotonic() + self.recheck_after_seconds
        self._unreachable_reason = (f"{error.message}; not asking it again for "
                                    f"{self.recheck_after_seconds:g} s")

    def _is_marked_unreachable(self) -> bool:
        return time.monotonic() < self._unreachable_until


class InOrder:
    """Releases values in the order of ``keys``, holding back those that come early."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.keys = keys
        self.position = 0
        self.held: dict[str, Any] = {}

    def add(self, key: str, value: Any) -> list[Any]:
        """Hold ``value``; the values now due, in order."""
        self.held[key] = value
        due = []
        while self.position < len(self.keys) and self.keys[self.position] in self.held:
            due.append(self.held.pop(self.keys[self.position]))
            self.position += 1
        return due


def outcome_of(record: Mapping[str, Any]) -> TaskResult:
    """The result of a settled task, or the error that says why there is none.

    Raises:
        TaskFailed, TaskCancelled, TaskHeld, NoWorkerCanRun, TaskNotFound.
    """
    task_id, status = str(record["task_id"]), record["status"]
    if status == "completed":
        return result_of(str(record["type"]), task_id, record.get("result") or {})
    if status == "cancelled":
        raise TaskCancelled(f"task {task_id} was cancelled")
    if status == "failed":
        reported = record.get("result") or {}
        raise TaskFailed(task_id, record.get("error") or reported.get("error"), dict(record))
    if status == "held":
        raise TaskHeld(task_id, record.get("held_reason") or record.get("error"))
    if status == "unknown":
        raise TaskNotFound(f"task {task_id!r} not found")
    if record.get("unservable"):
        raise NoWorkerCanRun(task_id, str(record["unservable"]))
    raise ElasticError(f"task {task_id} is {status}, not settled")


def outcome_or_error(record: Mapping[str, Any], *,
                     return_exceptions: bool) -> TaskResult | ElasticError:
    """``outcome_of(record)``; its error returned instead of raised with ``return_exceptions``."""
    try:
        return outcome_of(record)
    except ElasticError as error:
        if not return_exceptions:
            raise
        return error


def task_body(task: Mapping[str, Any], index: int) -> dict[str, Any]:
    """One task of a submit request, with an id made here when it has none.

    Raises:
        InvalidTask: the task has no ``type``, or holds what the server's gate refuses
            (a lone surrogate, NaN...: it could not even be sent as JSON).
    """
    from elastic.taskfiles import check_json_value  # the executors load only when needed

    if "type" not in task:
        raise InvalidTask("is required", field="type", index=index)
    body = {"type": task["type"], "data": dict(task.get("data") or {}),
            "priority": task.get("priority", DEFAULT_PRIORITY),
            "task_id": task.get("task_id") or str(uuid.uuid4())}
    check_json_value(body, path="", index=index)
    return body


def expect(result: TaskResult, kind: type[T]) -> T:
    """``result`` as ``kind`` (the type its task type gives).

    Raises:
        TaskFailed: the result is of another kind (the task was of another type).
    """
    if not isinstance(result, kind):
        raise TaskFailed(result.task_id or "(local)", f"expected a {kind.__name__}, got a "
                         f"{type(result).__name__}", result.to_dict())
    return result


def local_executor(task_type: str) -> Any:
    """The executor that runs ``task_type`` in this process."""
    from elastic.executors.evolution import Crossover, Mutation

    if task_type == "evolution_crossover":
        return Crossover()
    if task_type == "evolution_mutation":
        return Mutation()
    from elastic.executors import get_executor

    return get_executor(task_type)


def local_hint(task_type: str) -> str:
    """How to make ``task_type`` runnable locally, when it can be."""
    if task_type in LLM_TASK_TYPES:
        return " (give the client a local_provider to run LLM tasks in this process)"
    return ""


def deadline_after(timeout: float | None) -> float | None:
    """The monotonic time ``timeout`` seconds from now (None: no deadline)."""
    return None if timeout is None else time.monotonic() + timeout


def seconds_left(deadline: float | None) -> float:
    """Seconds until ``deadline`` (never negative; infinite for None)."""
    return math.inf if deadline is None else max(0.0, deadline - time.monotonic())


def agent_action_data(messages: Sequence[Mapping[str, str]], model: str | None,
                      temperature: float | None, max_tokens: int | None) -> dict[str, Any]:
    """An ``agent_action``'s data."""
    return without_none(messages=[dict(m) for m in messages], model=model,
                        temperature=temperature, max_tokens=max_tokens)


def without_none(**fields: Any) -> dict[str, Any]:
    """The fields whose value is not None."""
    return {key: value for key, value in fields.items() if value is not None}

