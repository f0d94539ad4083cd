"""elastic.client: the Python client for programs that submit work to the orchestrator.

``Client`` speaks the seed's HTTP API (through ``elastic.transport``): submit tasks, wait for
them (long polling ``GET /api/tasks/status/{id}?wait=SECONDS``, never a fixed
sleep loop), cancel them, read health, stats and workers. Server errors arrive as
the matching ``ElasticError`` (``InvalidInput``, ``Unauthorized``, ``TaskNotFound``,
``Conflict``, ...) and a server that cannot be reached as ``ServerUnreachable``.

``Client.run`` falls back to running a task in this process when the
orchestrator cannot be reached: evolution tasks always (also when they time
out), LLM tasks only through the ``local_provider`` the caller configured. The
result's ``"ran"`` says where it ran (``"orchestrator"`` or ``"local"``) and
``"reason"`` why it ran locally. ``EvolutionAdapter`` is the genome-in,
genome-out face of this for evolutionary code.

The seed's names still work: ``D8DistributedClient``, ``DistributedEvolutionAdapter``,
``execute_agent_action`` and ``_wait_for_result``.

Example::

    from elastic.client import Client, EvolutionAdapter

    client = Client("http://127.0.0.1:5000")
    result = client.agent_action([{"role": "user", "content": "Generate business ideas"}])
    print(result["output"])

    adapter = EvolutionAdapter(client)
    child = adapter.crossover({"param1": 0.8, "param2": 100}, {"param1": 0.6, "param2": 150})
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from elastic import __version__
from elastic.errors import (
    ElasticError,
    InvalidInput,
    InvalidTask,
    NotFound,
    ServerUnreachable,
    TaskCancelled,
    TaskNotFound,
    TaskTimeout,
)
from elastic.executors.base import ExecutionContext
from elastic.executors.evolution import Crossover, Mutation
from elastic.tasks import EVOLUTION_TASK_TYPES, LLM_TASK_TYPES
from elastic.transport import DEFAULT_SERVER, Transport, task_path, task_status_path

DEFAULT_PRIORITY = 5
DEFAULT_REQUEST_TIMEOUT_SECONDS = 10.0
DEFAULT_EVOLUTION_TIMEOUT_SECONDS = 60.0
DEFAULT_RECHECK_AFTER_SECONDS = 15.0
MAX_LONG_POLL_SECONDS = 30.0
MIN_POLL_PAUSE_SECONDS = 0.05
MAX_POLL_PAUSE_SECONDS = 1.0

FINAL_STATUSES = ("completed", "failed", "cancelled")
GATEWAY_STATUSES = (502, 503, 504)


class TaskFailed(ElasticError):
    """The task failed."""

    def __init__(self, task_id: str, error: str | None, status: Mapping[str, Any]) -> None:
        self.task_id = task_id
        self.error = error
        self.status = dict(status)
        super().__init__(f"task {task_id} failed: {error or 'no error message'}")


class Client:
    """A connection to one orchestrator.

    Args:
        server: the orchestrator's base URL; ``$ELASTIC_SERVER`` or
            ``http://127.0.0.1:5000`` when None.
        token: the bearer token; ``$ELASTIC_TOKEN`` when None.
        timeout: seconds allowed for one HTTP request (a long poll gets this on
            top of the time the server holds it).
        local_fallback: whether ``run`` (and the methods built on it) may run a
            task in this process when the orchestrator cannot be reached.
        local_provider: an LLM provider (``elastic.providers.base.Provider``: a
            ``name`` and ``complete(ChatRequest) -> Completion``) for running LLM
            tasks locally; without one they are never run locally.
        recheck_after_seconds: after the orchestrator was unreachable, tasks that
            may run locally do so without asking it again for this long.
    """

    def __init__(
        self,
        server: str | None = None,
        *,
        token: str | None = None,
        timeout: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
        local_fallback: bool = True,
        local_provider: Any = None,
        recheck_after_seconds: float = DEFAULT_RECHECK_AFTER_SECONDS,
    ) -> None:
        self.transport = Transport(server, token=token, timeout_seconds=timeout)
        self.transport.session.headers["User-Agent"] = f"elastic-client/{__version__}"
        self.timeout = timeout
        self.local_fallback = local_fallback
        self.local_provider = local_provider
        self.recheck_after_seconds = recheck_after_seconds
        self._unreachable_until = 0.0
        self._unreachable_reason = ""
        self._long_poll_cap_seconds = MAX_LONG_POLL_SECONDS

    @property
    def server(self) -> str:
        """The orchestrator's base URL."""
        return self.transport.server

    def __repr__(self) -> str:
        return f"Client({self.server!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connections."""
        self.transport.close()

    # Tasks ---------------------------------------------------------------------------

    def submit(
        self,
        task_type: str,
        data: Mapping[str, Any],
        priority: int = DEFAULT_PRIORITY,
        *,
        task_id: str | None = None,
    ) -> str:
        """Queue one task and return its id (``POST /api/tasks/submit``).

        A ``task_id`` already known to the server is not queued twice.
        """
        body: dict[str, Any] = {"type": task_type, "data": dict(data), "priority": priority}
        if task_id is not None:
            body["task_id"] = task_id
        answer = self._request("POST", "/api/tasks/submit", json_body=body)
        return str(answer["task_id"])

    def submit_many(self, tasks: Iterable[Mapping[str, Any]]) -> list[str]:
        """Queue several ``{"type", "data", "priority"?, "task_id"?}`` tasks in one request.

        All or nothing: if one task is invalid, none is queued. Returns the ids in order.
        """
        batch = []
        for index, task in enumerate(tasks):
            if "type" not in task:
                raise InvalidTask("is required", field="type", index=index)
            batch.append({"type": task["type"], "data": dict(task.get("data") or {}),
                          "priority": task.get("priority", DEFAULT_PRIORITY),
                          **({"task_id": task["task_id"]} if task.get("task_id") else {})})
        if not batch:
            return []
        answer = self._request("POST", "/api/tasks/submit", json_body={"tasks": batch})
        return [str(task_id) for task_id in answer["task_ids"]]

    def status(self, task_id: str) -> dict[str, Any]:
        """The task's status record (``GET /api/tasks/status/{id}``)."""
        return self._request("GET", task_status_path(task_id), not_found=TaskNotFound)

    def wait(self, task_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the task to end and return its result.

        Long-polls the status endpoint, so it returns as soon as the task ends.

        Args:
            timeout: seconds to wait at most; None waits as long as it takes.

        Raises:
            TaskFailed: the task failed (``.error`` says why).
            TaskCancelled: the task was cancelled.
            TaskTimeout: it had not ended after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = MIN_POLL_PAUSE_SECONDS
        while True:
            wait_seconds = _long_poll_seconds(deadline, self._long_poll_cap_seconds)
            asked_at = time.monotonic()
            record = self._poll_status(task_id, wait_seconds)
            if record.get("status") in FINAL_STATUSES:
                return _final_result(task_id, record)
            if deadline is not None and time.monotonic() >= deadline:
                raise TaskTimeout(f"task {task_id} did not end within {timeout:g} s "
                                  f"(status: {record.get('status')})")
            pause = _pause_if_answered_early(asked_at, wait_seconds, pause, deadline)

    def run(
        self,
        task_type: str,
        data: Mapping[str, Any],
        priority: int = DEFAULT_PRIORITY,
        timeout: float | None = None,
        *,
        local_fallback: bool | None = None,
    ) -> dict[str, Any]:
        """Submit a task, wait for it and return its result, plus ``"ran"`` and ``"reason"``.

        When the orchestrator cannot be reached (or, for evolution tasks, the
        task times out; it is then cancelled there) and the local fallback is on,
        the task runs in this process instead: ``"ran": "local"``.

        Args:
            local_fallback: overrides the client's setting for this call.
        """
        fallback = self.local_fallback if local_fallback is None else local_fallback
        if fallback and self._is_marked_unreachable() and self.can_run_locally(task_type):
            return self.run_locally(task_type, data, reason=self._unreachable_reason)
        task_id = None
        try:
            task_id = self.submit(task_type, data, priority)
            result = self.wait(task_id, timeout)
        except (ServerUnreachable, TaskTimeout) as exc:
            return self._fall_back(task_type, data, exc, fallback=fallback, task_id=task_id)
        return {**result, "ran": "orchestrator", "reason": None, "task_id": task_id}

    def cancel(self, task_id: str) -> dict[str, Any]:
        """Cancel a task that has not ended (``POST /api/tasks/{id}/cancel``).

        Raises:
            TaskNotFound: no task has that id.
            Conflict: the task has already ended.
        """
        return self._request("POST", task_path(task_id, "cancel"),
                             not_found=TaskNotFound)

    # LLM tasks -----------------------------------------------------------------------

    def agent_action(
        self,
        messages: Sequence[Mapping[str, str]],
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        *,
        wait: bool = True,
        timeout: float | None = None,
        priority: int = DEFAULT_PRIORITY,
    ) -> Any:
        """Run an ``agent_action`` (chat messages -> text).

        Returns the result (``output``, ``tokens_used``, ``ran``...), or the task id
        with ``wait=False``.
        """
        data = _without_none(messages=[dict(m) for m in messages], model=model,
                             temperature=temperature, max_tokens=max_tokens)
        return self._run_or_submit("agent_action", data, wait=wait, timeout=timeout,
                                   priority=priority)

    def code_generation(
        self,
        prompt: str,
        language: str = "python",
        *,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        wait: bool = True,
        timeout: float | None = None,
        priority: int = DEFAULT_PRIORITY,
    ) -> Any:
        """Run a ``code_generation`` task.

        Returns the result (with ``code``), or the task id with ``wait=False``.
        """
        data = _without_none(prompt=prompt, language=language, model=model,
                             temperature=temperature, max_tokens=max_tokens)
        return self._run_or_submit("code_generation", data, wait=wait, timeout=timeout,
                                   priority=priority)

    def execute_agent_action(
        self,
        messages: Sequence[Mapping[str, str]],
        model: str | None = None,
        wait_for_result: bool = True,
        *,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout: float | None = None,
        priority: int = DEFAULT_PRIORITY,
    ) -> dict[str, Any]:
        """The seed's call: the result (with ``"output"``), or ``{"task_id": ...}``.

        ``{"task_id": ...}`` comes back when ``wait_for_result`` is False.
        """
        answer = self.agent_action(messages, model, temperature, max_tokens,
                                   wait=wait_for_result, timeout=timeout, priority=priority)
        return answer if wait_for_result else {"task_id": answer}

    def _wait_for_result(self, task_id: str, timeout: float | None = None) -> dict[str, Any]:
        """The seed's name for ``wait``."""
        return self.wait(task_id, timeout)

    # Server --------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The orchestrator's health (``GET /health``)."""
        return self._request("GET", "/health")

    def stats(self) -> dict[str, Any]:
        """Worker and task counts (``GET /api/stats``)."""
        return self._request("GET", "/api/stats")

    def workers(self) -> list[dict[str, Any]]:
        """The registered workers (``GET /api/workers/list``)."""
        return list(self._request("GET", "/api/workers/list").get("workers", []))

    # Local fallback ------------------------------------------------------------------

    def can_run_locally(self, task_type: str) -> bool:
        """Whether this client can run ``task_type`` in this process."""
        if task_type in EVOLUTION_TASK_TYPES:
            return True
        return task_type in LLM_TASK_TYPES and self.local_provider is not None

    def run_locally(
        self, task_type: str, data: Mapping[str, Any], *, reason: str
    ) -> dict[str, Any]:
        """Run a task in this process with the same executor a worker uses.

        Raises:
            InvalidTask: the data is not valid for the task type.
            ServerUnreachable: the task type cannot run here (no local provider).
        """
        if not self.can_run_locally(task_type):
            raise ServerUnreachable(f"{reason}; {task_type} tasks cannot run locally"
                                    + _local_hint(task_type))
        executor = _local_executor(task_type)
        params = executor.validate(data)
        context = ExecutionContext(task_id=f"local-{uuid.uuid4()}", provider=self.local_provider)
        result = executor.run(params, context)
        return {**result, "ran": "local", "reason": reason, "task_id": None}

    def _fall_back(
        self, task_type: str, data: Mapping[str, Any], error: ElasticError,
        *, fallback: bool, task_id: str | None,
    ) -> dict[str, Any]:
        """Run locally after ``error`` if allowed, else raise it again."""
        if isinstance(error, ServerUnreachable):
            self._mark_unreachable(error)
        if fallback and self._may_replace_remote_run(task_type, error):
            if task_id is not None and isinstance(error, TaskTimeout):
                self._cancel_quietly(task_id)
            return self.run_locally(task_type, data, reason=error.message)
        if fallback and isinstance(error, ServerUnreachable) and _local_hint(task_type):
            raise ServerUnreachable(error.message + _local_hint(task_type)) from error
        raise error

    def _may_replace_remote_run(self, task_type: str, error: ElasticError) -> bool:
        """Whether a local run may stand in after ``error``: any runnable task when the
        orchestrator is unreachable, only evolution tasks after a timeout."""
        if isinstance(error, TaskTimeout):
            return task_type in EVOLUTION_TASK_TYPES
        return self.can_run_locally(task_type)

    def _cancel_quietly(self, task_id: str) -> None:
        """Cancel a task we stopped waiting for; it may have ended or be unreachable."""
        try:
            self.cancel(task_id)
        except ElasticError:
            return

    def _mark_unreachable(self, error: ServerUnreachable) -> None:
        """Remember that the orchestrator did not answer."""
        self._unreachable_until = time.monotonic() + self.recheck_after_seconds
        self._unreachable_reason = (f"{error.message}; not asking it again for "
                                    f"{self.recheck_after_seconds:g} s")

    def _is_marked_unreachable(self) -> bool:
        """Whether the orchestrator was unreachable a short while ago."""
        return time.monotonic() < self._unreachable_until

    def _run_or_submit(
        self, task_type: str, data: dict[str, Any], *, wait: bool, timeout: float | None,
        priority: int,
    ) -> Any:
        """``run`` when waiting, else ``submit``."""
        if wait:
            return self.run(task_type, data, priority, timeout)
        return self.submit(task_type, data, priority)

    # HTTP ----------------------------------------------------------------------------

    def _poll_status(self, task_id: str, wait_seconds: float) -> dict[str, Any]:
        """One long poll of the task's status, held by the server up to ``wait_seconds``.

        A server that refuses that ``wait`` (a lower ``max_wait_seconds``) is polled
        without it from then on.
        """
        if wait_seconds <= 0:
            return self.status(task_id)
        try:
            return self._request("GET", task_status_path(task_id), not_found=TaskNotFound,
                                 params={"wait": _format_seconds(wait_seconds)},
                                 timeout=self.timeout + wait_seconds)
        except InvalidInput as exc:
            if "'wait'" not in exc.message:
                raise
            self._long_poll_cap_seconds = 0.0
            return self.status(task_id)

    def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        timeout: float | None = None,
        not_found: type[ElasticError] = NotFound,
    ) -> dict[str, Any]:
        """One HTTP call; the JSON object answered, or the matching ElasticError.

        404 becomes ``not_found``, and a gateway's 502/503/504 ``ServerUnreachable``.
        """
        try:
            answer = self.transport.request(method, path, json=json_body, params=dict(params or {}),
                                            timeout_seconds=timeout)
        except NotFound as exc:
            raise not_found(exc.message) from exc
        except ServerUnreachable:
            raise
        except ElasticError as exc:
            if exc.http_status in GATEWAY_STATUSES:
                raise ServerUnreachable(f"the orchestrator at {self.server} is unavailable "
                                        f"({exc.http_status}: {exc.message})") from exc
            raise
        if not isinstance(answer, dict):
            raise ElasticError(f"{method} {path}: the orchestrator answered "
                               f"{type(answer).__name__}, not a JSON object")
        return answer


class EvolutionAdapter:
    """Crossover and mutation for evolutionary code, on the orchestrator or locally.

    Each operation is an evolution task on the orchestrator; when it cannot be
    reached or the task does not end within ``timeout`` seconds, the same
    operator runs in this process (with ``local_fallback=True``).

    Args:
        server_or_client: a base URL (None: ``$ELASTIC_SERVER`` or the default) or a ``Client``.
        timeout: seconds to wait for each operation on the orchestrator.
        local_fallback: whether to run locally instead of failing.
        priority: the priority of the submitted tasks (1..10).
    """

    def __init__(
        self,
        server_or_client: str | Client | None = None,
        *,
        timeout: float = DEFAULT_EVOLUTION_TIMEOUT_SECONDS,
        local_fallback: bool = True,
        priority: int = DEFAULT_PRIORITY,
    ) -> None:
        if isinstance(server_or_client, Client):
            self.client = server_or_client
        else:
            self.client = Client(server_or_client, local_fallback=local_fallback)
        self.timeout = timeout
        self.local_fallback = local_fallback
        self.priority = priority

    def __repr__(self) -> str:
        return f"EvolutionAdapter({self.client.server!r})"

    def crossover(
        self,
        genome1: Mapping[str, Any],
        genome2: Mapping[str, Any],
        *,
        method: str | None = None,
        seed: int | None = None,
        mode: str | None = None,
        bounds: Mapping[str, Sequence[float]] | None = None,
        alpha: float | None = None,
        model: str | None = None,
    ) -> dict[str, Any]:
        """The offspring genome of two parents (see ``crossover_result``)."""
        return self.crossover_result(genome1, genome2, method=method, seed=seed, mode=mode,
                                     bounds=bounds, alpha=alpha, model=model)["genome"]

    def crossover_result(
        self,
        genome1: Mapping[str, Any],
        genome2: Mapping[str, Any],
        *,
        method: str | None = None,
        seed: int | None = None,
        mode: str | None = None,
        bounds: Mapping[str, Sequence[float]] | None = None,
        alpha: float | None = None,
        model: str | None = None,
    ) -> dict[str, Any]:
        """Cross two genomes: ``{"genome", "ran", "reason", "task_id", "result"}``.

        Args:
            method: ``uniform`` (default), ``blend`` or ``single_point``.
            seed: makes the offspring reproducible.
            mode: ``operator`` (default) or ``llm`` (on an LLM worker).
            bounds: ``{gene: [low, high]}`` limits for numbers.
            alpha: the BLX-alpha extension for ``blend``.
            model: the LLM model for mode ``llm``.
        """
        data = _without_none(genome1=dict(genome1), genome2=dict(genome2), method=method,
                             seed=seed, mode=mode, bounds=_plain_bounds(bounds), alpha=alpha,
                             model=model)
        return self._evolve("evolution_crossover", data)

    def mutate(
        self,
        genome: Mapping[str, Any],
        mutation_rate: float = 0.1,
        *,
        seed: int | None = None,
        mode: str | None = None,
        bounds: Mapping[str, Sequence[float]] | None = None,
        sigma: float | None = None,
        model: str | None = None,
    ) -> dict[str, Any]:
        """The mutated genome (see ``mutate_result``)."""
        return self.mutate_result(genome, mutation_rate, seed=seed, mode=mode, bounds=bounds,
                                  sigma=sigma, model=model)["genome"]

    def mutate_result(
        self,
        genome: Mapping[str, Any],
        mutation_rate: float = 0.1,
        *,
        seed: int | None = None,
        mode: str | None = None,
        bounds: Mapping[str, Sequence[float]] | None = None,
        sigma: float | None = None,
        model: str | None = None,
    ) -> dict[str, Any]:
        """Mutate a genome: ``{"genome", "ran", "reason", "task_id", "result"}``.

        Args:
            mutation_rate: the probability (0..1) that each gene changes.
            seed: makes the mutation reproducible.
            mode: ``operator`` (default) or ``llm`` (on an LLM worker).
            bounds: ``{gene: [low, high]}`` limits for numbers.
            sigma: the Gaussian step relative to the bounds' width or the value.
            model: the LLM model for mode ``llm``.
        """
        data = _without_none(genome=dict(genome), mutation_rate=mutation_rate, seed=seed,
                             mode=mode, bounds=_plain_bounds(bounds), sigma=sigma, model=model)
        return self._evolve("evolution_mutation", data)

    def _evolve(self, task_type: str, data: dict[str, Any]) -> dict[str, Any]:
        """Run one evolution task and shape its outcome."""
        result = self.client.run(task_type, data, self.priority, self.timeout,
                                 local_fallback=self.local_fallback)
        if not result.get("success", True) or not isinstance(result.get("genome"), dict):
            raise TaskFailed(result.get("task_id") or "(local)",
                             result.get("error") or "the result has no genome", result)
        return {"genome": result["genome"], "ran": result["ran"], "reason": result["reason"],
                "task_id": result["task_id"], "result": result}


D8DistributedClient = Client
DistributedEvolutionAdapter = EvolutionAdapter

__all__ = [
    "DEFAULT_SERVER",
    "Client",
    "D8DistributedClient",
    "DistributedEvolutionAdapter",
    "EvolutionAdapter",
    "TaskFailed",
]


def _long_poll_seconds(deadline: float | None, cap_seconds: float) -> float:
    """How long the next long poll may ask the server to hold it."""
    if deadline is None:
        return cap_seconds
    return min(cap_seconds, max(0.0, deadline - time.monotonic()))


def _format_seconds(seconds: float) -> str:
    """Seconds for a query string: ``"2.5"``, ``"30"``."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


def _pause_if_answered_early(
    asked_at: float, wait_seconds: float, pause: float, deadline: float | None
) -> float:
    """Sleep a little if the server answered long before the poll's time was up.

    A server that ignores ``wait`` answers at once; this keeps the loop from
    hammering it. Returns the next pause (growing while answers come early).
    """
    if wait_seconds > 0 and time.monotonic() - asked_at >= wait_seconds / 2:
        return MIN_POLL_PAUSE_SECONDS
    left = math.inf if deadline is None else max(0.0, deadline - time.monotonic())
    time.sleep(min(pause, left))
    return min(pause * 2, MAX_POLL_PAUSE_SECONDS)


def _final_result(task_id: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """The result of an ended task, or the error that says how it ended."""
    result = record.get("result")
    result = dict(result) if isinstance(result, Mapping) else {}
    if record["status"] == "completed":
        return result
    if record["status"] == "cancelled":
        raise TaskCancelled(f"task {task_id} was cancelled")
    raise TaskFailed(task_id, record.get("error") or result.get("error"), record)


def _local_executor(task_type: str) -> Any:
    """The executor that runs ``task_type`` in this process."""
    if task_type == "evolution_crossover":
        return Crossover()
    if task_type == "evolution_mutation":
        return Mutation()
    from elastic.executors import get_executor

    return get_executor(task_type)


def _local_hint(task_type: str) -> str:
    """How to make ``task_type`` runnable locally, if it can be."""
    if task_type in LLM_TASK_TYPES:
        return " (give Client a local_provider to run LLM tasks in this process)"
    return ""


def _without_none(**fields: Any) -> dict[str, Any]:
    """The fields whose value is not None."""
    return {key: value for key, value in fields.items() if value is not None}


def _plain_bounds(bounds: Mapping[str, Sequence[float]] | None) -> dict[str, list[float]] | None:
    """Bounds as JSON-ready lists."""
    if bounds is None:
        return None
    return {key: list(pair) for key, pair in bounds.items()}
