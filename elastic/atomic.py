"""Files written whole or not at all, file names that never overwrite, and their time stamps.

A reader (a person with ``jq``, the task_queues/ watcher) sees either the old file
or the complete new one: the text goes to a temporary ``.<name>.<random>.tmp`` in
the same folder (which the watcher ignores), is flushed to disk, then renamed
over the target; the folder is synced so the rename survives a power cut.

A file that must get a name of its own (a results file, a file moved to processed/)
takes the first free ``<stem>``, ``<stem>_2``, ... with a hard link, which fails
rather than replace a file of that name: two processes writing or moving into one
folder in the same second (replicas sharing it) never overwrite each other.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

NO_HARD_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK)


def file_stamp(now: float) -> str:
    """``YYYYMMDD_HHMMSS`` of ``now`` in the local time, for file names: the seed's shell
    globs (``results/task_results_$(date +%Y%m%d)_*.json``) use the local date. The
    data inside the files stays UTC."""
    return datetime.fromtimestamp(now).strftime("%Y%m%d_%H%M%S")


def atomic_write_text(path: Path, text: str, *, mode: int = 0o666) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, creating its folder; returns ``path``.

    ``mode`` is the new file's permissions (before the umask): 0o600 for a secret.
    """
    temporary = _write_temporary(path.parent, path.name, text, mode=mode)
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    sync_folder(path.parent)
    return path


def atomic_write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented, standard JSON (no NaN) to ``path`` atomically.

    Raises:
        ValueError: ``data`` holds a float that JSON cannot represent.
    """
    return atomic_write_text(path, json_text(data))


def write_new_json(folder: Path, stem: str, data: Any) -> Path:
    """Write ``data`` atomically to ``folder/<stem>.json``, or ``<stem>_2.json``... whichever
    is free, never replacing a file (even one another process writes at the same moment)."""
    temporary = _write_temporary(folder, stem, json_text(data))
    try:
        return move_to_unused(temporary, folder, stem)
    finally:
        temporary.unlink(missing_ok=True)


def json_text(data: Any) -> str:
    """``data`` as indented, standard JSON (no NaN) with a final newline."""
    return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def move_to_unused(source: Path, folder: Path, stem: str, suffix: str = ".json",
                   companions: tuple[str, ...] = ()) -> Path:
    """Move ``source`` to the first free name ``unused_path`` finds, never replacing a file.

    On a file system without hard links (FAT) the move falls back to a rename, which
    is safe when one process writes into the folder.
    """
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        target = unused_path(folder, stem, suffix, companions)
        try:
            os.link(source, target)
        except FileExistsError:
            continue  # another process took this name since unused_path looked
        except OSError as exc:
            if exc.errno not in NO_HARD_LINKS:
                raise
            os.replace(source, target)
            break
        source.unlink()
        break
    sync_folder(folder)
    return target


def _write_temporary(folder: Path, name: str, text: str, *, mode: int = 0o666) -> Path:
    """``text`` written and flushed to disk in a new hidden temporary file of ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{name}.{secrets.token_hex(4)}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary


def sync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename in it) to disk, where the system allows it."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def unused_path(folder: Path, stem: str, suffix: str = ".json",
                companions: tuple[str, ...] = ()) -> Path:
    """``folder/<stem><suffix>``, or ``<stem>_2<suffix>``, ``_3``... whichever is free.

    ``companions`` are suffixes of files that go with it (``.error.json``): a name
    is free only when those are free too.
    """
    number = 1
    while True:
        candidate = stem if number == 1 else f"{stem}_{number}"
        names = [candidate + suffix, *(candidate + extra for extra in companions)]
        if not any((folder / name).exists() for name in names):
            return folder / names[0]
        number += 1
