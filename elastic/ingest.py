"""task_queues/: take each ``*.json`` batch whole, then move it to processed/ or rejected/.

Only ``*.json`` files are taken (not hidden ones): a ``*.tmp`` being written, or
any other name, waits until it is renamed. A file is not taken while it may still
be being written: it must be at least ``min_age_seconds`` old and, for a watcher
that scans repeatedly, unchanged (size and mtime) since the scan that last saw
it. A file that does not parse is rejected only once it is also known to be
stable (unchanged across two scans, or, for a single scan, old enough), so a slow
copy is never rejected half-way.

Several processes may watch one folder (``serve`` replicas, ``elastic ingest``):
before taking a file, a process claims it by renaming it to a hidden
``.<name>~<host>~<pid>.claim`` in the same folder, and of several renames of one
file exactly one succeeds. A claim left by a process that died (its pid is gone
on this host, or the claim is older than ``ABANDONED_CLAIM_SECONDS``) is put back
under its name by the next scan of any process.

An accepted file is queued whole (one transaction, or one request to the
orchestrator: ``TaskQueue``) and moved to
``processed/YYYYMMDD_HHMMSS_<name>.json`` (local time); a rejected one to
``rejected/<name>.json`` beside ``<name>.error.json``, which says why; neither
move ever replaces a file. Task ids (given, or derived from the file's content)
make a second ingest of the same file, after a crash between queueing and moving
it, queue nothing.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol

from elastic.atomic import atomic_write_json, file_stamp, move_to_unused
from elastic.config import Config
from elastic.errors import InvalidTask, ServerUnreachable
from elastic.taskfiles import parse_task_file
from elastic.tasks import NewTask, SubmitOutcome, iso

log = logging.getLogger("elastic.ingest")

DEFAULT_MIN_AGE_SECONDS = 1.0
DEFAULT_MAX_FILE_BYTES = Config.max_body_bytes  # one limit for task files and HTTP bodies
PROCESSED_FOLDER = "processed"
REJECTED_FOLDER = "rejected"
ERROR_SUFFIX = ".error.json"
CLAIM_SUFFIX = ".claim"
CLAIM_SEPARATOR = "~"
ABANDONED_CLAIM_SECONDS = 600.0


class TaskQueue(Protocol):
    """Where a folder's batches go: a ``Store``, or the orchestrator over HTTP
    (``elastic.batch.ServerQueue``)."""

    def submit_tasks(self, new_tasks: Sequence[NewTask]) -> list[SubmitOutcome]:
        """Queue the tasks all or nothing; an id already known is not queued again."""
        ...


class Signature(NamedTuple):
    """What tells whether a file changed between two looks: its size and mtime."""

    size: int
    mtime_ns: int

    @property
    def mtime(self) -> float:
        """The modification time in seconds since the epoch."""
        return self.mtime_ns / 1e9


@dataclass(frozen=True)
class AcceptedFile:
    """A file whose tasks were queued (``duplicates``: ids already known, not queued again)."""

    name: str
    moved_to: Path
    created: int
    duplicates: int


@dataclass(frozen=True)
class RejectedFile:
    """A file that was not valid, moved aside with the reason beside it."""

    name: str
    moved_to: Path
    error_file: Path
    error: InvalidTask


@dataclass
class IngestReport:
    """What one scan did; ``waiting`` are files left for a later scan."""

    accepted: list[AcceptedFile] = field(default_factory=list)
    rejected: list[RejectedFile] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)

    @property
    def tasks_created(self) -> int:
        """Tasks queued by this scan."""
        return sum(accepted.created for accepted in self.accepted)

    def lines(self) -> list[str]:
        """One human-readable line per file taken."""
        return ([f"queued {a.name}: {a.created} new task(s), {a.duplicates} already known "
                 f"-> {a.moved_to}" for a in self.accepted]
                + [f"rejected {r.name}: {r.error.message} -> {r.moved_to}" for r in self.rejected])


def ingest_folder(queue: TaskQueue, folder: Path, *, now: float | None = None,
                  min_age_seconds: float = DEFAULT_MIN_AGE_SECONDS,
                  seen: dict[str, Signature] | None = None,
                  max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> IngestReport:
    """Queue every settled ``*.json`` batch in ``folder``, oldest first.

    Args:
        now: the clock, seconds since the epoch (default: now).
        min_age_seconds: how long a file must have been left alone.
        seen: the memory of a caller that scans repeatedly (``FolderWatcher``):
            name -> signature at the previous scan, updated in place. Without it,
            this is a single scan and a file's age is all it goes by.
        max_file_bytes: a bigger file is rejected unread: the server's
            ``max_body_bytes``, the limit of an HTTP body.

    A folder that does not exist (yet) holds nothing to ingest. A file that
    fails for another reason than being invalid (the database is down) is
    logged and stays where it is for the next scan; the other files go on.

    Raises:
        ServerUnreachable: ``queue`` is an orchestrator that cannot be reached (the
            file stays where it is; every other file would fail the same way).
    """
    report = IngestReport()
    if not folder.is_dir():
        return report
    now = time.time() if now is None else now
    recover_abandoned_claims(folder, now=now)
    remembered: dict[str, Signature] = {}
    for path, signature in _candidates(folder):
        previous = None if seen is None else seen.get(path.name)
        try:
            left = _scan_file(queue, path, signature, previous=previous,
                              single_scan=seen is None, now=now,
                              limits=(min_age_seconds, max_file_bytes), report=report)
        except ServerUnreachable:
            raise  # every other file would fail the same way: the caller decides
        except Exception:
            log.exception("could not ingest %s; it stays for the next scan", path)
            report.waiting.append(path.name)
            left = signature
        if left is not None:
            remembered[path.name] = left
    if seen is not None:
        seen.clear()
        seen.update(remembered)
    return report


def _candidates(folder: Path) -> list[tuple[Path, Signature]]:
    """The ``*.json`` files of ``folder`` (not hidden ones) with their signatures, oldest first."""
    found = []
    for path in folder.glob("*.json"):
        signature = _signature(path)
        if signature is not None and not path.name.startswith("."):
            found.append((path, signature))
    return sorted(found, key=lambda pair: (pair[1].mtime_ns, pair[0].name))


def _signature(path: Path) -> Signature | None:
    """The file's signature, or None if it is gone or is not a regular file."""
    try:
        found = path.stat()
    except FileNotFoundError:
        return None
    return Signature(found.st_size, found.st_mtime_ns) if stat.S_ISREG(found.st_mode) else None


def _scan_file(queue: TaskQueue, path: Path, signature: Signature, *, previous: Signature | None,
               single_scan: bool, now: float, limits: tuple[float, int],
               report: IngestReport) -> Signature | None:
    """Take ``path`` if it is settled; returns the signature to remember if it stays.

    ``limits``: the age a file must have (seconds) and the most bytes it may hold.
    """
    unchanged = previous == signature
    min_age_seconds, max_file_bytes = limits
    if not _is_settled(signature, previous, now=now, min_age_seconds=min_age_seconds):
        report.waiting.append(path.name)
        return signature
    if signature.size > max_file_bytes:  # rejected unread: never held in memory
        _reject_into(report, path, InvalidTask(
            f"file of {signature.size} bytes is over the limit of {max_file_bytes} bytes "
            "(max_body_bytes, the same limit as an HTTP body)"), now=now, signature=signature)
        return None
    content = _read_unchanged(path, signature)
    if content is None:
        report.waiting.append(path.name)
        return _signature(path)
    try:
        tasks = parse_task_file(content, source=path.name)
    except InvalidTask as exc:
        if not (single_scan or unchanged):
            report.waiting.append(path.name)
            return signature
        _reject_into(report, path, exc, now=now, signature=signature)
        return None
    accepted = queue_file(queue, path, tasks, now=now, expected=signature)
    if accepted is not None:
        report.accepted.append(accepted)
    return None


def _reject_into(report: IngestReport, path: Path, error: InvalidTask, *, now: float,
                 signature: Signature) -> None:
    rejected = reject_file(path, error, now=now, expected=signature)
    if rejected is not None:
        report.rejected.append(rejected)


def _is_settled(signature: Signature, previous: Signature | None, *, now: float,
                min_age_seconds: float) -> bool:
    """Old enough and not changed since the last look (a future mtime: unchanged suffices)."""
    if previous is not None and previous != signature:
        return False
    age_seconds = now - signature.mtime
    return age_seconds >= min_age_seconds or (age_seconds < 0 and previous == signature)


def _read_unchanged(path: Path, signature: Signature) -> bytes | None:
    """The file's bytes, or None if it changed while read (or cannot be read now)."""
    try:
        content = path.read_bytes()
    except OSError as exc:
        log.warning("cannot read %s yet: %s", path, exc)
        return None
    return content if _signature(path) == signature else None


def queue_file(queue: TaskQueue, path: Path, tasks: list[NewTask], *,
               now: float | None = None, expected: Signature | None = None) -> AcceptedFile | None:
    """Claim ``path``, queue ``tasks`` (whole), then move it to processed/.

    Returns None, doing nothing, when another process claimed the file first (or it
    no longer has the ``expected`` signature).
    """
    now = time.time() if now is None else now
    with claimed(path, expected) as taken:
        if taken is None:
            return None
        outcomes = queue.submit_tasks(tasks)
        target = move_to_unused(taken, path.parent / PROCESSED_FOLDER,
                                f"{file_stamp(now)}_{path.stem}", path.suffix)
    created = sum(outcome.created for outcome in outcomes)
    return AcceptedFile(path.name, target, created, len(outcomes) - created)


def reject_file(path: Path, error: InvalidTask, *, now: float | None = None,
                expected: Signature | None = None) -> RejectedFile | None:
    """Claim ``path``, move it to rejected/ and write ``<name>.error.json`` beside it.

    Returns None, doing nothing, when another process claimed the file first.
    """
    now = time.time() if now is None else now
    with claimed(path, expected) as taken:
        if taken is None:
            return None
        rejected = path.parent / REJECTED_FOLDER
        target = move_to_unused(taken, rejected, path.stem, path.suffix,
                                companions=(ERROR_SUFFIX,))
    error_file = atomic_write_json(rejected / f"{target.stem}{ERROR_SUFFIX}", {
        "file": path.name, **error.as_dict(), "rejected_at": iso(now)})
    return RejectedFile(path.name, target, error_file, error)


@contextmanager
def claimed(path: Path, expected: Signature | None = None) -> Iterator[Path | None]:
    """Claim ``path`` for this process while the block runs: yields its claimed path, or
    None when another process renamed it first (or it changed from ``expected``).

    The block moves the claimed file on; if the block fails, the file gets its name
    back for the next scan.
    """
    taken = path.with_name(CLAIM_SEPARATOR.join(
        (f".{path.name}", socket.gethostname(), str(os.getpid()))) + CLAIM_SUFFIX)
    try:
        path.rename(taken)
    except FileNotFoundError:
        yield None
        return
    if expected is not None and _signature(taken) != expected:
        taken.rename(path)
        yield None
        return
    try:
        yield taken
    except BaseException:
        if taken.exists():
            taken.rename(path)
        raise


def recover_abandoned_claims(folder: Path, *, now: float) -> list[str]:
    """Give back their names to files claimed by a process that died before it moved them.

    A claim is abandoned when its process is gone from this host, or when it is older
    than ``ABANDONED_CLAIM_SECONDS`` (a live process moves a claimed file within
    seconds). Returns the names given back.
    """
    recovered = []
    for taken in folder.glob(f".*{CLAIM_SUFFIX}"):
        name, _, owner = taken.name[1:-len(CLAIM_SUFFIX)].partition(CLAIM_SEPARATOR)
        host, _, pid = owner.rpartition(CLAIM_SEPARATOR)
        try:
            claimed_at = taken.stat().st_ctime  # a rename sets it: when the claim was made
        except FileNotFoundError:
            continue
        dead = host == socket.gethostname() and not _process_alive(pid)
        if not (dead or now - claimed_at > ABANDONED_CLAIM_SECONDS):
            continue
        try:
            move_to_unused(taken, folder, Path(name).stem, Path(name).suffix)
        except FileNotFoundError:
            continue  # another process gave it back first
        log.warning("took back %s, claimed by %s which did not finish it", name, owner)
        recovered.append(name)
    return recovered


def _process_alive(pid: str) -> bool:
    """Whether process ``pid`` of this host runs (assumed so when it cannot be told)."""
    if not pid.isdigit() or sys.platform == "win32":  # os.kill would end it on Windows
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True



class FolderWatcher:
    """Ingests one folder scan after scan, remembering what each scan saw.

    ``scan`` is one step (``elastic serve`` calls it from its loop); ``run``
    repeats it until a stop event, logging and surviving any error.
    """

    def __init__(self, queue: TaskQueue, folder: Path, *,
                 min_age_seconds: float = DEFAULT_MIN_AGE_SECONDS,
                 max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> None:
        self.queue = queue
        self.folder = folder
        self.min_age_seconds = min_age_seconds
        self.max_file_bytes = max_file_bytes
        self._seen: dict[str, Signature] = {}

    def scan(self, *, now: float | None = None) -> IngestReport:
        """Ingest what has settled since the last scan (creating the folder if needed)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        report = ingest_folder(self.queue, self.folder, now=now,
                               min_age_seconds=self.min_age_seconds, seen=self._seen,
                               max_file_bytes=self.max_file_bytes)
        for accepted in report.accepted:
            log.info("queued %s: %d new task(s), %d already known", accepted.name,
                     accepted.created, accepted.duplicates)
        for rejected in report.rejected:
            log.warning("rejected %s: %s", rejected.name, rejected.error.message)
        return report

    def run(self, stop_event: threading.Event, *, interval_seconds: float) -> None:
        """Scan every ``interval_seconds`` until ``stop_event`` is set; errors are logged."""
        while not stop_event.is_set():
            try:
                self.scan()
            except Exception:
                log.exception("ingesting %s failed; will try again", self.folder)
            stop_event.wait(interval_seconds)


def watch_folder(queue: TaskQueue, folder: Path, *, interval_seconds: float,
                 stop_event: threading.Event,
                 min_age_seconds: float = DEFAULT_MIN_AGE_SECONDS) -> None:
    """Ingest ``folder`` every ``interval_seconds`` until ``stop_event`` is set (blocks)."""
    watcher = FolderWatcher(queue, folder, min_age_seconds=min_age_seconds)
    watcher.run(stop_event, interval_seconds=interval_seconds)
