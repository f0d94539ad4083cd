"""Task files: parse and validate both formats, all or nothing.

- seed 004: ``{"metadata": {...}, "tasks": [{"task_id", "algorithm", "parameters",
  "priority": "high"|"medium"|"low", "description"}]}`` -> ``simulation`` tasks;
- seed 000: ``{"tasks": [{"type", "data", "priority": 1..10}]}``, or one such task.

The first problem found raises ``InvalidTask`` with the task's index and a field
path such as ``tasks[2].parameters.num_steps``; nothing of a bad file is returned.
Tasks without an id get one derived from the file's content and the task's
position, so queueing the same file twice queues nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

from elastic.errors import InvalidTask
from elastic.executors import validate_task_data
from elastic.tasks import DEFAULT_PRIORITY, NewTask, parse_priority

MAX_TASK_ID_LENGTH = 200
SEED_004_KEYS = frozenset({"task_id", "algorithm", "parameters", "priority", "description"})
SEED_000_KEYS = frozenset({"task_id", "type", "data", "priority", "description"})


def parse_task_file(content: str | bytes, *, source: str, derive_ids: bool = True) -> list[NewTask]:
    """Parse a task file's text (either format) into validated tasks.

    Raises:
        InvalidTask: bad JSON (with line and column) or the first invalid task.
    """
    try:
        document = json.loads(content)
    except UnicodeDecodeError as exc:
        raise InvalidTask(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise InvalidTask(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    raw = content.encode() if isinstance(content, str) else content
    digest = hashlib.sha256(raw).hexdigest()[:16] if derive_ids else None
    return parse_task_document(document, source=source, content_digest=digest)


def parse_task_document(document: object, *, source: str, content_digest: str | None = None,
                        derive_ids: bool = True) -> list[NewTask]:
    """Validate an already-decoded task document (a file's JSON or an HTTP body).

    Without a ``content_digest`` (or with ``derive_ids`` false) a task given no id
    gets a random one.
    """
    if not isinstance(document, dict):
        raise InvalidTask(f"expected a JSON object, got {type(document).__name__}")
    if "tasks" not in document:
        return [_parse_task(document, index=None, path="", source=source,
                            digest=content_digest if derive_ids else None)]
    entries = document["tasks"]
    if not isinstance(entries, list) or not entries:
        raise InvalidTask("expected a non-empty list of tasks", field="tasks")
    parsed = [_parse_task(entry, index=index, path=f"tasks[{index}].", source=source,
                          digest=content_digest if derive_ids else None)
              for index, entry in enumerate(entries)]
    _reject_repeated_ids(parsed)
    return parsed


def _parse_task(entry: object, *, index: int | None, path: str, source: str,
                digest: str | None) -> NewTask:
    try:
        if not isinstance(entry, dict):
            raise InvalidTask(f"expected a JSON object, got {type(entry).__name__}")
        task_type, data, known = _type_and_data(entry)
        unknown = sorted(set(entry) - known)
        if unknown:
            raise InvalidTask(f"unknown key(s) {', '.join(unknown)}; expected some of "
                              f"{', '.join(sorted(known))}", field=unknown[0])
        validate_task_data(task_type, data)
        return NewTask(task_id=_task_id(entry, index=index, digest=digest), type=task_type,
                       data=data, priority=_priority(entry), description=_description(entry),
                       source=source)
    except InvalidTask as exc:
        field = path + exc.field if exc.field else path.rstrip(".") or None
        located = InvalidTask(exc.problem, field=field, index=index)
        raise located from None


def _type_and_data(entry: Mapping[str, Any]) -> tuple[str, dict[str, Any], frozenset[str]]:
    if "type" not in entry and ("algorithm" in entry or "parameters" in entry):
        data = {"algorithm": entry.get("algorithm"), "parameters": entry.get("parameters")}
        return "simulation", data, SEED_004_KEYS
    task_type = entry.get("type")
    if not isinstance(task_type, str):
        raise InvalidTask("is required: a task type such as simulation or agent_action",
                          field="type")
    data = entry.get("data")
    if not isinstance(data, dict):
        raise InvalidTask("must be a JSON object", field="data")
    return task_type, data, SEED_000_KEYS


def _task_id(entry: Mapping[str, Any], *, index: int | None, digest: str | None) -> str:
    given = entry.get("task_id")
    if given is None:
        return f"{digest}-{index or 0}" if digest else str(uuid.uuid4())
    if not isinstance(given, str) or not given.strip() or len(given) > MAX_TASK_ID_LENGTH \
            or "/" in given:
        raise InvalidTask(f"must be 1..{MAX_TASK_ID_LENGTH} characters without '/'",
                          field="task_id")
    return given


def _priority(entry: Mapping[str, Any]) -> int:
    if entry.get("priority") is None:
        return DEFAULT_PRIORITY
    try:
        return parse_priority(entry["priority"])
    except ValueError as exc:
        raise InvalidTask(str(exc), field="priority") from None


def _description(entry: Mapping[str, Any]) -> str | None:
    description = entry.get("description")
    if description is not None and not isinstance(description, str):
        raise InvalidTask("must be a string", field="description")
    return description


def _reject_repeated_ids(parsed: list[NewTask]) -> None:
    seen: dict[str, int] = {}
    for index, task in enumerate(parsed):
        if task.task_id in seen:
            raise InvalidTask(f"repeats the task_id of task {seen[task.task_id]}",
                              field=f"tasks[{index}].task_id", index=index)
        seen[task.task_id] = index
