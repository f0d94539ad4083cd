"""``AsyncClient``: the asyncio client, on httpx; it carries out the same core flows.

Concurrent ``wait``s (and ``run``s) of one client share at most
``MAX_POLLS_IN_FLIGHT`` multiplexed long polls (``WaitHub``), so a ``gather`` of
hundreds of waits holds two server threads, not hundreds.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
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
    seconds_left,
    status_call,
)
from elastic.client.results import (
    AgentActionResult,
    CodeGenerationResult,
    EvolutionResult,
    TaskResult,
)
from elastic.errors import ElasticError, ServerUnreachable
from elastic.transport import MAX_IDS_PER_WAIT

T = TypeVar("T")
EvolutionType = Literal["evolution_crossover", "evolution_mutation"]
MAX_POLLS_IN_FLIGHT = 2


class AsyncClient(ClientBase):
    """An asyncio connection to one orchestrator: ``Client``'s methods, awaitable
    (arguments: see ``ClientBase``; the local fallback runs tasks in a thread)."""

    http: httpx.AsyncClient

    def _connect(self) -> None:
        self.http = httpx.AsyncClient(base_url=self.server, headers=self.core.headers)
        self.hub = WaitHub(self)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the waits' polls and close the HTTP connections."""
        await self.hub.close()
        await self.http.aclose()

    # -- tasks --------------------------------------------------------------------------

    async def submit(self, task_type: str, data: Mapping[str, Any],
                     priority: int = DEFAULT_PRIORITY, *, task_id: str | None = None) -> str:
        """Queue one task and return its id."""
        [queued] = await self.submit_many([{"type": task_type, "data": data,
                                            "priority": priority, "task_id": task_id}])
        return queued

    async def submit_many(self, tasks: Iterable[Mapping[str, Any]]) -> list[str]:
        """Queue tasks in one request, all or nothing; their ids in order."""
        return await self._run(self.core.submit_flow(tasks))

    async def status(self, task_id: str) -> dict[str, Any]:
        """The task's status record."""
        return await self._send(status_call(task_id))

    async def wait(self, task_id: str,
                   timeout: float | None = DEFAULT_WAIT_SECONDS) -> TaskResult:
        """Wait for the task to end and return its result (errors: see ``Client.wait``)."""
        return await self._run(self.core.wait_flow(task_id, timeout))

    @overload
    def as_completed(self, task_ids: Sequence[str], *, timeout: float | None = ...,
                     ordered: bool = ...,
                     return_exceptions: Literal[False] = ...) -> AsyncIterator[TaskResult]: ...

    @overload
    def as_completed(self, task_ids: Sequence[str], *, timeout: float | None = ...,
                     ordered: bool = ..., return_exceptions: Literal[True]
                     ) -> AsyncIterator[TaskResult | ElasticError]: ...

    async def as_completed(self, task_ids: Sequence[str], *,
                           timeout: float | None = DEFAULT_WAIT_SECONDS, ordered: bool = False,
                           return_exceptions: bool = False) -> AsyncIterator[Any]:
        """Yield each task's result as it ends (see ``Client.as_completed``)."""
        async for value in self._iterate(self.core.completion_flow(
                task_ids, timeout=timeout, ordered=ordered, return_exceptions=return_exceptions)):
            yield value

    @overload
    def map(self, task_type: EvolutionType, items: Iterable[Mapping[str, Any]], *,
            priority: int = ..., timeout: float | None = ...,
            ordered: bool = ...) -> AsyncIterator[EvolutionResult]: ...

    @overload
    def map(self, task_type: str, items: Iterable[Mapping[str, Any]], *, priority: int = ...,
            timeout: float | None = ..., ordered: bool = ...) -> AsyncIterator[TaskResult]: ...

    async def map(self, task_type: str, items: Iterable[Mapping[str, Any]], *,
                  priority: int = DEFAULT_PRIORITY, timeout: float | None = DEFAULT_WAIT_SECONDS,
                  ordered: bool = False) -> AsyncIterator[Any]:
        """Submit one task per data item in one request (when iteration starts), then yield
        their results as they end."""
        async for value in self._iterate(self.core.map_flow(
                task_type, items, priority=priority, timeout=timeout, ordered=ordered)):
            yield value

    @overload
    async def run(self, task_type: EvolutionType, data: Mapping[str, Any], priority: int = ...,
                  timeout: float | None = ..., *, local_fallback: bool | None = ...
                  ) -> EvolutionResult: ...

    @overload
    async def run(self, task_type: str, data: Mapping[str, Any], priority: int = ...,
                  timeout: float | None = ..., *,
                  local_fallback: bool | None = ...) -> TaskResult: ...

    async def run(self, task_type: str, data: Mapping[str, Any],
                  priority: int = DEFAULT_PRIORITY, timeout: float | None = DEFAULT_WAIT_SECONDS,
                  *, local_fallback: bool | None = None) -> TaskResult:
        """Submit a task, wait for it and return its result (fallback: see ``Client.run``)."""
        return await self._run(self.core.run_flow(task_type, data, priority=priority,
                                                  timeout=timeout, local_fallback=local_fallback))

    async def cancel(self, task_id: str) -> dict[str, Any]:
        """Cancel a task that has not ended."""
        return await self._send(cancel_call(task_id))

    # -- LLM tasks and the seed's calls -------------------------------------------------

    async def agent_action(self, messages: Sequence[Mapping[str, str]], model: str | None = None,
                           temperature: float | None = None, max_tokens: int | None = None, *,
                           timeout: float | None = DEFAULT_WAIT_SECONDS,
                           priority: int = DEFAULT_PRIORITY) -> AgentActionResult:
        """Run an ``agent_action`` and return its result."""
        return await self._run(self.core.agent_action_flow(
            messages, model=model, temperature=temperature, max_tokens=max_tokens,
            priority=priority, timeout=timeout))

    async def code_generation(self, prompt: str, language: str = "python", *,
                              model: str | None = None, temperature: float | None = None,
                              max_tokens: int | None = None,
                              timeout: float | None = DEFAULT_WAIT_SECONDS,
                              priority: int = DEFAULT_PRIORITY) -> CodeGenerationResult:
        """Run a ``code_generation`` task and return its result."""
        return await self._run(self.core.code_generation_flow(
            prompt, language, model=model, temperature=temperature, max_tokens=max_tokens,
            priority=priority, timeout=timeout))

    async def execute_agent_action(self, messages: Sequence[Mapping[str, str]],
                                   model: str | None = None, wait_for_result: bool = True, *,
                                   temperature: float | None = None,
                                   max_tokens: int | None = None,
                                   timeout: float | None = DEFAULT_WAIT_SECONDS,
                                   priority: int = DEFAULT_PRIORITY) -> dict[str, Any]:
        """The seed's call: the result's dict, or ``{"task_id": ...}`` without waiting."""
        return await self._run(self.core.execute_agent_action_flow(
            messages, model=model, wait_for_result=wait_for_result, temperature=temperature,
            max_tokens=max_tokens, priority=priority, timeout=timeout))

    async def _wait_for_result(self, task_id: str,
                               timeout: float | None = DEFAULT_WAIT_SECONDS) -> dict[str, Any]:
        """The seed's name for ``wait``, answering the seed's dict."""
        return (await self.wait(task_id, timeout)).to_dict()

    # -- the orchestrator ---------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        """The orchestrator's health."""
        return await self._send(Call("GET", "/health"))

    async def stats(self) -> dict[str, Any]:
        """Worker and task counts."""
        return await self._send(Call("GET", "/api/stats"))

    async def workers(self) -> list[dict[str, Any]]:
        """The registered workers."""
        return list((await self._send(Call("GET", "/api/workers/list"))).get("workers", []))

    # -- carrying out flows -------------------------------------------------------------

    async def _run(self, flow: Flow[T]) -> T:
        """Carry out a flow that emits nothing; its return value."""
        stepper = Stepper(flow)
        async for _ in self._iterate_stepper(stepper):
            raise AssertionError("this flow emits values; iterate it")
        return stepper.result()

    async def _iterate(self, flow: Flow[None]) -> AsyncIterator[Any]:
        """Carry out a flow, yielding what it emits."""
        async for value in self._iterate_stepper(Stepper(flow)):
            yield value

    async def _iterate_stepper(self, stepper: Stepper[Any]) -> AsyncIterator[Any]:
        try:
            while (effect := stepper.next_effect()) is not None:
                if isinstance(effect, Emit):
                    yield effect.value
                    continue
                try:
                    stepper.reply(await self._perform(effect))
                except ElasticError as error:
                    stepper.fail(error)
        finally:
            stepper.flow.close()

    async def _perform(self, effect: Effect) -> Any:
        if isinstance(effect, Call):
            return await self._send(effect)
        if isinstance(effect, Pause):
            await asyncio.sleep(effect.seconds)
            return None
        if isinstance(effect, WaitFor):
            return await self.hub.settle(effect.task_id, effect.deadline)
        if isinstance(effect, RunHere):
            return await asyncio.to_thread(self.core.run_here, effect)
        raise AssertionError(f"unknown effect {effect!r}")

    async def _send(self, call: Call) -> dict[str, Any]:
        """One HTTP request; the JSON object answered, or the matching ElasticError."""
        try:
            response = await self.http.request(call.method, call.path, json=call.body,
                                               timeout=self.core.request_timeout(call))
        except httpx.TransportError as error:
            raise self.core.unreachable(error) from error
        return self.core.answer_of(call, response.status_code, response.content)


class WaitHub:
    """Gathers one client's concurrent waits into at most ``MAX_POLLS_IN_FLIGHT`` long polls.

    Each poll watches up to ``MAX_IDS_PER_WAIT`` waited-for tasks, those no other
    poll watches first; when it answers, its settled tasks' waiters wake and, while
    tasks are left unwatched, another poll starts.
    """

    def __init__(self, client: AsyncClient) -> None:
        self.client = client
        self.waiters: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        self.deadlines: dict[asyncio.Future[dict[str, Any]], float | None] = {}
        self.watched: Counter[str] = Counter()
        self.polls: set[asyncio.Task[None]] = set()
        self.starting = False
        self.closed = False

    async def settle(self, task_id: str, deadline: float | None) -> dict[str, Any] | None:
        """The task's record once it ended or cannot run; None if the deadline came first."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(task_id, []).append(future)
        self.deadlines[future] = deadline
        self._start_poll()
        try:
            return await asyncio.wait_for(future, None if deadline is None
                                          else seconds_left(deadline))
        except TimeoutError:
            return None
        finally:
            self._forget(task_id, future)

    async def close(self) -> None:
        """Stop the polls in flight; waits still going raise ``ServerUnreachable``."""
        self.closed = True
        for poll in self.polls:
            poll.cancel()
        await asyncio.gather(*self.polls, return_exceptions=True)
        for task_id in list(self.waiters):
            self._wake(task_id, error=ServerUnreachable("the client was closed during the wait"))

    def _start_poll(self) -> None:
        """Start a poll if one is allowed and some waited-for task is unwatched."""
        if self.closed or self.starting or len(self.polls) >= MAX_POLLS_IN_FLIGHT:
            return
        if all(task_id in self.watched for task_id in self.waiters):
            return
        self.starting = True
        self.polls.add(asyncio.create_task(self._poll()))

    async def _poll(self) -> None:
        """One multiplexed wait; wake the waiters of the tasks it answers."""
        self.starting = False
        unwatched_first = sorted(self.waiters, key=lambda task_id: task_id in self.watched)
        window = unwatched_first[:MAX_IDS_PER_WAIT]
        self.watched.update(window)
        try:
            if window:
                records = await self.client._run(
                    self.client.core.settled_flow(window, self._latest_deadline()))
                for record in records:
                    self._wake(record["task_id"], record=record)
        except ElasticError as error:
            for task_id in window:
                self._wake(task_id, error=error)
        finally:
            self.watched -= Counter(window)
            self.polls.difference_update({asyncio.current_task()})
            self._start_poll()

    def _wake(self, task_id: str, *, record: dict[str, Any] | None = None,
              error: ElasticError | None = None) -> None:
        """Hand the task's waiters its record, or the error that ended the poll."""
        for future in self.waiters.pop(task_id, []):
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(record or {})

    def _forget(self, task_id: str, future: asyncio.Future[dict[str, Any]]) -> None:
        self.deadlines.pop(future, None)
        waiting = self.waiters.get(task_id, [])
        if future in waiting:
            waiting.remove(future)
        if not waiting:
            self.waiters.pop(task_id, None)

    def _latest_deadline(self) -> float | None:
        """The last deadline of any waiter (None: one waits without limit)."""
        deadlines = list(self.deadlines.values())
        if not deadlines or None in deadlines:
            return None
        return max(d for d in deadlines if d is not None)
