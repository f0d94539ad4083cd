"""``Client``: the blocking client, on httpx; it carries out the core's flows."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeVar, overload

import httpx

from elastic.client.core import (
    DEFAULT_PRIORITY,
    DEFAULT_WAIT_SECONDS,
    Call,
    ClientBase,
    Effect,
    Emit,
    Flow,
    Pause,
    RunHere,
    Stepper,
    WaitFor,
    cancel_call,
    status_call,
)
from elastic.client.results import (
    AgentActionResult,
    CodeGenerationResult,
    EvolutionResult,
    TaskResult,
)
from elastic.errors import ElasticError

T = TypeVar("T")
EvolutionType = Literal["evolution_crossover", "evolution_mutation"]


class Client(ClientBase):
    """A blocking connection to one orchestrator (arguments: see ``ClientBase``).

    Every wait has a timeout, ``DEFAULT_WAIT_SECONDS`` (600 s) unless given; None
    waits without limit. Waits ride out a restart of the orchestrator (asking
    again with backoff until their timeout).
    """

    http: httpx.Client

    def _connect(self) -> None:
        self.http = httpx.Client(base_url=self.server, headers=self.core.headers)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connections."""
        self.http.close()

    # -- tasks --------------------------------------------------------------------------

    def submit(self, task_type: str, data: Mapping[str, Any], priority: int = DEFAULT_PRIORITY,
               *, task_id: str | None = None) -> str:
        """Queue one task and return its id (``POST /api/tasks/submit``)."""
        return self.submit_many([{"type": task_type, "data": data, "priority": priority,
                                  "task_id": task_id}])[0]

    def submit_many(self, tasks: Iterable[Mapping[str, Any]]) -> list[str]:
        """Queue ``{"type", "data", "priority"?, "task_id"?}`` tasks in one request, all or
        nothing; their ids in order."""
        return self._run(self.core.submit_flow(tasks))

    def status(self, task_id: str) -> dict[str, Any]:
        """The task's status record (``GET /api/tasks/status/{id}``)."""
        return self._send(status_call(task_id))

    def wait(self, task_id: str, timeout: float | None = DEFAULT_WAIT_SECONDS) -> TaskResult:
        """Wait for the task to end and return its result.

        Raises:
            TaskFailed, TaskCancelled, TaskHeld: how it ended instead.
            NoWorkerCanRun: no live worker can run it (raised at once).
            TaskTimeout: it had not ended after ``timeout`` seconds.
            ServerUnreachable: the orchestrator stayed unreachable until the timeout.
        """
        return self._run(self.core.wait_flow(task_id, timeout))

    @overload
    def as_completed(self, task_ids: Sequence[str], *, timeout: float | None = ...,
                     ordered: bool = ...,
                     return_exceptions: Literal[False] = ...) -> Iterator[TaskResult]: ...

    @overload
    def as_completed(self, task_ids: Sequence[str], *, timeout: float | None = ...,
                     ordered: bool = ..., return_exceptions: Literal[True]
                     ) -> Iterator[TaskResult | ElasticError]: ...

    def as_completed(self, task_ids: Sequence[str], *,
                     timeout: float | None = DEFAULT_WAIT_SECONDS, ordered: bool = False,
                     return_exceptions: bool = False) -> Iterator[Any]:
        """Yield each task's result as it ends (in ``task_ids``' order with ``ordered``).

        One long poll at a time covers up to 500 of the tasks, however many there
        are. ``timeout`` bounds the whole wait. A task that failed, was cancelled or
        cannot run raises its error, or is yielded as one with ``return_exceptions``.
        """
        yield from self._iterate(self.core.completion_flow(
            task_ids, timeout=timeout, ordered=ordered, return_exceptions=return_exceptions))

    @overload
    def map(self, task_type: EvolutionType, items: Iterable[Mapping[str, Any]], *,
            priority: int = ..., timeout: float | None = ...,
            ordered: bool = ...) -> Iterator[EvolutionResult]: ...

    @overload
    def map(self, task_type: str, items: Iterable[Mapping[str, Any]], *, priority: int = ...,
            timeout: float | None = ..., ordered: bool = ...) -> Iterator[TaskResult]: ...

    def map(self, task_type: str, items: Iterable[Mapping[str, Any]], *,
            priority: int = DEFAULT_PRIORITY, timeout: float | None = DEFAULT_WAIT_SECONDS,
            ordered: bool = False) -> Iterator[Any]:
        """Submit one ``task_type`` task per data item in one request (now), then yield
        their results as they end (see ``as_completed``)."""
        task_ids = self.submit_many({"type": task_type, "data": data, "priority": priority}
                                    for data in items)
        return self.as_completed(task_ids, timeout=timeout, ordered=ordered)

    @overload
    def run(self, task_type: EvolutionType, data: Mapping[str, Any], priority: int = ...,
            timeout: float | None = ..., *, local_fallback: bool | None = ...
            ) -> EvolutionResult: ...

    @overload
    def run(self, task_type: str, data: Mapping[str, Any], priority: int = ...,
            timeout: float | None = ..., *, local_fallback: bool | None = ...) -> TaskResult: ...

    def run(self, task_type: str, data: Mapping[str, Any], priority: int = DEFAULT_PRIORITY,
            timeout: float | None = DEFAULT_WAIT_SECONDS, *,
            local_fallback: bool | None = None) -> TaskResult:
        """Submit a task, wait for it and return its result.

        With the local fallback (the client's setting unless ``local_fallback`` is
        given) the task runs in this process instead (``result.ran == "local"``) when
        the orchestrator refuses the connection, when no live worker can run it, or,
        for evolution tasks, when it does not end in time; but only after it was
        withdrawn from the orchestrator's queue. One that already runs there is
        waited for; if the orchestrator goes away after accepting it, this raises.
        """
        return self._run(self.core.run_flow(task_type, data, priority=priority, timeout=timeout,
                                            local_fallback=local_fallback))

    def cancel(self, task_id: str) -> dict[str, Any]:
        """Cancel a task that has not ended (``POST /api/tasks/{id}/cancel``)."""
        return self._send(cancel_call(task_id))

    # -- LLM tasks and the seed's calls -------------------------------------------------

    def agent_action(self, messages: Sequence[Mapping[str, str]], model: str | None = None,
                     temperature: float | None = None, max_tokens: int | None = None, *,
                     timeout: float | None = DEFAULT_WAIT_SECONDS,
                     priority: int = DEFAULT_PRIORITY) -> AgentActionResult:
        """Run an ``agent_action`` (chat messages -> text) and return its result."""
        return self._run(self.core.agent_action_flow(
            messages, model=model, temperature=temperature, max_tokens=max_tokens,
            priority=priority, timeout=timeout))

    def code_generation(self, prompt: str, language: str = "python", *, model: str | None = None,
                        temperature: float | None = None, max_tokens: int | None = None,
                        timeout: float | None = DEFAULT_WAIT_SECONDS,
                        priority: int = DEFAULT_PRIORITY) -> CodeGenerationResult:
        """Run a ``code_generation`` task and return its result (with ``code``)."""
        return self._run(self.core.code_generation_flow(
            prompt, language, model=model, temperature=temperature, max_tokens=max_tokens,
            priority=priority, timeout=timeout))

    def execute_agent_action(self, messages: Sequence[Mapping[str, str]],
                             model: str | None = None, wait_for_result: bool = True, *,
                             temperature: float | None = None, max_tokens: int | None = None,
                             timeout: float | None = DEFAULT_WAIT_SECONDS,
                             priority: int = DEFAULT_PRIORITY) -> dict[str, Any]:
        """The seed's call: the result's dict (with ``"output"``), or ``{"task_id": ...}``
        when ``wait_for_result`` is False."""
        return self._run(self.core.execute_agent_action_flow(
            messages, model=model, wait_for_result=wait_for_result, temperature=temperature,
            max_tokens=max_tokens, priority=priority, timeout=timeout))

    def _wait_for_result(self, task_id: str,
                         timeout: float | None = DEFAULT_WAIT_SECONDS) -> dict[str, Any]:
        """The seed's name for ``wait``, answering the seed's dict."""
        return self.wait(task_id, timeout).to_dict()

    # -- the orchestrator ---------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The orchestrator's health (``GET /health``)."""
        return self._send(Call("GET", "/health"))

    def stats(self) -> dict[str, Any]:
        """Worker and task counts (``GET /api/stats``)."""
        return self._send(Call("GET", "/api/stats"))

    def workers(self) -> list[dict[str, Any]]:
        """The registered workers (``GET /api/workers/list``)."""
        return list(self._send(Call("GET", "/api/workers/list")).get("workers", []))

    # -- carrying out flows -------------------------------------------------------------

    def _run(self, flow: Flow[T]) -> T:
        """Carry out a flow that emits nothing; its return value."""
        stepper = Stepper(flow)
        for _ in self._iterate_stepper(stepper):
            raise AssertionError("this flow emits values; iterate it")
        return stepper.result()

    def _iterate(self, flow: Flow[None]) -> Iterator[Any]:
        """Carry out a flow, yielding what it emits."""
        yield from self._iterate_stepper(Stepper(flow))

    def _iterate_stepper(self, stepper: Stepper[Any]) -> Iterator[Any]:
        try:
            while (effect := stepper.next_effect()) is not None:
                if isinstance(effect, Emit):
                    yield effect.value
                    continue
                try:
                    stepper.reply(self._perform(effect))
                except ElasticError as error:
                    stepper.fail(error)
        finally:
            stepper.flow.close()

    def _perform(self, effect: Effect) -> Any:
        if isinstance(effect, Call):
            return self._send(effect)
        if isinstance(effect, Pause):
            time.sleep(effect.seconds)
            return None
        if isinstance(effect, WaitFor):
            return self._run(self.core.settle_flow(effect.task_id, effect.deadline))
        if isinstance(effect, RunHere):
            return self.core.run_here(effect)
        raise AssertionError(f"unknown effect {effect!r}")

    def _send(self, call: Call) -> dict[str, Any]:
        """One HTTP request; the JSON object answered, or the matching ElasticError."""
        try:
            response = self.http.request(call.method, call.path, json=call.body,
                                         timeout=self.core.request_timeout(call))
        except httpx.TransportError as error:
            raise self.core.unreachable(error) from error
        return self.core.answer_of(call, response.status_code, response.content)
