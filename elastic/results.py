"""results/: the seed-004 results files, orchestrator_stats.json, and exports.

An export (``elastic results export``) reads the ended tasks a page at a time, from
an orchestrator's ``GET /api/results`` or from a database file, and writes them as
they come, so a million tasks never sit in memory.

What goes in them is shaped by ``elastic.seed004``; this module writes them.

Every file is written atomically (``elastic.atomic``), so a reader never sees half
of one. A results file holds the tasks that ended since the previous one; they are
marked exported only after the file is safely on disk, so a crash in between
writes them again in the next file rather than losing them.
"""

from __future__ import annotations

import csv
import json
import secrets
import textwrap
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO

from elastic.atomic import atomic_write_json, file_stamp, write_new_json
from elastic.seed004 import results_document, stats_summary, task_result_entry
from elastic.tasks import Task, iso
from elastic.transport import Transport

if TYPE_CHECKING:
    from elastic.store import Store

STATS_FILE = "orchestrator_stats.json"
RESULTS_PREFIX = "task_results_"
CLOCK_SLACK_SECONDS = 5.0
EXPORT_PAGE_SIZE = 500
CSV_FIELDS = ("task_id", "type", "status", "algorithm", "priority", "priority_value",
              "worker_id", "attempts", "execution_time", "created_at", "completed_at",
              "description", "source", "error", "parameters", "result")


def write_results_file(store: Store, folder: Path, *, now: float | None = None) -> Path | None:
    """Write ``task_results_YYYYMMDD_HHMMSS.json`` (local time) for the tasks ended since the
    last one.

    A file of the same second is never overwritten (``_2``, ``_3``... is added), even
    by a replica writing into the same folder at the same moment. The tasks are
    claimed first under a new batch id, which the file carries as ``export_batch``
    (replicas never write one task twice), and marked exported after the file is on
    disk; a writer that died in between is found by ``recover_interrupted_exports``.

    Returns:
        The file written, or None when no task ended since the last one.
    """
    batch = secrets.token_hex(8)
    ended = store.claim_tasks_to_export(batch, now=now)
    if not ended:
        return None
    now = time.time() if now is None else now
    document = {**results_document(store, ended, now=now), "export_batch": batch}
    path = write_new_json(folder, f"{RESULTS_PREFIX}{file_stamp(now)}", document)
    store.mark_exported([task.task_id for task in ended])
    return path


def recover_interrupted_exports(store: Store, folder: Path, *, every_claim: bool = False,
                                now: float | None = None) -> int:
    """Finish what a writer that died between writing a results file and marking its tasks
    exported left: tasks whose batch is in a file are marked exported, the others go to
    the next file. So each task is in exactly one file, whenever the writer died.

    Args:
        every_claim: any claim is a dead writer's (an orchestrator that alone owns the
            database, at start); else only claims that ran out count.

    Returns:
        How many interrupted claims were settled.
    """
    claims = store.interrupted_exports(every_claim=every_claim, now=now)
    if not claims:
        return 0
    written = batches_written(folder, since=min(claim.claimed_at for claim in claims))
    for claim in claims:
        if claim.batch in written:
            store.mark_exported(claim.task_ids)
        else:
            store.release_export_claims(claim.task_ids)
    return len(claims)


def batches_written(folder: Path, *, since: float) -> set[str]:
    """The ``export_batch`` of each results file in ``folder`` written at or after ``since``
    (a few seconds of slack for the clocks of the writer and the file system)."""
    found = set()
    for path in folder.glob(f"{RESULTS_PREFIX}*.json"):
        try:
            if path.stat().st_mtime < since - CLOCK_SLACK_SECONDS:
                continue
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # not readable whole: it cannot be the file of a batch
        if isinstance(document, dict) and isinstance(document.get("export_batch"), str):
            found.add(document["export_batch"])
    return found


def write_stats_file(store: Store, folder: Path, *, now: float | None = None) -> Path:
    """Rewrite ``orchestrator_stats.json`` atomically with the current statistics."""
    now = time.time() if now is None else now
    return atomic_write_json(folder / STATS_FILE, {"timestamp": iso(now), **stats_summary(store)})


def export_results(store: Store, *, since: float | None, fmt: Literal["json", "csv"],
                   out: TextIO) -> int:
    """Write the tasks of ``store`` that ended at or after ``since`` (all when None).

    Returns:
        How many tasks were written.
    """
    return write_export(stored_entries(store, since=since),
                        orchestrator_stats=stats_summary(store)["orchestrator_stats"],
                        fmt=fmt, out=out)


def stored_entries(store: Store, *, since: float | None) -> Iterator[dict[str, Any]]:
    """The ``task_results`` entries of the ended tasks, read a page at a time."""
    after: tuple[float, int] | None = None
    while True:
        page = store.ended_tasks_page(since=since, after=after, limit=EXPORT_PAGE_SIZE)
        yield from (task_result_entry(task) for task in page)
        if len(page) < EXPORT_PAGE_SIZE:
            return
        after = page_cursor(page[-1])


def served_entries(transport: Transport, *, since: float | None) -> Iterator[dict[str, Any]]:
    """The same entries from an orchestrator, through ``GET /api/results`` page by page."""
    params: dict[str, Any] = {"limit": EXPORT_PAGE_SIZE}
    if since is not None:
        params["since"] = since
    while True:
        answer = transport.get("/api/results", params=params)
        yield from answer["task_results"]
        if answer["next"] is None:
            return
        params["after"] = answer["next"]


def page_cursor(task: Task) -> tuple[float, int]:
    """Where the next page of ended tasks starts: after this task."""
    return (task.finished_at or 0.0, task.seq)


def write_export(entries: Iterable[dict[str, Any]], *, orchestrator_stats: dict[str, Any],
                 fmt: Literal["json", "csv"], out: TextIO) -> int:
    """Write ``entries`` as they come: ``json`` is the results-file document (timestamp,
    orchestrator_stats, task_results); ``csv`` has one row per task, with ``parameters``
    and ``result`` as JSON text. Nothing is marked exported.

    Returns:
        How many entries were written.
    """
    if fmt == "csv":
        return _write_csv(entries, out)
    head = json.dumps({"timestamp": iso(time.time()), "orchestrator_stats": orchestrator_stats},
                      indent=2, ensure_ascii=False)
    out.write(head[:-2] + ',\n  "task_results": [')
    count = 0
    for count, entry in enumerate(entries, start=1):
        text = json.dumps(entry, indent=2, ensure_ascii=False, allow_nan=False)
        out.write(("," if count > 1 else "") + "\n" + textwrap.indent(text, "    "))
    out.write("\n  ]\n}\n" if count else "]\n}\n")
    return count


def _write_csv(entries: Iterable[dict[str, Any]], out: TextIO) -> int:
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    count = 0
    for entry in entries:
        writer.writerow({**entry, "parameters": json.dumps(entry["parameters"], ensure_ascii=False),
                         "result": json.dumps(entry["result"], ensure_ascii=False)})
        count += 1
    return count

