"""The seed-000 HTTP protocol (/health and /api/...): thin routes over the Store.

Status words here are the seed's: pending/assigned/completed/failed (+ cancelled and
held) for tasks and online/busy/dead/offline for workers. Calls about a worker that
registered with a secret must carry it (see ``elastic.server.identity``); long polls
wait through ``elastic.server.waiters``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Protocol

import bottle

from elastic import results, seed004, taskfiles
from elastic.config import Config
from elastic.errors import ElasticError, InvalidInput
from elastic.server import fleet
from elastic.server.identity import (
    WorkerIdentity,
    issue_secret,
    presented_hash,
    presented_secret,
)
from elastic.server.waiters import Answer, LongPolls
from elastic.store import ReportedResult, Store, UnservableWork
from elastic.tasks import (
    MAX_ESTIMATED_TOKENS,
    MAX_SOURCE_LENGTH,
    Lease,
    Requirement,
    Task,
    TaskStatus,
    Worker,
    WorkerStatus,
    id_problem,
    iso,
    whole_number,
)
from elastic.transport import MAX_IDS_PER_WAIT, WAIT_PATH
from elastic.web import QueryInteger, QueryNumber, field_of, read_json
from elastic.worker_types import WORKER_TYPES

MAX_LEASES_PER_POLL = 1024
MAX_RESULTS_PER_REQUEST = 1024
MAX_IDS_PER_LIST = 500
MAX_CAPACITY = 1024
MAX_WORKER_TYPE_LENGTH = 64  # the workers table's String(64)
DEFAULT_SOURCE = "api"

WAIT = QueryNumber("wait", default=0.0, minimum=0.0, maximum=86_400.0,
                   description="hold the request up to this many seconds (long poll)")
LEASE_LIMIT = QueryInteger("limit", default=1, minimum=1, maximum=MAX_LEASES_PER_POLL,
                           description="lease up to this many tasks (answer also has 'tasks')")
LEASE_MAX_TOKENS = QueryInteger("max_tokens", default=0, minimum=0, maximum=MAX_ESTIMATED_TOKENS,
                                description="only tasks whose estimated tokens fit this budget")
TASK_LIST_LIMIT = QueryInteger("limit", default=1000, minimum=1, maximum=100_000,
                               description="how many")
TASK_LIST_BEFORE = QueryInteger("before", default=0, minimum=0, maximum=2**62,
                                description="the 'next' of the previous page: only older tasks")
RESULTS_SINCE = QueryNumber("since", default=0.0, minimum=0.0, maximum=1e11,
                            description="only tasks that ended at or after this time "
                                        "(seconds since the epoch)")
RESULTS_CURSOR_PATTERN = r"^[0-9]+(\.[0-9]+)?(e[-+]?[0-9]+)?:[0-9]{1,18}$"  # /api/results' 'next'
RESULTS_LIMIT = QueryInteger("limit", default=500, minimum=1, maximum=5000,
                             description="how many tasks in this page")


class TaskListener(Protocol):
    """Told of tasks leased and of results received (metrics, alerts)."""

    def task_started(self, lease: Lease) -> None:
        """A worker leased the task."""

    def task_ended(self, task: Task) -> None:
        """A worker's result ended an attempt of ``task`` (as it is now)."""


def add_routes(app: bottle.Bottle, store: Store, config: Config, *, identity: WorkerIdentity,
               long_polls: LongPolls, listeners: Sequence[TaskListener] = ()) -> None:
    """Attach the seed-000 routes to ``app``; ``listeners`` hear of leases and results."""

    @app.get("/health")
    def health() -> dict[str, Any]:
        counts = store.count_tasks()
        workers = store.list_workers()
        return {"status": "healthy", "workers_online": sum(w.is_live for w in workers),
                "tasks_pending": counts["pending"]}

    @app.post("/api/workers/register")
    def register_worker() -> dict[str, Any]:
        body = read_json()
        worker_id = _identifier(body, "worker_id")
        fleet.refuse_undeclared(config, worker_id)
        worker_type, capabilities = _worker_type_and_capabilities(body)
        capacity = field_of(body, "capacity", int, required=False, default=1)
        if not 1 <= capacity <= MAX_CAPACITY:
            raise InvalidInput(f"field 'capacity': must be between 1 and {MAX_CAPACITY}")
        secret, secret_hash = issue_secret(asked=field_of(body, "secret", bool, required=False))
        store.register_worker(worker_id, worker_type=worker_type, capabilities=capabilities,
                              capacity=capacity, secret_hash=secret_hash,
                              presented_hash=presented_hash())
        identity.remember(worker_id, secret_hash)
        answer = {"status": "registered", "worker_id": worker_id}
        return answer if secret is None else {**answer, "worker_secret": secret}

    @app.post("/api/workers/<worker_id>/heartbeat")
    def heartbeat(worker_id: str) -> dict[str, Any]:
        identity.check(worker_id, presented_secret())
        body = read_json(required=False)
        running = field_of(body, "tasks", dict, required=False)  # None: the seed's bare beat
        tokens, progress = _running_tasks(running or {})
        info = field_of(body, "info", dict, required=False)
        revoked = store.heartbeat(worker_id, running=None if running is None else tokens,
                                  progress=progress, info=info)
        return {"status": "ok", "revoked": revoked}

    @app.get("/api/workers/<worker_id>/tasks")
    def poll_tasks(worker_id: str) -> dict[str, Any]:
        identity.check(worker_id, presented_secret())
        wait = _wait_seconds(config)
        limit = LEASE_LIMIT.read()
        max_tokens = LEASE_MAX_TOKENS.read() if bottle.request.query.get("max_tokens") else None
        types = [t for t in bottle.request.query.get("types", "").split(",") if t] or None
        leased = long_polls.wait(lambda: store.lease_tasks(
            worker_id, limit=limit, task_types=types, max_estimated_tokens=max_tokens),
            bool, wait)
        for lease in leased.value:
            for listener in listeners:
                listener.task_started(lease)
        payloads = [lease_payload(lease) for lease in leased.value]
        answer: dict[str, Any] = {"task": payloads[0] if payloads else None}
        if "limit" in bottle.request.query:
            answer["tasks"] = payloads
        return with_retry_after(answer, leased)

    @app.post("/api/tasks/submit")
    def submit() -> dict[str, Any]:
        body = read_json()
        source = _source(body.pop("source", None))
        replace = field_of(body, "replace", bool, required=False, default=False)
        body.pop("replace", None)
        new_tasks = taskfiles.parse_task_document(body, source=source, derive_ids=False)
        outcomes = store.submit_tasks(new_tasks, replace=replace)
        if "tasks" not in body:
            return {"task_id": outcomes[0].task_id, "status": "submitted",
                    "created": outcomes[0].created, "changed": outcomes[0].changed,
                    "replaced": outcomes[0].replaced}
        return {"task_ids": [o.task_id for o in outcomes], "status": "submitted",
                "created": sum(o.created for o in outcomes),
                "duplicates": sum(not o.created for o in outcomes),
                "known": [o.task_id for o in outcomes if not o.created],
                "changed": [o.task_id for o in outcomes if o.changed],
                "replaced": [o.task_id for o in outcomes if o.replaced]}

    @app.post("/api/tasks/<task_id>/result")
    def report_result(task_id: str) -> dict[str, Any]:
        body = read_json()
        worker_id = field_of(body, "worker_id", str)
        identity.check(worker_id, presented_secret())
        result = field_of(body, "result", dict)
        token = field_of(body, "lease_token", int, required=False)
        task = store.record_result(task_id, worker_id=worker_id, lease_token=token, result=result)
        for listener in listeners:
            listener.task_ended(task)
        return {"status": "received"}

    @app.post("/api/workers/<worker_id>/results")
    def report_results(worker_id: str) -> dict[str, Any]:
        identity.check(worker_id, presented_secret())
        reported = _reported_results(read_json())
        refusals = store.record_results(reported, worker_id=worker_id)
        return {"results": [result_answer(item.task_id, refusal)
                            for item, refusal in zip(reported, refusals, strict=True)]}

    @app.post("/api/tasks/<task_id>/checkpoint")
    def save_checkpoint(task_id: str) -> dict[str, Any]:
        body = read_json()
        worker_id = field_of(body, "worker_id", str)
        identity.check(worker_id, presented_secret())
        progress = field_of(body, "progress", (int, float), required=False)
        store.save_checkpoint(task_id, worker_id=worker_id,
                              lease_token=field_of(body, "lease_token", int, required=False),
                              checkpoint=field_of(body, "checkpoint", dict), progress=progress)
        return {"status": "saved"}

    @app.post("/api/tasks/<task_id>/release")
    def release_task(task_id: str) -> dict[str, Any]:
        body = read_json()
        worker_id = field_of(body, "worker_id", str)
        identity.check(worker_id, presented_secret())
        task = store.release_task(task_id, worker_id=worker_id,
                                  lease_token=field_of(body, "lease_token", int, required=False))
        return {"task_id": task.task_id, "status": task.status.value}

    @app.post("/api/tasks/<task_id>/release-hold")
    def release_hold(task_id: str) -> dict[str, Any]:
        task = store.release_hold(task_id)
        return {"task_id": task.task_id, "status": task.status.value}

    @app.post("/api/tasks/<task_id>/retry")
    def retry(task_id: str) -> dict[str, Any]:
        task = store.retry_task(task_id)
        return {"task_id": task.task_id, "status": task.status.value}

    @app.post("/api/tasks/<task_id>/cancel")
    def cancel(task_id: str) -> dict[str, Any]:
        body = read_json(required=False)
        only_pending = field_of(body, "only_pending", bool, required=False, default=False)
        task = store.cancel_task(task_id, only_pending=only_pending)
        return {"task_id": task.task_id, "status": task.status.value}

    @app.post(WAIT_PATH)
    def wait_for_tasks() -> dict[str, Any]:
        body = read_json()
        task_ids = _task_id_list(body)
        wait = min(_seconds_field(body, "wait"), config.max_wait_seconds)
        found = long_polls.wait(lambda: settled_tasks(store, task_ids),
                                lambda answer: bool(answer["tasks"] or answer["unknown"]), wait)
        return with_retry_after(found.value, found)

    @app.get("/api/tasks/status/<task_id>")
    def task_status(task_id: str) -> dict[str, Any]:
        wait = _wait_seconds(config)
        task = long_polls.wait(lambda: store.get_task(task_id),
                               lambda found: found.status.is_settled, wait)
        return with_retry_after(task_status_payload(task.value, store), task)

    @app.get("/api/tasks")
    def list_tasks() -> dict[str, Any]:
        limit = TASK_LIST_LIMIT.read()
        ids = bottle.request.query.getall("id")
        if len(ids) > MAX_IDS_PER_LIST:
            raise InvalidInput(f"query parameter 'id': at most {MAX_IDS_PER_LIST} ids per request")
        if any("\x00" in task_id for task_id in ids):  # PostgreSQL text cannot hold one
            raise InvalidInput("query parameter 'id': a task id has no NUL character")
        types = bottle.request.query.getall("type")
        if any("\x00" in task_type for task_type in types):
            raise InvalidInput("query parameter 'type': a task type has no NUL character")
        found = store.list_tasks(task_ids=ids or None, statuses=_statuses_asked(),
                                 task_types=types or None, limit=limit, newest_first=True,
                                 before_seq=TASK_LIST_BEFORE.read() or None)
        return {"tasks": [task_summary(task) for task in found], "total": len(found),
                "next": found[-1].seq if len(found) == limit else None}

    @app.get("/api/results")
    def results_page() -> dict[str, Any]:
        limit = RESULTS_LIMIT.read()
        page = store.ended_tasks_page(since=RESULTS_SINCE.read() or None,
                                      after=_results_cursor(), limit=limit)
        return {"task_results": [seed004.task_result_entry(task) for task in page],
                "next": _cursor_text(page[-1]) if len(page) == limit else None}

    @app.get("/api/workers/list")
    def list_workers() -> dict[str, Any]:
        found = store.list_workers()
        return {"workers": [worker_payload(w) for w in found], "total": len(found)}

    @app.get("/api/stats")
    def stats() -> dict[str, Any]:
        counts = store.count_tasks()
        found = store.list_workers()
        by_status = {status.value: sum(w.status is status for w in found) for status in WorkerStatus}
        return {
            "workers": {**by_status, "total": len(found)},
            "tasks": counts,
            "success_rate_by_worker": {w.worker_id: w.success_rate for w in found},
            "total_execution_time": store.total_execution_seconds(),
            "unservable": [unservable_payload(work) for work in store.unservable_work()],
        }

    @app.post("/api/workers/<worker_id>/unregister")
    def unregister(worker_id: str) -> dict[str, Any]:
        identity.check(worker_id, presented_secret())
        store.unregister_worker(worker_id)
        return {"status": "unregistered", "worker_id": worker_id}


def _reported_results(body: dict[str, Any]) -> list[ReportedResult]:
    """``body["results"]``: 1..MAX_RESULTS_PER_REQUEST objects with task_id, result and
    (optional) lease_token; a wrong one is named by its index."""
    items = field_of(body, "results", list)
    if not 1 <= len(items) <= MAX_RESULTS_PER_REQUEST:
        raise InvalidInput(f"field 'results': expected 1 to {MAX_RESULTS_PER_REQUEST} "
                           f"results, got {len(items)}")
    reported = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidInput(f"field 'results[{index}]': expected a JSON object")
        try:
            reported.append(ReportedResult(
                task_id=field_of(item, "task_id", str),
                lease_token=field_of(item, "lease_token", int, required=False),
                result=field_of(item, "result", dict)))
        except InvalidInput as exc:
            raise InvalidInput(exc.message.replace("field '", f"field 'results[{index}].", 1)
                               ) from None
        if "\x00" in reported[-1].task_id:  # PostgreSQL text cannot hold one
            raise InvalidInput(f"field 'results[{index}].task_id': a task id has no NUL "
                               "character")
    return reported


def result_answer(task_id: str, refusal: ElasticError | None) -> dict[str, Any]:
    """The answer for one result of a batch: received, or refused with the status and
    message a single result would have got (409 stale lease, 404 unknown task)."""
    if refusal is None:
        return {"task_id": task_id, "status": "received"}
    return {"task_id": task_id, "status": "refused", "code": refusal.http_status,
            "error": refusal.message}


def _statuses_asked() -> list[TaskStatus] | None:
    """The ``?status=`` values of a request, checked against the seed-000 words."""
    words = bottle.request.query.getall("status")
    try:
        return [TaskStatus(word) for word in words] or None
    except ValueError:
        known = ", ".join(status.value for status in TaskStatus)
        raise InvalidInput(f"query parameter 'status': expected one of {known}") from None


def _results_cursor() -> tuple[float, int] | None:
    """``?after=``: where the previous page of ``/api/results`` ended (its ``next``)."""
    raw = bottle.request.query.get("after")
    if not raw:
        return None
    if not re.fullmatch(RESULTS_CURSOR_PATTERN, raw):
        raise InvalidInput("query parameter 'after': expected the 'next' of the previous "
                           f"page, got {raw!r}")
    finished_at, _, seq = raw.partition(":")
    return float(finished_at), int(seq)


def _cursor_text(task: Task) -> str:
    finished_at, seq = results.page_cursor(task)
    return f"{finished_at!r}:{seq}"


def _wait_seconds(config: Config) -> float:
    """The ``?wait=`` of a long poll, capped at ``max_wait_seconds`` (asking more is no error)."""
    return min(WAIT.read(), config.max_wait_seconds)


def _task_id_list(body: dict[str, Any]) -> list[str]:
    """``body["task_ids"]``: 1..MAX_IDS_PER_WAIT strings, repeats dropped."""
    task_ids = field_of(body, "task_ids", list)
    if not task_ids or len(task_ids) > MAX_IDS_PER_WAIT:
        raise InvalidInput(f"field 'task_ids': expected 1 to {MAX_IDS_PER_WAIT} task ids, "
                           f"got {len(task_ids)}")
    if not all(isinstance(task_id, str) and "\x00" not in task_id for task_id in task_ids):
        raise InvalidInput("field 'task_ids': expected a list of strings without NUL")
    return list(dict.fromkeys(task_ids))


def _seconds_field(body: dict[str, Any], name: str) -> float:
    """An optional number of seconds from 0 to a day (default 0)."""
    value = field_of(body, name, (int, float), required=False, default=0.0)
    if not 0 <= value <= 86_400:
        raise InvalidInput(f"field '{name}': must be between 0 and 86400 seconds")
    return float(value)


def _identifier(body: dict[str, Any], name: str) -> str:
    value = field_of(body, name, str)
    problem = id_problem(value)
    if problem:
        raise InvalidInput(f"field '{name}': {problem}")
    return value


def _worker_type_and_capabilities(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A registering worker's type and capabilities; an unknown type must list its task types."""
    worker_type = field_of(body, "worker_type", str)
    if not 1 <= len(worker_type) <= MAX_WORKER_TYPE_LENGTH:
        raise InvalidInput(f"field 'worker_type': must be 1..{MAX_WORKER_TYPE_LENGTH} characters")
    capabilities = field_of(body, "capabilities", dict, required=False, default={})
    if worker_type not in WORKER_TYPES and not capabilities.get("task_types"):
        known = ", ".join(WORKER_TYPES)
        raise InvalidInput(f"field 'worker_type': unknown type {worker_type!r} (known: {known})"
                           " or give capabilities.task_types")
    _check_string_list(capabilities, "task_types", "algorithms", "models")
    return worker_type, capabilities


def _source(value: object) -> str:
    """Where submitted tasks came from (``elastic submit`` sends the file name); default "api"."""
    if value is None:
        return DEFAULT_SOURCE
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_SOURCE_LENGTH or "\x00" in value:
        raise InvalidInput(f"field 'source': must be a string of 1..{MAX_SOURCE_LENGTH} "
                           "characters without NUL")
    return value


def _check_string_list(capabilities: dict[str, Any], *names: str) -> None:
    for name in names:
        value = capabilities.get(name)
        if value is not None and (not isinstance(value, list)
                                  or not all(isinstance(v, str) for v in value)):
            raise InvalidInput(f"field 'capabilities.{name}': expected a list of strings")


def _running_tasks(running: dict[str, Any]) -> tuple[dict[str, int], dict[str, float]]:
    tokens, progress = {}, {}
    for task_id, state in running.items():
        token = whole_number(state.get("lease_token")) if isinstance(state, dict) else None
        if token is None:
            raise InvalidInput(f"field 'tasks.{task_id}': expected {{\"lease_token\": <int>, "
                               "\"progress\": <number>}")
        tokens[task_id] = token
        fraction = state.get("progress")
        if fraction is None:
            continue
        if not isinstance(fraction, int | float) or isinstance(fraction, bool):
            raise InvalidInput(f"field 'tasks.{task_id}.progress': expected a number")
        progress[task_id] = float(fraction)
    return tokens, progress


def with_retry_after(payload: dict[str, Any], answer: Answer[Any]) -> dict[str, Any]:
    """``payload``, saying when to ask again if the long poll could not wait (the server
    was holding ``max_long_polls`` already): ``retry_after`` and a Retry-After header."""
    if answer.retry_after_seconds is None:
        return payload
    bottle.response.set_header("Retry-After", str(math.ceil(answer.retry_after_seconds)))
    return {**payload, "retry_after": answer.retry_after_seconds}


def settled_tasks(store: Store, task_ids: list[str]) -> dict[str, Any]:
    """The tasks among ``task_ids`` that ended, are held, or that no live worker can run
    (``tasks``), and the ids not found (``unknown``): what a wait for them answers."""
    statuses = store.task_statuses(task_ids)
    pending = [task_id for task_id, status in statuses.items() if status is TaskStatus.PENDING]
    reasons = unservable_reasons(store, pending)
    settled = [task_id for task_id, status in statuses.items() if status.is_settled]
    found = store.list_tasks(task_ids=[*settled, *reasons]) if settled or reasons else []
    return {"tasks": [{**task_summary(task), "result": task.result,
                       "unservable": reasons.get(task.task_id)} for task in found],
            "unknown": [task_id for task_id in task_ids if task_id not in statuses]}


def unservable_reasons(store: Store, task_ids: list[str]) -> dict[str, str]:
    """Why no live worker can run each of these tasks that is pending (the others left out).

    Each task's need is checked against the live workers alone, never by grouping the
    whole queue: cheap however many tasks wait (a task's page asks every few seconds).
    """
    waiting = store.list_tasks(task_ids=task_ids, statuses=[TaskStatus.PENDING]) if task_ids else []
    if not waiting:
        return {}
    workers = store.list_workers()
    reasons = {task.task_id: Requirement.of(task.type, task.data).unmet_reason(workers)
               for task in waiting}
    return {task_id: reason for task_id, reason in reasons.items() if reason is not None}


def unservable_payload(work: UnservableWork) -> dict[str, Any]:
    """Pending tasks no live worker can run: what they need, how many, why."""
    need = work.requirement
    return {"type": need.task_type, "algorithm": need.algorithm, "model": need.model,
            "count": work.count, "reason": work.reason}


def lease_payload(lease: Lease) -> dict[str, Any]:
    """What a worker receives for one leased task (the seed's fields first)."""
    task = lease.task
    return {"task_id": task.task_id, "type": task.type, "data": task.data,
            "priority": task.priority, "lease_token": lease.lease_token,
            "lease_expires_at": iso(lease.lease_expires_at), "attempt": task.attempts,
            "timeout_seconds": lease.timeout_seconds, "checkpoint": task.checkpoint}


def task_summary(task: Task) -> dict[str, Any]:
    """A task's main fields, in the seed-000 words."""
    return {"task_id": task.task_id, "type": task.type, "status": task.status.value,
            "priority": task.priority, "assigned_to": task.worker_id,
            "attempts": task.attempts, "failures": task.failures,
            "worker_deaths": task.worker_deaths, "held_reason": task.held_reason,
            "progress": task.progress,
            "description": task.description, "source": task.source, "error": task.error,
            "created_at": iso(task.created_at), "started_at": iso(task.started_at),
            "finished_at": iso(task.finished_at)}


def task_status_payload(task: Task, store: Store) -> dict[str, Any]:
    """The seed's status answer plus the task's attempt history."""
    history = [{"attempt": a.attempt, "worker_id": a.worker_id, "lease_token": a.lease_token,
                "started_at": iso(a.started_at), "ended_at": iso(a.ended_at),
                "outcome": a.outcome, "error": a.error} for a in store.task_attempts(task.task_id)]
    unservable = unservable_reasons(store, [task.task_id]).get(task.task_id)
    return {**task_summary(task), "result": task.result, "data": task.data,
            "execution_time": task.execution_time_s, "history": history,
            "unservable": unservable}


def worker_payload(worker: Worker) -> dict[str, Any]:
    """A worker in the seed-000 words."""
    return {"worker_id": worker.worker_id, "worker_type": worker.worker_type,
            "status": worker.status.value, "tasks_completed": worker.tasks_completed,
            "tasks_failed": worker.tasks_failed, "success_rate": worker.success_rate,
            "capacity": worker.capacity, "active_tasks": worker.active_tasks,
            "capabilities": worker.capabilities, "task_types": worker.task_types,
            "last_heartbeat": iso(worker.last_heartbeat_at),
            "registered_at": iso(worker.registered_at), "info": worker.info}
