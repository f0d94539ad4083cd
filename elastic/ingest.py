"""task_queues/: take each ``*.json`` batch whole, then move it to processed/ or rejected/.

A file is taken only once it has stopped changing (same size and mtime on two scans,
and older than ``min_age_seconds``), so a slow copy is neither taken half-written
nor rejected half-way; ``*.tmp`` files are ignored until renamed. A file is queued
in one transaction; its task ids (given, or derived from its content) make a second
ingest of the same file, after a crash between queueing and moving, queue nothing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from elastic.errors import InvalidTask
from elastic.results import atomic_write_json
from elastic.store import Store
from elastic.taskfiles import parse_task_file

log = logging.getLogger("elastic.ingest")

DEFAULT_MIN_AGE_SECONDS = 1.0


@dataclass
class IngestReport:
    """What one scan did."""

    accepted: list[tuple[str, int, int]] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """One human-readable line per file handled."""
        return ([f"queued {name}: {created} new task(s), {known} already known"
                 for name, created, known in self.accepted]
                + [f"rejected {name}: {error}" for name, error in self.rejected])


@dataclass
class _Seen:
    size: int
    mtime_ns: int


_last_seen: dict[Path, _Seen] = {}


def ingest_folder(store: Store, folder: Path, *, now: float | None = None,
                  min_age_seconds: float = DEFAULT_MIN_AGE_SECONDS) -> IngestReport:
    """Queue every settled ``*.json`` batch in ``folder``; see the module docstring."""
    now = time.time() if now is None else now
    report = IngestReport()
    if not folder.is_dir():
        return report
    for path in sorted(folder.glob("*.json")):
        if not path.is_file():
            continue
        if not _is_settled(path, now=now, min_age_seconds=min_age_seconds):
            report.waiting.append(path.name)
            continue
        _ingest_file(store, path, report, now=now)
    return report


def _is_settled(path: Path, *, now: float, min_age_seconds: float) -> bool:
    stat = path.stat()
    current = _Seen(stat.st_size, stat.st_mtime_ns)
    previous = _last_seen.get(path)
    _last_seen[path] = current
    old_enough = now - stat.st_mtime >= min_age_seconds
    return old_enough and (previous == current or now - stat.st_mtime >= 2 * min_age_seconds)


def _ingest_file(store: Store, path: Path, report: IngestReport, *, now: float) -> None:
    try:
        tasks = parse_task_file(path.read_bytes(), source=path.name)
    except InvalidTask as exc:
        _reject(path, exc, now=now)
        report.rejected.append((path.name, exc.message))
        log.warning("rejected %s: %s", path.name, exc.message)
        return
    outcomes = store.submit_tasks(tasks)
    created = sum(outcome.created for outcome in outcomes)
    _move(path, path.parent / "processed",
          f"{datetime.fromtimestamp(now, UTC):%Y%m%d_%H%M%S}_{path.name}")
    report.accepted.append((path.name, created, len(outcomes) - created))
    log.info("queued %s: %d new task(s)", path.name, created)


def _reject(path: Path, error: InvalidTask, *, now: float) -> None:
    rejected = path.parent / "rejected"
    target = _move(path, rejected, path.name)
    atomic_write_json(rejected / f"{target.stem}.error.json", {
        "file": path.name, **error.as_dict(),
        "rejected_at": datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")})


def _move(path: Path, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target, number = folder / name, 1
    while target.exists():
        number += 1
        target = folder / f"{Path(name).stem}_{number}{Path(name).suffix}"
    path.replace(target)
    _last_seen.pop(path, None)
    return target
