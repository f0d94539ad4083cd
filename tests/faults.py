"""Real faults for the reliability tests: a proxy that drops answers, a disk that fills up.

``DroppingProxy`` forwards HTTP requests to a server on loopback, one request per
connection, and can be told to drop the answer to the next request whose request line
matches: the server has done the work (a lease committed) but the client never hears
of it, as when a router or the server's process dies mid-answer. ``small_disk`` mounts
a real tmpfs of a few megabytes (root only: skipped otherwise) that ``fill_disk`` fills
to ENOSPC, so SQLite sees a full disk exactly as it would in the field.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

HEAD_END = b"\r\n\r\n"


class DroppingProxy:
    """A loopback HTTP proxy to ``upstream_port`` that can drop chosen answers."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.dropped: list[str] = []
        self._drop_next: str | None = None
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        """The proxy's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def drop_next_answer(self, request_line_part: str) -> None:
        """Drop the answer to the next request whose request line contains the text."""
        with self._lock:
            self._drop_next = request_line_part

    def close(self) -> None:
        """Stop accepting connections."""
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            request = _read_request(client)
            if request is None:
                return
            line = request.split(b"\r\n", 1)[0].decode("latin-1")
            head, body = request.split(HEAD_END, 1)
            forwarded = head + b"\r\nConnection: close" + HEAD_END + body
            try:
                with socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
                    upstream.sendall(forwarded)
                    answer = _read_until_closed(upstream)
            except OSError:
                return  # the server is down (killed): the client sees its connection closed
            with self._lock:
                drop = self._drop_next is not None and self._drop_next in line
                if drop:
                    self._drop_next = None
                    self.dropped.append(line)
            if not drop:
                client.sendall(answer)


def _read_request(client: socket.socket) -> bytes | None:
    """One request from ``client``, its own Connection header left out."""
    data = b""
    while HEAD_END not in data:
        chunk = client.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, body = data.split(HEAD_END, 1)
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
    length = next((int(line.split(b":", 1)[1]) for line in lines
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += client.recv(65536)
    return b"\r\n".join(lines) + HEAD_END + body


def _read_until_closed(upstream: socket.socket) -> bytes:
    chunks = []
    while chunk := upstream.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@contextmanager
def small_disk(folder: Path, *, size_mb: int) -> Iterator[Path]:
    """A real tmpfs of ``size_mb`` mounted at ``folder`` for the test (needs root)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs",
                              str(folder)], capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"a full disk needs a tmpfs mount, which needs root: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill_disk(folder: Path) -> Path:
    """Write a file in ``folder`` until its disk is full; delete it to free the space."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as file:
        try:
            while True:
                file.write(b"\0" * 65536)
        except OSError:
            pass
    return filler
