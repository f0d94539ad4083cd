"""A worker's default id, stable across restarts: ``<type>-<host>-<slot>``.

A worker started without ``--id`` takes the lowest slot of its type on this host that
no running worker holds: it locks ``<state_path>/workers/<id>.lock`` (an ``fcntl``
lock, let go by the system when its holder dies, even by ``kill -9``) for as long as
it runs. Restarted, it finds the same slot free and registers under the same id, so
its row in the orchestrator is replaced rather than joined by another "offline" one,
and the secret kept beside the lock takes the id over at once. A pool gives each
child its slot (``--slot``); a slot held by another process is refused, naming it.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path
from typing import IO
from urllib.parse import quote

from elastic.errors import ConfigError

MAX_SLOTS = 256  # the most workers of one type on one host


class SlotLock:
    """A held worker slot; ``release`` (or the process's exit) lets it go."""

    def __init__(self, worker_id: str, file: IO[str]) -> None:
        self.worker_id = worker_id
        self._file: IO[str] | None = file

    def release(self) -> None:
        """Let the slot go (the file stays: removing it would race with the next holder)."""
        if self._file is not None:
            self._file.close()
            self._file = None


def default_worker_id(worker_type: str, slot: int, *, host: str | None = None) -> str:
    """The stable id of slot ``slot`` of ``worker_type`` on ``host`` (default: this host)."""
    return f"{worker_type}-{host or socket.gethostname()}-{slot}"


def state_file(folder: Path, worker_id: str, suffix: str) -> Path:
    """The file ``<folder>/workers/<id><suffix>`` (the id quoted for a file name)."""
    return folder / "workers" / f"{quote(worker_id, safe='')}{suffix}"


def claim_slot(folder: Path, worker_type: str, *, slot: int | None = None) -> SlotLock:
    """Hold slot ``slot`` of ``worker_type`` on this host, or the lowest free one (None).

    Raises:
        ConfigError: the slot asked for is held by another running worker, or every
            slot is (naming the holder's pid).
    """
    slots = range(MAX_SLOTS) if slot is None else [slot]
    for number in slots:
        held = _try_lock(folder, default_worker_id(worker_type, number))
        if held is not None:
            return held
    wanted = f"slot {slot}" if slot is not None else f"a free slot (all {MAX_SLOTS} held)"
    holder = _holder(folder, default_worker_id(worker_type, slots[-1]))
    raise ConfigError("slot", "flag", f"{wanted} of {worker_type} workers on this host; "
                      f"held by pid {holder} (give another --slot or --id)", slots[-1])


def _try_lock(folder: Path, worker_id: str) -> SlotLock | None:
    path = state_file(folder, worker_id, ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    file = path.open("a+", encoding="utf-8")
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        file.close()
        return None
    file.truncate(0)
    file.write(f"{os.getpid()}\n")
    file.flush()
    return SlotLock(worker_id, file)


def _holder(folder: Path, worker_id: str) -> str:
    try:
        return state_file(folder, worker_id, ".lock").read_text(encoding="utf-8").strip() or "?"
    except OSError:
        return "?"
