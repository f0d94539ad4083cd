"""``elastic serve`` writes the seed's ``logs/elastic_orchestrator.log`` (rotated) besides
stderr, as text or JSON lines, with Alembic and HTTP-client chatter only at DEBUG."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import requests
from conftest import ServerProcess, free_port, wait_until

LOG = Path("logs") / "elastic_orchestrator.log"


def test_serve_writes_its_log_file_without_alembic_chatter_at_info(
        start_server: Callable[..., ServerProcess], project_folder: Path) -> None:
    server = start_server()
    requests.post(f"{server.url}/api/workers/register", timeout=10,
                  json={"worker_id": "w", "worker_type": "evolution"}).raise_for_status()
    server.stop()  # SIGTERM: the file is complete
    text = (project_folder / LOG).read_text(encoding="utf-8")
    assert "elastic serve" in text and "starting" in text
    assert " INFO elastic.server: " in text
    assert "alembic" not in text and "urllib3" not in text


def test_log_format_json_and_log_level_debug_write_json_lines_rotated(
        project_folder: Path) -> None:
    with (project_folder / "elastic.toml").open("a") as toml:
        toml.write("log_max_bytes = 1024\nlog_backup_count = 1\n")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "elastic", "serve", "--port", str(port), "--log-format", "json",
         "--log-level", "debug"], cwd=project_folder, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env={**os.environ})
    try:
        wait_until(lambda: _healthy(port, process), timeout=30, message="the server to answer")
    finally:
        process.terminate()
        process.wait(timeout=30)
    files = sorted((project_folder / "logs").iterdir())
    # Rotated at 1 KiB (a start at DEBUG writes several), one old file kept, never more.
    assert [path.name for path in files] == ["elastic_orchestrator.log",
                                             "elastic_orchestrator.log.1"]
    records = [json.loads(line) for path in files
               for line in path.read_text(encoding="utf-8").splitlines()]
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert any(record["logger"].startswith("alembic") for record in records)  # DEBUG: heard


def _healthy(port: int, process: subprocess.Popen[bytes]) -> bool:
    assert process.poll() is None, "the server exited"
    try:
        return requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok
    except requests.RequestException:
        return False
