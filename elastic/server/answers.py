"""The JSON schemas of the server's successful answers, published in ``/openapi.json``.

Each names the fields an answer always has and their types (extra fields may come:
the interface allows them); tests/test_api_fuzz.py holds every answer to its schema.
The status words come from the same enums the payloads are built from.
"""

from __future__ import annotations

from typing import Any

from elastic.tasks import TaskStatus, WorkerStatus
from elastic.transport import WAIT_PATH

STRING = {"type": "string"}
INTEGER = {"type": "integer"}
NUMBER = {"type": "number"}
BOOLEAN = {"type": "boolean"}
ANY_OBJECT = {"type": "object"}
TIME = {"type": ["string", "null"], "description": "ISO 8601 UTC, null when not yet"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` or null."""
    return {"anyOf": [schema, {"type": "null"}]}


def record(**fields: dict[str, Any]) -> dict[str, Any]:
    """A JSON object that always has ``fields`` (and may have more)."""
    return {"type": "object", "required": list(fields), "properties": fields}


def listing(item: dict[str, Any]) -> dict[str, Any]:
    """A JSON array of ``item``."""
    return {"type": "array", "items": item}


TASK_WORDS = {"enum": [status.value for status in TaskStatus]}
WORKER_WORDS = {"enum": [status.value for status in WorkerStatus]}
TASK_SUMMARY = record(
    task_id=STRING, type=STRING, status=TASK_WORDS, priority=INTEGER,
    assigned_to=nullable(STRING), attempts=INTEGER, failures=INTEGER, worker_deaths=INTEGER,
    held_reason=nullable(STRING), progress=nullable(NUMBER), description=nullable(STRING),
    source=nullable(STRING), error=nullable(STRING), created_at=TIME, finished_at=TIME)
ATTEMPT = record(attempt=INTEGER, worker_id=STRING, lease_token=INTEGER, started_at=TIME,
                 ended_at=TIME, outcome=STRING, error=nullable(STRING))
TASK_STATUS = {**TASK_SUMMARY, "required": [*TASK_SUMMARY["required"], "result", "data",
                                            "execution_time", "history", "unservable"],
               "properties": {**TASK_SUMMARY["properties"], "result": nullable(ANY_OBJECT),
                              "data": ANY_OBJECT, "execution_time": nullable(NUMBER),
                              "history": listing(ATTEMPT), "unservable": nullable(STRING)}}
LEASE = record(task_id=STRING, type=STRING, data=ANY_OBJECT, priority=INTEGER,
               lease_token=INTEGER, lease_expires_at=STRING, attempt=INTEGER,
               timeout_seconds=NUMBER, checkpoint=nullable(ANY_OBJECT))
WORKER = record(
    worker_id=STRING, worker_type=STRING, status=WORKER_WORDS, tasks_completed=INTEGER,
    tasks_failed=INTEGER, success_rate=nullable(NUMBER), capacity=INTEGER,
    active_tasks=INTEGER, capabilities=ANY_OBJECT, task_types=listing(STRING),
    last_heartbeat=TIME, registered_at=TIME, info=ANY_OBJECT)
RESULT_ENTRY = record(
    task_id=STRING, type=STRING, status=STRING, algorithm=nullable(STRING),
    parameters=nullable(ANY_OBJECT), execution_time=nullable(NUMBER), result=ANY_OBJECT,
    worker_id=nullable(STRING), completed_at=TIME, priority=STRING, priority_value=INTEGER,
    attempts=INTEGER)
SEED_004_TASK = record(
    task_id=STRING, type=STRING, status=STRING, priority=STRING, priority_value=INTEGER,
    worker_id=nullable(STRING), attempts=INTEGER, created_at=TIME, completed_at=TIME,
    result=nullable(ANY_OBJECT))
SEED_004_WORKER = record(
    id=STRING, worker_id=STRING, type=STRING, status={"enum": ["active", "inactive"]},
    capacity=INTEGER, active_tasks=INTEGER, tasks_completed=INTEGER, tasks_failed=INTEGER,
    success_rate=nullable(NUMBER), last_heartbeat=TIME)
SEED_004_STATS = record(
    orchestrator_stats=record(total_tasks=INTEGER, completed_tasks=INTEGER,
                              failed_tasks=INTEGER, pending_tasks=INTEGER,
                              active_workers=INTEGER, total_execution_time=NUMBER),
    tasks_summary=record(total=INTEGER, pending=INTEGER, redistributed=INTEGER),
    workers_summary=record(total=INTEGER, active=INTEGER, inactive=INTEGER))
TASK_MOVED = record(task_id=STRING, status=TASK_WORDS)
ONE_SUBMITTED = record(task_id=STRING, status={"const": "submitted"}, created=BOOLEAN,
                       changed=BOOLEAN, replaced=BOOLEAN)
MANY_SUBMITTED = record(task_ids=listing(STRING), status={"const": "submitted"},
                        created=INTEGER, duplicates=INTEGER, known=listing(STRING),
                        changed=listing(STRING), replaced=listing(STRING))
LONG_POLL = {"retry_after": {"type": "number", "description": "the server held too many long "
                             "polls to wait: ask again after this many seconds"}}

# path -> method -> the schema of its 200 answer; an operation not listed answers an object.
ANSWERS: dict[str, dict[str, dict[str, Any]]] = {
    "/health": {"get": record(status={"const": "healthy"}, workers_online=INTEGER,
                              tasks_pending=INTEGER)},
    "/api/workers/register": {"post": {**record(status={"const": "registered"},
                                                worker_id=STRING),
                                       "properties": {"status": {"const": "registered"},
                                                      "worker_id": STRING,
                                                      "worker_secret": STRING}}},
    "/api/workers/{worker_id}/heartbeat": {"post": record(status={"const": "ok"},
                                                          revoked=listing(STRING))},
    "/api/workers/{worker_id}/tasks": {"get": {
        **record(task=nullable(LEASE)),
        "properties": {"task": nullable(LEASE), "tasks": listing(LEASE), **LONG_POLL}}},
    "/api/workers/{worker_id}/unregister": {"post": record(status={"const": "unregistered"},
                                                           worker_id=STRING)},
    "/api/workers/list": {"get": record(workers=listing(WORKER), total=INTEGER)},
    "/api/tasks/submit": {"post": {"anyOf": [ONE_SUBMITTED, MANY_SUBMITTED]}},
    "/api/tasks/{task_id}/result": {"post": record(status={"const": "received"})},
    "/api/tasks/{task_id}/checkpoint": {"post": record(status={"const": "saved"})},
    WAIT_PATH: {"post": {**record(tasks=listing(TASK_SUMMARY), unknown=listing(STRING)),
                         "properties": {"tasks": listing(TASK_SUMMARY),
                                        "unknown": listing(STRING), **LONG_POLL}}},
    "/api/tasks/{task_id}/release": {"post": TASK_MOVED},
    "/api/tasks/{task_id}/release-hold": {"post": TASK_MOVED},
    "/api/tasks/{task_id}/cancel": {"post": TASK_MOVED},
    "/api/tasks/status/{task_id}": {"get": {**TASK_STATUS, "properties": {
        **TASK_STATUS["properties"], **LONG_POLL}}},
    "/api/tasks": {"get": record(tasks=listing(TASK_SUMMARY), total=INTEGER)},
    "/api/results": {"get": record(task_results=listing(RESULT_ENTRY), next=nullable(STRING))},
    "/api/stats": {"get": record(workers=ANY_OBJECT, tasks=ANY_OBJECT,
                                 success_rate_by_worker=ANY_OBJECT,
                                 total_execution_time=NUMBER, unservable=listing(ANY_OBJECT))},
    "/stats": {"get": SEED_004_STATS},
    "/tasks": {"get": listing(SEED_004_TASK)},
    "/workers": {"get": listing(SEED_004_WORKER)},
}


def answer_schema(path: str, method: str) -> dict[str, Any]:
    """The schema of the 200 answer of ``method`` on ``path`` (an object when not listed)."""
    return ANSWERS.get(path, {}).get(method, ANY_OBJECT)
