"""Files written whole or not at all, and file names that never overwrite.

A reader (a person with ``jq``, the task_queues/ watcher) sees either the old file
or the complete new one: the text goes to a temporary ``.<name>.<random>.tmp`` in
the same folder (which the watcher ignores), is flushed to disk, then renamed
over the target; the folder is synced so the rename survives a power cut.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, creating its folder; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
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
    text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


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
