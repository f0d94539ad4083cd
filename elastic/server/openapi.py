"""``GET /openapi.json``: the description of every endpoint (tests check it covers all routes)."""

from __future__ import annotations

from typing import Any

import bottle

from elastic import __version__
from elastic.server.budgets import MAX_ESTIMATED_TOKENS, MAX_ID_LENGTH, MAX_PAUSE_UNTIL

OBJECT = {"type": "object"}
ERROR = {"description": "error", "content": {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}}}}
PRIORITY = {"oneOf": [{"type": "integer", "minimum": 1, "maximum": 10},
                      {"type": "string", "enum": ["high", "medium", "low"]}]}
TASK_TYPE = {"type": "string", "enum": ["agent_action", "code_generation", "evolution_crossover",
                                        "evolution_mutation", "simulation"]}
NEW_TASK = {"type": "object", "properties": {
    "task_id": {"type": "string"}, "type": TASK_TYPE, "data": OBJECT, "priority": PRIORITY,
    "description": {"type": "string"}, "algorithm": {"type": "string"},
    "parameters": OBJECT}}
LEASE_BODY = {"type": "object", "required": ["worker_id"], "properties": {
    "worker_id": {"type": "string"}, "lease_token": {"type": "integer"}}}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


def _operation(summary: str, *, body: dict[str, Any] | None = None,
               params: list[dict[str, Any]] | None = None,
               statuses: tuple[int, ...] = (400, 401)) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {"200": {"description": "ok", "content": {"application/json": {
            "schema": {"type": ["object", "array"]}}}},
            **{str(status): ERROR for status in statuses}},
    }
    if params:
        operation["parameters"] = params
    if body is not None:
        operation["requestBody"] = {"required": True,
                                    "content": {"application/json": {"schema": body}}}
    return operation


def _required(**properties: dict[str, Any]) -> dict[str, Any]:
    """A JSON object schema whose listed properties are all required."""
    return {"type": "object", "required": list(properties), "properties": properties}


TOKENS = {"type": "integer", "minimum": 0, "maximum": MAX_ESTIMATED_TOKENS}
IDENTIFIER = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH}
NAME = _path_param("name")
BUDGET_PATHS: dict[str, dict[str, Any]] = {
    "/api/providers": {"get": _operation(
        "Every provider's shared budget: cooldown, limits and what remains of each")},
    "/api/providers/{name}": {"get": _operation(
        "One provider's budget, when a request fits and the tokens a worker may lease for",
        statuses=(400, 401, 404), params=[NAME, _query(
            "estimated_tokens", TOKENS, "the size of the request asked about (default 0)")])},
    "/api/providers/{name}/reserve": {"post": _operation(
        "Count one request against the shared budget if it fits now, else say when it will",
        statuses=(400, 401, 404), params=[NAME],
        body=_required(estimated_tokens=TOKENS, worker_id=IDENTIFIER))},
    "/api/providers/{name}/settle": {"post": _operation(
        "Replace a granted request's estimate with the tokens the provider reported",
        statuses=(400, 401, 404), params=[NAME],
        body=_required(reservation_id=IDENTIFIER, tokens_used=TOKENS))},
    "/api/providers/{name}/pause": {"post": _operation(
        "Rest the provider for every worker until an epoch time (after a 429 or daily quota)",
        statuses=(400, 401, 404), params=[NAME],
        body=_required(until={"type": "number", "minimum": 0, "maximum": MAX_PAUSE_UNTIL}))},
}

WAIT = _query("wait", {"type": "number", "minimum": 0, "maximum": 86400},
              "hold the request up to this many seconds (long poll)")

PATHS: dict[str, dict[str, Any]] = {
    "/health": {"get": _operation("Liveness, live workers and pending tasks", statuses=())},
    "/openapi.json": {"get": _operation("This description")},
    "/api/workers/register": {"post": _operation("Register a worker", body={
        "type": "object", "required": ["worker_id", "worker_type"], "properties": {
            "worker_id": {"type": "string"}, "worker_type": {"type": "string"},
            "capabilities": OBJECT, "capacity": {"type": "integer", "minimum": 1}}})},
    "/api/workers/{worker_id}/heartbeat": {"post": _operation(
        "Sign of life; extends the worker's leases; returns revoked task ids",
        params=[_path_param("worker_id")], statuses=(400, 401, 404), body={
            "type": "object", "properties": {"tasks": OBJECT, "info": OBJECT}})},
    "/api/workers/{worker_id}/tasks": {"get": _operation(
        "Lease the most urgent task this worker can run", statuses=(400, 401, 404),
        params=[_path_param("worker_id"), WAIT,
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 100},
                       "lease up to this many tasks (answer also has 'tasks')"),
                _query("types", {"type": "string"}, "comma-separated task types to accept"),
                _query("max_tokens", {"type": "integer", "minimum": 0},
                       "only tasks whose estimated tokens fit this budget")])},
    "/api/workers/{worker_id}/unregister": {"post": _operation(
        "Unregister; held tasks go back to the queue", params=[_path_param("worker_id")],
        statuses=(401, 404))},
    "/api/workers/list": {"get": _operation("Every worker, seed-000 words")},
    "/api/tasks/submit": {"post": _operation(
        "Submit one task, or {'tasks': [...]} in either task-file format", body={
            "oneOf": [NEW_TASK, {"type": "object", "required": ["tasks"], "properties": {
                "metadata": OBJECT, "tasks": {"type": "array", "items": NEW_TASK}}}]})},
    "/api/tasks/{task_id}/result": {"post": _operation(
        "Report a result; only the current lease is accepted (else 409)",
        params=[_path_param("task_id")], statuses=(400, 401, 404, 409), body={
            **LEASE_BODY, "required": ["worker_id", "result"],
            "properties": {**LEASE_BODY["properties"], "result": OBJECT}})},
    "/api/tasks/{task_id}/checkpoint": {"post": _operation(
        "Save a running task's checkpoint (current lease only)",
        params=[_path_param("task_id")], statuses=(400, 401, 404, 409), body={
            **LEASE_BODY, "required": ["worker_id", "checkpoint"],
            "properties": {**LEASE_BODY["properties"], "checkpoint": OBJECT,
                           "progress": {"type": "number"}}})},
    "/api/tasks/{task_id}/release": {"post": _operation(
        "Hand a leased task back unfinished", params=[_path_param("task_id")],
        statuses=(400, 401, 404, 409), body=LEASE_BODY)},
    "/api/tasks/{task_id}/cancel": {"post": _operation(
        "Cancel a pending or running task", params=[_path_param("task_id")],
        statuses=(401, 404, 409))},
    "/api/tasks/status/{task_id}": {"get": _operation(
        "A task's status, result and attempt history", statuses=(400, 401, 404),
        params=[_path_param("task_id"), WAIT])},
    "/api/tasks": {"get": _operation("Newest tasks first, optionally only some ids or states",
                                     params=[
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 100000}, "how many"),
        {**_query("id", {"type": "array", "items": {"type": "string"}, "maxItems": 500},
                  "only these task ids (repeat the parameter)"), "explode": True},
        {**_query("status", {"type": "array", "items": {"type": "string", "enum": [
            "pending", "assigned", "completed", "failed", "cancelled"]}},
                  "only tasks in these states (repeat the parameter)"), "explode": True}])},
    "/api/stats": {"get": _operation("Counts of workers and tasks, success rate per worker")},
    "/stats": {"get": _operation("Seed-004 statistics with tasks_summary")},
    "/tasks": {"get": _operation("Seed-004 task list (a JSON array)", params=[
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000000}, "how many")])},
    "/workers": {"get": _operation("Seed-004 worker list (a JSON array)")},
    **BUDGET_PATHS,
}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "elastic orchestrator", "version": __version__},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}, {}],
        "paths": PATHS,
    }


def add_routes(app: bottle.Bottle) -> None:
    """Attach ``/openapi.json``."""

    @app.get("/openapi.json")
    def openapi() -> dict[str, Any]:
        return openapi_document()
