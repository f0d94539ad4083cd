"""``GET /openapi.json``: the description of every endpoint, built from the rules that check requests.

Enums and limits are not restated here: task types, statuses, priorities, worker
types, id lengths and the query parameters' bounds come from the same constants and
``elastic.web`` query readers the routes use, so the document cannot drift from
what the server accepts (tests/test_api_fuzz.py checks it with schemathesis). What a
JSON schema cannot state (the contents of a task's ``data``, checked by its executor)
is said in the descriptions.
"""

from __future__ import annotations

from typing import Any

import bottle

from elastic import __version__
from elastic.kernels import KNOWN_ALGORITHMS
from elastic.server import answers, api, budgets, dashboard, fleet, views
from elastic.tasks import (
    MAX_ESTIMATED_TOKENS,
    MAX_ID_LENGTH,
    MAX_JSON_DEPTH,
    MAX_JSON_INTEGER,
    MAX_PRIORITY,
    MAX_SOURCE_LENGTH,
    MAX_TIMEOUT_SECONDS,
    MIN_JSON_INTEGER,
    MIN_PRIORITY,
    PRIORITY_WORDS,
    TASK_TYPES,
    TaskStatus,
)
from elastic.web import EMPTY_QUERY_VALUE, QueryInteger, QueryNumber
from elastic.worker_types import WORKER_TYPES

OBJECT = {"type": "object"}
ERROR = {"description": "error", "content": {"application/json": {"schema": {
    "type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}}}}
NO_NUL = "^[^\\u0000]*$"
IDENTIFIER = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH,
              "pattern": "^[^/\\u0000]*[^/\\u0000\\s][^/\\u0000]*$",
              "description": "not blank, without '/' or NUL"}
TEXT = {"type": "string", "pattern": NO_NUL}
PRIORITY = {"anyOf": [{"type": "integer", "minimum": MIN_PRIORITY, "maximum": MAX_PRIORITY},
                      {"type": "string", "enum": list(PRIORITY_WORDS)}]}
TASK_DATA = {"type": "object", "description": "the task type's fields, checked by its executor "
             "(see the README); a bad one is a 400 naming the field"}
TIMEOUT = {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT_SECONDS,
           "description": "seconds an attempt may run (default: the server's "
           "task_timeout_seconds)"}
SEED_000_TASK = {"type": "object", "required": ["type", "data"], "additionalProperties": False,
                 "properties": {"task_id": IDENTIFIER, "type": {"enum": list(TASK_TYPES)},
                                "data": TASK_DATA, "priority": PRIORITY, "description": TEXT,
                                "timeout_seconds": TIMEOUT}}
SEED_004_TASK = {"type": "object", "required": ["algorithm", "parameters"],
                 "additionalProperties": False,
                 "properties": {"task_id": IDENTIFIER, "type": {"const": "simulation"},
                                "algorithm": {"enum": list(KNOWN_ALGORITHMS)},
                                "parameters": {**TASK_DATA, "description": "the simulation's "
                                               "parameters (specs/particles.md)"},
                                "priority": PRIORITY, "description": TEXT,
                                "timeout_seconds": TIMEOUT}}
NEW_TASK = {"anyOf": [SEED_000_TASK, SEED_004_TASK]}
SOURCE = {"type": "string", "minLength": 1, "maxLength": MAX_SOURCE_LENGTH, "pattern": NO_NUL,
          "description": "where the tasks come from, e.g. a file name (default 'api')"}
REPLACE = {"type": "boolean", "description": "a known task id whose content (type, data) "
           "differs: a pending, failed or cancelled task takes the new content and goes back "
           "in the queue, its history kept (default false: reported in 'changed', untouched)"}
STRING_LIST = {"type": "array", "items": {"type": "string"}}
TOKENS = {"type": "integer", "minimum": 0, "maximum": MAX_ESTIMATED_TOKENS}
LEASE_BODY = {"type": "object", "required": ["worker_id"], "properties": {
    "worker_id": {"type": "string"}, "lease_token": {"type": "integer"}}}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query(parameter: QueryInteger | QueryNumber) -> dict[str, Any]:
    """A query parameter as described by the reader that checks it."""
    return {"name": parameter.name, "in": "query", "required": False,
            "schema": parameter.schema(), "description": parameter.description}


def _query_names(name: str, description: str, *, required: bool = False) -> dict[str, Any]:
    """A comma-separated list of names as one query parameter (``fleet.query_list``)."""
    pattern = "^[^\\u0000]*[^,\\u0000][^\\u0000]*$" if required else NO_NUL
    return {"name": name, "in": "query", "required": required, "description": description,
            "schema": {"type": "string", "maxLength": fleet.MAX_LIST_CHARACTERS,
                       "pattern": pattern}}


def _query_list(name: str, items: dict[str, Any], description: str, **bounds: int) -> dict[str, Any]:
    """A repeatable query parameter (``?id=a&id=b``)."""
    return {"name": name, "in": "query", "required": False, "explode": True,
            "schema": {"type": "array", "items": items, **bounds}, "description": description}


def _operation(summary: str, *, body: dict[str, Any] | None = None,
               params: list[dict[str, Any]] | None = None,
               statuses: tuple[int, ...] = (400, 401), body_required: bool = True
               ) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {"200": {"description": "ok", "content": {"application/json": {
            "schema": {"type": ["object", "array"]}}}},
            **{str(status): ERROR for status in statuses}},
    }
    if params:
        operation["parameters"] = params
    if body is not None:
        operation["requestBody"] = {"required": body_required,
                                    "content": {"application/json": {"schema": body}}}
    return operation


def _required(**properties: dict[str, Any]) -> dict[str, Any]:
    """A JSON object schema whose listed properties are all required."""
    return {"type": "object", "required": list(properties), "properties": properties}


def _register_body() -> dict[str, Any]:
    """A known worker type, or any type that lists the task types it runs."""
    capabilities = {"type": "object", "properties": {
        "task_types": STRING_LIST, "algorithms": STRING_LIST, "models": STRING_LIST}}
    return {"type": "object", "required": ["worker_id", "worker_type"], "properties": {
        "worker_id": IDENTIFIER,
        "worker_type": {"type": "string", "minLength": 1, "maxLength": api.MAX_WORKER_TYPE_LENGTH},
        "capabilities": capabilities,
        "capacity": {"type": "integer", "minimum": 1, "maximum": api.MAX_CAPACITY},
        "secret": {"type": "boolean", "description": "answer a worker_secret that every "
                   "later call about this worker must carry in X-Worker-Secret"}},
        "anyOf": [{"properties": {"worker_type": {"enum": list(WORKER_TYPES)}}},
                  {"required": ["capabilities"], "properties": {"capabilities": {
                      "type": "object", "required": ["task_types"],
                      "properties": {"task_types": {**STRING_LIST, "minItems": 1}}}}}]}


def _submit_body() -> dict[str, Any]:
    """One task, or a task file's document, either with an optional ``source`` and
    ``replace``."""
    document = {"type": "object", "required": ["tasks"], "additionalProperties": False,
                "properties": {"metadata": OBJECT, "source": SOURCE, "replace": REPLACE,
                               "tasks": {"type": "array", "minItems": 1, "items": NEW_TASK}}}
    one_task = [{**shape, "properties": {**shape["properties"], "source": SOURCE,
                                         "replace": REPLACE}}
                for shape in (SEED_000_TASK, SEED_004_TASK)]
    return {"anyOf": [*one_task, document]}


NAME = _path_param("name")
KEY_ID_QUERY = {"name": "key_id", "in": "query", "required": False,
                "schema": budgets.KEY_ID_SCHEMA, "description": budgets.KEY_ID_SCHEMA["description"]}


def _budget_body(**required: dict[str, Any]) -> dict[str, Any]:
    """A budget request body: the ``required`` properties and the optional ``key_id``."""
    return {**_required(**required), "properties": {**required, "key_id": budgets.KEY_ID_SCHEMA}}


BUDGET_PATHS: dict[str, dict[str, Any]] = {
    "/api/providers": {"get": _operation(
        "Every provider's shared budgets (without a key, and under 'keys' per API key): "
        "cooldown, limits and what remains of each")},
    "/api/providers/{name}": {"get": _operation(
        "One budget, when a request fits and the tokens a worker may lease for",
        statuses=(400, 401, 404), params=[NAME, _query(budgets.ESTIMATED_TOKENS), KEY_ID_QUERY])},
    "/api/providers/{name}/reserve": {"post": _operation(
        "Count one request against the shared budget if it fits now, else say when it will",
        statuses=(400, 401, 404), params=[NAME],
        body=_budget_body(estimated_tokens=TOKENS, worker_id=IDENTIFIER))},
    "/api/providers/{name}/settle": {"post": _operation(
        "Replace a granted request's estimate with the tokens the provider reported",
        statuses=(400, 401, 404), params=[NAME],
        body=_budget_body(reservation_id=IDENTIFIER, tokens_used=TOKENS))},
    "/api/providers/{name}/pause": {"post": _operation(
        "Rest the provider (one API key's budget, or without key_id every key) until an "
        "epoch time (after a 429 or daily quota)",
        statuses=(400, 401, 404), params=[NAME],
        body=_budget_body(until={"type": "number", "minimum": 0,
                                 "maximum": budgets.MAX_PAUSE_UNTIL}))},
}

def _page_file(summary: str, *types: str, statuses: tuple[int, ...] = ()) -> dict[str, Any]:
    """A GET of one of the dashboard's files: not JSON, and open without the token."""
    return {"summary": summary, "security": [{}], "responses": {
        "200": {"description": "the file", "content": {kind: {"schema": {"type": "string"}}
                                                       for kind in types}},
        **{str(status): ERROR for status in statuses}}}


DASHBOARD_PATHS: dict[str, dict[str, Any]] = {
    **{path: {"get": _page_file("The dashboard's page (it asks for the token when one is set)",
                                "text/html")} for path in dashboard.PAGE_PATHS},
    "/dashboard/static/{name}": {"get": {**_page_file(
        "A file of the dashboard's page (its JavaScript and CSS)", "text/javascript", "text/css",
        "text/html", statuses=(404,)), "parameters": [_path_param("name")]}},
}

HEARTBEAT_TASKS = {"type": "object", "additionalProperties": {
    "type": "object", "required": ["lease_token"],
    "properties": {"lease_token": {"type": "integer"}, "progress": {"type": "number"}}}}

PATHS: dict[str, dict[str, Any]] = {
    "/health": {"get": _operation("Liveness, live workers and pending tasks", statuses=())},
    "/openapi.json": {"get": _operation("This description")},
    "/metrics": {"get": {
        "summary": "Prometheus metrics: tasks by state and type, queue depth by priority, the "
                   "oldest pending task's age, attempts, lease expiries, retries, workers by "
                   "state, provider budgets, task duration and submit-to-start histograms",
        "responses": {"200": {"description": "Prometheus text format", "content": {
            "text/plain": {"schema": {"type": "string"}}}}, "401": ERROR}}},
    "/api/workers/register": {"post": _operation(
        "Register a worker; a live worker's id only with its secret (X-Worker-Secret)",
        body=_register_body(), statuses=(400, 401, 403, 409))},
    "/api/workers/{worker_id}/heartbeat": {"post": _operation(
        "Sign of life; renews the leases listed in 'tasks' (all without it), gives back "
        "the ones it does not list; returns revoked task ids",
        params=[_path_param("worker_id")], statuses=(400, 401, 404), body_required=False,
        body={"type": "object", "properties": {"tasks": HEARTBEAT_TASKS, "info": OBJECT}})},
    "/api/workers/{worker_id}/tasks": {"get": _operation(
        "Lease the most urgent task this worker can run", statuses=(400, 401, 404),
        params=[_path_param("worker_id"), _query(api.WAIT), _query(api.LEASE_LIMIT),
                {"name": "types", "in": "query", "required": False, "schema": {"type": "string"},
                 "description": "comma-separated task types to accept"},
                _query(api.LEASE_MAX_TOKENS)])},
    "/api/workers/{worker_id}/results": {"post": _operation(
        "Report several results in one request; each is answered on its own ('received', "
        "or 'refused' with the 'code' (409 stale lease, 404 unknown task) and 'error' a "
        "single result would get)",
        params=[_path_param("worker_id")], statuses=(400, 401, 404), body={
            "type": "object", "required": ["results"], "properties": {"results": {
                "type": "array", "minItems": 1, "maxItems": api.MAX_RESULTS_PER_REQUEST,
                "items": {"type": "object", "required": ["task_id", "result"], "properties": {
                    "task_id": {"type": "string"}, "lease_token": {"type": "integer"},
                    "result": OBJECT}}}}})},
    "/api/workers/{worker_id}/unregister": {"post": _operation(
        "Unregister; held tasks go back to the queue", params=[_path_param("worker_id")],
        statuses=(401, 404))},
    "/api/workers/list": {"get": _operation("Every worker, seed-000 words")},
    "/api/workers/prune": {"post": _operation(
        "Delete offline or dead workers silent for more than older_than_seconds (holding "
        "no lease); answers their ids", body={
            "type": "object", "required": ["older_than_seconds"], "properties": {
                "older_than_seconds": {"type": "number", "minimum": 0,
                                       "maximum": fleet.MAX_PRUNE_AGE_SECONDS}}})},
    "/api/fleet": {"get": _operation(
        "The declared fleet: each declared worker, registered or not, whether its /health "
        "answers, and the ids of the missing ones")},
    "/api/queue/servable": {"get": _operation(
        "How many pending tasks a worker with these capabilities could lease now",
        params=[_query_names("types", "comma-separated task types (required)", required=True),
                _query_names("algorithms", "comma-separated kernels the worker has"),
                _query_names("models", "comma-separated models (none: any model)")])},
    "/api/tasks/submit": {"post": _operation(
        "Submit one task, or {'tasks': [...]} in either task-file format", body=_submit_body())},
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
    "/api/tasks/{task_id}/cancel": {"post": {**_operation(
        "Cancel a pending, running or held task (only a pending one with only_pending)",
        params=[_path_param("task_id")], statuses=(400, 401, 404, 409)),
        "requestBody": {"required": False, "content": {"application/json": {"schema": {
            "type": "object", "properties": {"only_pending": {"type": "boolean"}}}}}}}},
    api.WAIT_PATH: {"post": _operation(
        f"Wait for any of up to {api.MAX_IDS_PER_WAIT} tasks: answers those that ended or that "
        "no live worker can run (with the reason), as soon as there is one or after 'wait' s",
        body={"type": "object", "required": ["task_ids"], "properties": {
            "task_ids": {"type": "array", "items": TEXT, "minItems": 1,
                         "maxItems": api.MAX_IDS_PER_WAIT},
            "wait": {"type": "number", "minimum": 0, "maximum": 86400}}})},
    "/api/tasks/{task_id}/release-hold": {"post": _operation(
        "Put a held task back in the queue with fresh retry and worker-death counts",
        params=[_path_param("task_id")], statuses=(401, 404, 409))},
    "/api/tasks/{task_id}/retry": {"post": _operation(
        "Put a failed or cancelled task back in the queue, its attempt history kept "
        "(409 naming its state otherwise)", params=[_path_param("task_id")],
        statuses=(401, 403, 404, 409))},
    "/api/tasks/status/{task_id}": {"get": _operation(
        "A task's status, result and attempt history", statuses=(400, 401, 404),
        params=[_path_param("task_id"), _query(api.WAIT)])},
    "/api/tasks": {"get": _operation("Newest tasks first, optionally only some ids or states",
                                     params=[
        _query(api.TASK_LIST_LIMIT),
        _query_list("id", TEXT, "only these task ids (repeat the parameter)",
                    maxItems=api.MAX_IDS_PER_LIST),
        _query_list("status", {"type": "string", "enum": [status.value for status in TaskStatus]},
                    "only tasks in these states (repeat the parameter)"),
        _query_list("type", TEXT, "only tasks of these types (repeat the parameter)"),
        _query(api.TASK_LIST_BEFORE)])},
    "/api/dashboard/queue": {"get": _operation(
        "Tasks by state and by state and priority, the oldest pending task's age, and the "
        "pending work no live worker can run, with why (as of 'unservable_checked_at', at "
        "most one sample interval ago)", statuses=(401,))},
    "/api/dashboard/workers": {"get": _operation(
        "Every worker with what it offers and the tasks it runs now, with their progress",
        statuses=(401,))},
    "/api/dashboard/series": {"get": _operation(
        "The last hour of queue samples: pending, running, ended per minute, mean run "
        "time and mean time from submit to end", statuses=(401,))},
    "/api/dashboard/failures": {"get": _operation(
        "The latest failed tasks, and held ones waiting for a person, with the error of "
        "each attempt",
        params=[_query(dashboard.FAILURES_LIMIT)])},
    "/api/results": {"get": _operation(
        "Ended tasks with their results (seed-004 entries), in the order they ended, a page "
        "at a time: 'next' is the 'after' of the following page (null: the last)",
        params=[_query(api.RESULTS_SINCE), _query(api.RESULTS_LIMIT),
                {"name": "after", "in": "query", "required": False,
                 "schema": {"anyOf": [{"type": "string", "pattern": api.RESULTS_CURSOR_PATTERN},
                                      EMPTY_QUERY_VALUE]},
                 "description": "the 'next' of the previous page"}])},
    "/api/stats": {"get": _operation("Counts of workers and tasks, success rate per worker, "
                                     "and the pending work no live worker can run, with why")},
    "/stats": {"get": _operation("Seed-004 statistics with tasks_summary")},
    "/tasks": {"get": _operation("Seed-004 task list (a JSON array)",
                                 params=[_query(views.TASK_VIEW_LIMIT)])},
    "/workers": {"get": _operation("Seed-004 worker list (a JSON array)")},
    **BUDGET_PATHS,
    **DASHBOARD_PATHS,
}


# What any value in a body may be (elastic.tasks.json_value_problem, the gate every body
# passes): text without NUL, integers within 64 bits, and lists and objects of such values.
# One schema with a list of types (not an anyOf per type), so that a value made invalid
# for it is invalid, whichever type it takes.
JSON_VALUE = {"$ref": "#/components/schemas/JsonValue"}
JSON_VALUE_SCHEMA = {
    "description": f"any JSON value without NUL characters, with integers within 64 bits, "
                   f"nested at most {MAX_JSON_DEPTH} levels",
    "type": ["string", "integer", "number", "boolean", "null", "array", "object"],
    "pattern": NO_NUL, "items": JSON_VALUE, "additionalProperties": JSON_VALUE,
    "propertyNames": TEXT}


def gated(schema: Any) -> Any:
    """``schema`` with the gate's rules stated wherever it leaves them open: extra object
    properties are JSON values, strings and names have no NUL, numbers fit in 64 bits,
    an optional property may be null."""
    if isinstance(schema, list):
        return [gated(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    shaped = {key: gated(value) if key in SUBSCHEMA_KEYS else value
              for key, value in schema.items()}
    if key_properties := shaped.get("properties"):
        required = set(shaped.get("required", ()))
        shaped["properties"] = {name: gated(item) if name in required else _nullable(gated(item))
                                for name, item in key_properties.items()}
    kind = shaped.get("type")
    if kind == "object":
        shaped.setdefault("additionalProperties", JSON_VALUE)
        shaped.setdefault("propertyNames", TEXT)
    elif kind == "string" and "pattern" not in shaped and "enum" not in shaped:
        shaped["pattern"] = NO_NUL
    elif kind in ("integer", "number"):
        shaped.setdefault("minimum", MIN_JSON_INTEGER)
        shaped.setdefault("maximum", MAX_JSON_INTEGER)
    return shaped


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional field may be null: it reads as absent (``elastic.web.field_of``)."""
    return {"anyOf": [schema, {"type": "null"}]}


SUBSCHEMA_KEYS = frozenset({"anyOf", "oneOf", "allOf", "items", "additionalProperties"})


def _published(paths: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every operation's request body run through ``gated``, its JSON 200 answer described
    (``elastic.server.answers``; the dashboard's pages keep their own types)."""
    shaped: dict[str, dict[str, Any]] = {}
    for path, operations in paths.items():
        shaped[path] = {}
        for method, operation in operations.items():
            if "application/json" in operation["responses"]["200"]["content"]:
                ok = {"description": "ok", "content": {"application/json": {
                    "schema": answers.answer_schema(path, method)}}}
                operation = {**operation, "responses": {**operation["responses"], "200": ok}}
            body = operation.get("requestBody")
            if body is not None:
                content = body["content"]["application/json"]
                operation = {**operation, "requestBody": {**body, "content": {
                    "application/json": {**content, "schema": gated(content["schema"])}}}}
            shaped[path][method] = operation
    return shaped


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "elastic orchestrator", "version": __version__},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                       "schemas": {"JsonValue": JSON_VALUE_SCHEMA}},
        "security": [{"bearer": []}, {}],
        "paths": PUBLISHED_PATHS,
    }


PUBLISHED_PATHS = _published(PATHS)


def add_routes(app: bottle.Bottle) -> None:
    """Attach ``/openapi.json``."""

    @app.get("/openapi.json")
    def openapi() -> dict[str, Any]:
        return openapi_document()
