"""``elastic new-batch``: the seed's manual task generator, as library code.

``build_batch`` makes a seed-004 document of ``count`` simulation tasks (seeds
``seed``, ``seed + 1``, ...), validated exactly as an ingested file would be.
``prompt_batch`` asks for the same values one at a time, checking each answer as
it comes and asking again after a bad one, then shows a summary. ``write_batch``
saves a document atomically, by default as ``task_queues/lote_YYYYMMDD_HHMMSS.json``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from rich.console import Console
from rich.table import Table

from elastic.atomic import atomic_write_json, file_stamp, unused_path
from elastic.errors import InvalidTask
from elastic.executors import validate_task_data
from elastic.kernels import KNOWN_ALGORITHMS
from elastic.taskfiles import parse_task_document
from elastic.tasks import PRIORITY_WORDS, parse_priority

DEFAULT_DESCRIPTION = "Lote de tareas de simulación"
DEFAULT_CREATED_BY = "elastic new-batch"
MAX_BATCH_TASKS = 10_000
BATCH_FILE_PREFIX = "lote_"

Answer = TypeVar("Answer")


class Ask(Protocol):
    """Asks one question and returns the answer typed in (``click.prompt`` fits)."""

    def __call__(self, text: str, *, default: str) -> str:
        """The answer to ``text``; ``default`` when the user just presses Enter."""
        ...


def build_batch(*, algorithm: str, num_particles: int, num_steps: int, seed: int = 0,
                priority: str | int = "medium", description: str = DEFAULT_DESCRIPTION,
                count: int = 1, created_by: str = DEFAULT_CREATED_BY,
                now: float | None = None) -> dict[str, Any]:
    """A seed-004 document of ``count`` simulation tasks, validated through taskfiles.

    Task ids are ``sim_<YYYYMMDD_HHMMSS>_<batch>_<n>`` (the local time, as the file's
    name; ``metadata.creation_date`` is UTC; ``batch``: 4 random hex
    digits, so two batches made in the same second do not share ids).

    Raises:
        InvalidTask: a value is out of range, naming it.
    """
    _check_count(count)
    now = time.time() if now is None else now
    moment = datetime.fromtimestamp(now, UTC)
    prefix = f"sim_{file_stamp(now)}_{secrets.token_hex(2)}"
    tasks = [{
        "task_id": f"{prefix}_{number:03d}",
        "algorithm": algorithm,
        "parameters": {"num_particles": num_particles, "num_steps": num_steps,
                       "seed": seed + number - 1},
        "priority": _priority_for_file(priority),
        "description": f"{description} {number}/{count}: {algorithm}, N={num_particles}, "
                       f"S={num_steps}, seed={seed + number - 1}",
    } for number in range(1, count + 1)]
    document = {
        "metadata": {"creation_date": moment.isoformat(timespec="seconds"),
                     "description": description, "total_tasks": count,
                     "created_by": created_by},
        "tasks": tasks,
    }
    parse_task_document(document, source="new-batch")
    return document


def _check_count(count: int) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_BATCH_TASKS:
        raise InvalidTask(f"must be a whole number from 1 to {MAX_BATCH_TASKS}, got {count!r}",
                          field="count")


def _priority_for_file(priority: str | int) -> str | int:
    """A priority as the file will say it: a word (high/medium/low) or an integer 1..10.

    Raises:
        InvalidTask: neither.
    """
    if isinstance(priority, str):
        word = priority.strip().lower()
        priority = int(word) if word.isdigit() else word
    try:
        parse_priority(priority)
    except ValueError as exc:
        raise InvalidTask(str(exc), field="priority") from None
    return priority


def prompt_batch(console: Console, ask: Ask, *, created_by: str = DEFAULT_CREATED_BY,
                 now: float | None = None) -> dict[str, Any]:
    """Ask for a batch interactively, then show a summary table and return the document.

    Each answer is checked as soon as it is given (with the same rules as an
    ingested file); a bad one is explained and asked again.
    """
    algorithm = _ask_until_valid(console, ask, "Algorithm (" + "/".join(KNOWN_ALGORITHMS) + ")",
                                 "python", _parse_algorithm)
    particles = _ask_until_valid(console, ask, "Number of particles", "100",
                                 _parameter(algorithm, "num_particles", num_steps=0))
    steps = _ask_until_valid(console, ask, "Number of steps", "500",
                             _parameter(algorithm, "num_steps", num_particles=particles))
    seed = _ask_until_valid(console, ask, "Seed of the first task", "42",
                            _parameter(algorithm, "seed", num_particles=particles,
                                       num_steps=steps))
    priority = _ask_until_valid(console, ask, "Priority (high/medium/low or 1..10)", "medium",
                                _priority_for_file)
    description = _ask_until_valid(console, ask, "Description", DEFAULT_DESCRIPTION, str)
    document = _ask_until_valid(console, ask, "How many tasks", "1", lambda answer: build_batch(
        algorithm=algorithm, num_particles=particles, num_steps=steps, seed=seed,
        priority=priority, description=description, count=_whole(answer),
        created_by=created_by, now=now))
    console.print(summary_table(document))
    return document


def _ask_until_valid(console: Console, ask: Ask, text: str, default: str,
                     parse: Callable[[str], Answer]) -> Answer:
    """Ask ``text`` until ``parse`` accepts the answer (an empty answer means ``default``)."""
    while True:
        answer = str(ask(text, default=default)).strip() or default
        try:
            return parse(answer)
        except (ValueError, InvalidTask) as exc:
            console.print(f"[red]{text}: {exc}[/red] - try again", highlight=False)


def _parse_algorithm(answer: str) -> str:
    algorithm = answer.strip().lower()
    if algorithm not in KNOWN_ALGORITHMS:
        raise ValueError(f"choose one of {', '.join(KNOWN_ALGORITHMS)}, got {answer!r}")
    return algorithm


def _whole(answer: str) -> int:
    try:
        return int(answer.strip().replace("_", ""))
    except ValueError:
        raise ValueError(f"must be a whole number, got {answer!r}") from None


def _parameter(algorithm: str, key: str, **known: int) -> Callable[[str], int]:
    """A parser for one simulation parameter, checked with those already known."""
    def parse(answer: str) -> int:
        value = _whole(answer)
        validate_task_data("simulation", {"algorithm": algorithm,
                                          "parameters": {**known, key: value}})
        return value
    return parse


def summary_table(document: dict[str, Any]) -> Table:
    """A rich table summing up a batch document."""
    tasks = document["tasks"]
    first, last = tasks[0], tasks[-1]
    table = Table(title=f"Batch: {document['metadata']['description']}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    rows = [
        ("tasks", str(len(tasks))),
        ("algorithm", first["algorithm"]),
        ("particles", str(first["parameters"]["num_particles"])),
        ("steps", str(first["parameters"]["num_steps"])),
        ("seeds", _span(first["parameters"]["seed"], last["parameters"]["seed"])),
        ("priority", _priority_text(first["priority"])),
        ("task ids", _span(first["task_id"], last["task_id"])),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _span(first: object, last: object) -> str:
    return str(first) if first == last else f"{first} .. {last}"


def _priority_text(priority: str | int) -> str:
    return f"{priority} ({PRIORITY_WORDS[priority]})" if isinstance(priority, str) else str(priority)


def write_batch(document: dict[str, Any], target: Path, *, now: float | None = None) -> Path:
    """Save ``document`` atomically and return where.

    ``target`` is a folder when it is one already or has no suffix: the file is then
    ``lote_YYYYMMDD_HHMMSS.json`` (local time) inside it, with ``_2``... added rather than
    replacing another batch. Otherwise it is the file to write (replacing any there).
    """
    if target.suffix and not target.is_dir():
        return atomic_write_json(target, document)
    stamp = file_stamp(time.time() if now is None else now)
    return atomic_write_json(unused_path(target, f"{BATCH_FILE_PREFIX}{stamp}"), document)
