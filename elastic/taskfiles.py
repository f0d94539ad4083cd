"""Task files: parse and validate both formats, all or nothing.

- seed 004: ``{"metadata": {...}, "tasks": [{"task_id", "algorithm", "parameters",
  "priority": "high"|"medium"|"low", "description"}]}`` -> ``simulation`` tasks;
- seed 000: ``{"tasks": [{"type", "data", "priority": 1..10}]}``, or one such task
  (``task_id`` and ``description`` allowed). A seed-004 list may mix in such tasks.

Either kind of task may give its own ``timeout_seconds`` (how long an attempt may run).

The first problem found raises ``InvalidTask`` with the task's index and a field
path such as ``tasks[2].parameters.num_steps`` or ``tasks[0].data.messages``;
nothing of a bad file is returned. Tasks without an id get one derived from the
file's content and the task's position, so queueing the same file twice (after a
crash between queueing and moving it, say) queues nothing twice.
"""

from __future__ import annotations

import hashlib
import json
import reprlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from elastic.errors import InvalidTask, UnknownTaskType
from elastic.executors import validate_task_data
from elastic.tasks import (
    DEFAULT_PRIORITY,
    MAX_JSON_DEPTH,
    TASK_TYPES,
    NewTask,
    id_problem,
    json_value_problem,
    parse_priority,
    parse_timeout_seconds,
    requirement_problem,
)

DIGEST_CHARS = 16
DOCUMENT_KEYS = frozenset({"metadata", "tasks"})
COMMON_KEYS = frozenset({"task_id", "type", "priority", "description", "timeout_seconds"})
NESTED_KEYS = COMMON_KEYS | {"data"}
FLAT_SIMULATION_KEYS = COMMON_KEYS | {"algorithm", "parameters"}


@dataclass(frozen=True)
class _Shape:
    """A task entry's type, its data and where the data's fields sit in the file."""

    task_type: str
    data: dict[str, Any]
    data_path: str
    known_keys: frozenset[str]


def parse_task_file(content: str | bytes, *, source: str, derive_ids: bool = True) -> list[NewTask]:
    """Parse a task file's text (either format) into validated tasks.

    Args:
        content: the file's text or bytes (UTF-8, UTF-16 or UTF-32 JSON).
        source: the file name, kept with every task.
        derive_ids: give id-less tasks ids derived from ``content`` and their
            position (stable across calls); otherwise random ones.

    Raises:
        InvalidTask: bad JSON (with line and column) or the first invalid task.
    """
    document = load_json(content)
    digest = content_digest(content) if derive_ids else None
    return parse_task_document(document, source=source, content_digest=digest)


def load_json(content: str | bytes) -> Any:
    """Decode JSON text strictly (no NaN or Infinity).

    Raises:
        InvalidTask: not text, or not JSON, naming the line and column.
    """
    try:
        return json.loads(content, parse_constant=_refuse_constant)
    except UnicodeDecodeError as exc:
        raise InvalidTask(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise InvalidTask(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
                          ) from None
    except RecursionError:
        raise InvalidTask(f"not valid JSON: nested deeper than {MAX_JSON_DEPTH} levels") from None


def _refuse_constant(name: str) -> Any:
    raise InvalidTask(f"not valid JSON: {name} is not a JSON value")


def content_digest(content: str | bytes) -> str:
    """A short, stable digest of a file's content (the stem of derived task ids)."""
    raw = content.encode("utf-8") if isinstance(content, str) else content
    return hashlib.sha256(raw).hexdigest()[:DIGEST_CHARS]


def parse_task_document(document: object, *, source: str, content_digest: str | None = None,
                        derive_ids: bool = True) -> list[NewTask]:
    """Validate an already-decoded task document (a file's JSON or an HTTP body).

    A task given no id gets ``<content_digest>-<index>`` when a digest is given
    and ``derive_ids`` is true, else a random UUID.

    Raises:
        InvalidTask: the first problem, with the task's index and field path.
    """
    digest = content_digest if derive_ids else None
    if not isinstance(document, dict):
        raise InvalidTask(f"expected a JSON object, got {_kind(document)}")
    if "tasks" not in document:
        return [_parse_task(document, index=0, path="", source=source, digest=digest)]
    _check_document_keys(document)
    entries = document["tasks"]
    if not isinstance(entries, list) or not entries:
        raise InvalidTask("must be a non-empty list of tasks", field="tasks")
    parsed = [_parse_task(entry, index=index, path=f"tasks[{index}]", source=source,
                          digest=digest)
              for index, entry in enumerate(entries)]
    _reject_repeated_ids(parsed)
    return parsed


def _check_document_keys(document: Mapping[str, Any]) -> None:
    unknown = sorted(str(key) for key in document if key not in DOCUMENT_KEYS)
    if unknown:
        raise InvalidTask("unknown key; a task file has only metadata and tasks",
                          field=unknown[0])
    metadata = document.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidTask(f"must be a JSON object, got {_kind(metadata)}", field="metadata")
    check_json_value(metadata, path="metadata")


def _parse_task(entry: object, *, index: int, path: str, source: str,
                digest: str | None) -> NewTask:
    if not isinstance(entry, dict):
        raise InvalidTask(f"must be a JSON object, got {_kind(entry)}",
                          field=path or None, index=index)
    check_json_value(entry, path=path, index=index)
    try:
        shape = _shape_of(entry)
    except InvalidTask as exc:
        raise _located(exc, index=index, path=path) from None
    try:
        validate_task_data(shape.task_type, shape.data)
        _check_requirement(shape.task_type, shape.data)
    except InvalidTask as exc:
        raise _located(exc, index=index, path=_join(path, shape.data_path),
                       field=_data_relative(exc.field)) from None
    try:
        return NewTask(task_id=_task_id(entry, index=index, digest=digest),
                       type=shape.task_type, data=shape.data, priority=_priority(entry),
                       description=_description(entry), source=source,
                       timeout_seconds=_timeout_seconds(entry))
    except InvalidTask as exc:
        raise _located(exc, index=index, path=path) from None


def check_json_value(value: object, *, path: str, index: int | None = None) -> None:
    """Refuse what no task may hold (``elastic.tasks.json_value_problem``: deep nesting,
    lone surrogates, NUL, non-finite or over-64-bit numbers): the gate for task files,
    HTTP submissions and the client's local runs alike.

    Raises:
        InvalidTask: naming the field path (under ``path``) and the problem.
    """
    refused = json_value_problem(value, path=path)
    if refused:
        raise InvalidTask(refused[1], field=refused[0] or None, index=index)


def _check_requirement(task_type: str, data: Mapping[str, Any]) -> None:
    problem = requirement_problem(task_type, data)
    if problem:
        raise InvalidTask(problem[1], field=problem[0])


def _shape_of(entry: Mapping[str, Any]) -> _Shape:
    """Tell the formats apart: ``type``/``data`` (seed 000) or flat ``algorithm``/``parameters``."""
    task_type = entry.get("type")
    if task_type is None and "data" not in entry:  # null reads as absent, as everywhere
        task_type = "simulation"
    if not isinstance(task_type, str) or task_type not in TASK_TYPES:
        known = ", ".join(TASK_TYPES)
        raise UnknownTaskType(f"must be a task type ({known}), got {task_type!r}", field="type")
    if "data" in entry or task_type != "simulation":
        shape = _Shape(task_type, _data_object(entry), "data", NESTED_KEYS)
    else:
        data = {key: entry[key] for key in ("algorithm", "parameters") if key in entry}
        shape = _Shape(task_type, data, "", FLAT_SIMULATION_KEYS)
    unknown = sorted(str(key) for key in entry if key not in shape.known_keys)
    if unknown:
        raise InvalidTask(f"unknown key (expected some of {', '.join(sorted(shape.known_keys))})",
                          field=unknown[0])
    return shape


def _data_object(entry: Mapping[str, Any]) -> dict[str, Any]:
    data = entry.get("data")
    if not isinstance(data, dict):
        raise InvalidTask(f"is required: a JSON object, got {_kind(data)}", field="data")
    return data


def _located(error: InvalidTask, *, index: int, path: str,
             field: str | None = None) -> InvalidTask:
    """``error`` placed at task ``index``; its field (or ``field``) is relative to ``path``."""
    relative = error.field if field is None else field
    return InvalidTask(error.problem, field=_join(path, relative) or None, index=index)


def _data_relative(field: str | None) -> str:
    """A validator's field name relative to the data object ("data.x" and "x" alike)."""
    if field is None or field == "data":
        return ""
    return field.removeprefix("data.")


def _join(path: str, field: str | None) -> str:
    return f"{path}.{field}" if path and field else path or field or ""


def _task_id(entry: Mapping[str, Any], *, index: int, digest: str | None) -> str:
    given = entry.get("task_id")
    if given is None:
        return f"{digest}-{index}" if digest else str(uuid.uuid4())
    problem = id_problem(given)
    if problem:
        raise InvalidTask(f"{problem}, got {reprlib.repr(given)}", field="task_id")
    return given


def _priority(entry: Mapping[str, Any]) -> int:
    if entry.get("priority") is None:
        return DEFAULT_PRIORITY
    try:
        return parse_priority(entry["priority"])
    except ValueError as exc:
        raise InvalidTask(str(exc), field="priority") from None


def _timeout_seconds(entry: Mapping[str, Any]) -> float | None:
    if entry.get("timeout_seconds") is None:
        return None
    try:
        return parse_timeout_seconds(entry["timeout_seconds"])
    except ValueError as exc:
        raise InvalidTask(str(exc), field="timeout_seconds") from None


def _description(entry: Mapping[str, Any]) -> str | None:
    description = entry.get("description")
    if description is not None and not isinstance(description, str):
        raise InvalidTask(f"must be a string, got {_kind(description)}", field="description")
    if description is not None and "\x00" in description:
        raise InvalidTask("must not contain a NUL character", field="description")
    return description


def _reject_repeated_ids(parsed: list[NewTask]) -> None:
    first_index: dict[str, int] = {}
    for index, task in enumerate(parsed):
        if task.task_id in first_index:
            raise InvalidTask(f"{task.task_id!r} repeats the task_id of task "
                              f"{first_index[task.task_id]}",
                              field=f"tasks[{index}].task_id", index=index)
        first_index[task.task_id] = index


def _kind(value: object) -> str:
    """The JSON name of a decoded value's type, for messages."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)
