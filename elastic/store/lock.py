"""One orchestrator per SQLite file: a lock file beside the database, held while serving.

Replicas need PostgreSQL. Two ``elastic serve`` (or ``elastic run``) processes on one
SQLite file would each believe they own the queue's wake-ups and results/, so the
second is refused: it cannot take ``<database>.lock`` (an ``fcntl`` lock, which the
system lets go when its holder dies, even by ``kill -9``) and says who holds it, read
from the lock file. PostgreSQL URLs take no lock: any number of replicas may serve.
On systems without ``fcntl`` (Windows) no lock is taken.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import IO, Any

from elastic.errors import ElasticError
from elastic.store.dialects import sqlite_path

LOCK_SUFFIX = ".lock"


class DatabaseInUse(ElasticError):
    """Another elastic process serves this SQLite database."""

    http_status = 409
    exit_code = 2


class DatabaseLock:
    """A held lock on a SQLite database; ``release`` (or process exit) lets it go."""

    def __init__(self, path: Path, file: IO[str]) -> None:
        self.path = path
        self._file: IO[str] | None = file

    def release(self) -> None:
        """Let the lock go (the file stays: removing it would race with the next holder)."""
        if self._file is not None:
            self._file.close()
            self._file = None


def hold_database(url: str, *, command: str) -> DatabaseLock | None:
    """Lock the SQLite database at ``url`` for this process, which runs ``command``.

    Returns:
        The held lock, or None when there is nothing to lock (PostgreSQL, an
        in-memory database, or a system without ``fcntl``).

    Raises:
        DatabaseInUse: another process holds it; names the database, its pid and host.
    """
    database = sqlite_path(url)
    if database is None or sys.platform == "win32":
        return None
    import fcntl

    path = database.with_name(database.name + LOCK_SUFFIX)
    path.parent.mkdir(parents=True, exist_ok=True)
    file = path.open("a+", encoding="utf-8")
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.seek(0)
        holder = _holder(file.read())
        file.close()
        raise DatabaseInUse(
            f"the database {database} is in use by {holder.get('command', 'another process')} "
            f"(pid {holder.get('pid', '?')} on {holder.get('host', '?')}); one process serves "
            "a SQLite file: stop it first, or use PostgreSQL for replicas") from None
    file.truncate(0)
    file.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "command": command, "since": time.time()}) + "\n")
    file.flush()
    return DatabaseLock(path, file)


def _holder(text: str) -> dict[str, Any]:
    """Who wrote the lock file (empty when it cannot be read: it is being written)."""
    try:
        found = json.loads(text)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
