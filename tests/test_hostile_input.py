"""Hostile input never breaks elastic: real ``elastic serve`` processes on both databases.

What JSON cannot carry safely (nesting deeper than 64 levels, lone surrogates, NUL,
``1e999``, integers beyond 64 bits, names longer than their column) is refused with 400
naming the field by the one gate (``elastic.tasks.json_value_problem``), whether it comes
over HTTP, through task_queues/ or into the client's local run; no answer ever holds
``NaN`` or ``Infinity``. Whatever the store holds anyway (written around the API), the
results writers and ``elastic results export`` keep working, and ``elastic status``
shows data that looks like rich markup as text.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
import sqlalchemy
from conftest import ServerProcess, free_port, wait_until

from elastic.client import Client
from elastic.errors import InvalidTask

MUTATION = '"type": "evolution_mutation", "data": {"genome": {"a": 1.0}, "mutation_rate": 0.1}'
NINES = "9" * 25  # beyond 64 bits

# (what, path, raw JSON body, the field the 400 must name)
HOSTILE_BODIES = [
    ("nesting", "/api/tasks/submit", "[" * 100_000 + "]" * 100_000, "nested deeper"),
    ("nesting in data", "/api/tasks/submit",
     '{"type": "evolution_mutation", "data": {"genome": {"a": ' + '{"a": ' * 900 + "1"
     + "}" * 900 + '}, "mutation_rate": 0.1}}', "data.genome.a.a"),
    ("lone surrogate in description", "/api/tasks/submit",
     "{" + MUTATION + ', "description": "\\ud800"}', "description"),
    ("lone surrogate in task_id", "/api/tasks/submit",
     "{" + MUTATION + ', "task_id": "x\\ud800"}', "task_id"),
    ("lone surrogate in a message", "/api/tasks/submit",
     '{"type": "agent_action", "data": {"messages": [{"role": "user", "content": "\\udc00"}],'
     ' "model": "m"}}', "data.messages[0].content"),
    ("lone surrogate in a worker id", "/api/workers/register",
     '{"worker_id": "w\\ud800", "worker_type": "evolution"}', "worker_id"),
    ("lone surrogate in capabilities", "/api/workers/register",
     '{"worker_id": "w1", "worker_type": "evolution", "capabilities": {"x": "\\ud800"}}',
     "capabilities.x"),
    ("1e999", "/api/tasks/submit",
     '{"type": "evolution_mutation", "data": {"genome": {"a": 1e999}, "mutation_rate": 0.1}}',
     "data.genome.a"),
    ("1e999 in capabilities", "/api/workers/register",
     '{"worker_id": "w2", "worker_type": "evolution", "capabilities": {"x": -1e999}}',
     "capabilities.x"),
    ("max_tokens beyond 64 bits", "/api/tasks/submit",
     '{"type": "agent_action", "data": {"messages": [{"role": "user", "content": "hi"}], '
     '"model": "m", "max_tokens": ' + NINES + "}}", "data.max_tokens"),
    ("max_tokens beyond the token column", "/api/tasks/submit",
     '{"type": "agent_action", "data": {"messages": [{"role": "user", "content": "hi"}], '
     '"model": "m", "max_tokens": 4294967296}}', "data.max_tokens"),
    ("a seed beyond 64 bits", "/api/tasks/submit",
     '{"type": "evolution_crossover", "data": {"genome1": {"a": 1}, "genome2": {"a": 2}, '
     '"seed": ' + NINES + "}}", "data.seed"),
    ("NUL in a message", "/api/tasks/submit",
     '{"type": "agent_action", "data": {"messages": [{"role": "user", "content": "a\\u0000"}],'
     ' "model": "m"}}', "data.messages[0].content"),
    ("NUL in a description", "/api/tasks/submit",
     "{" + MUTATION + ', "description": "a\\u0000b"}', "description"),
    ("NUL in capabilities", "/api/workers/register",
     '{"worker_id": "w3", "worker_type": "evolution", "capabilities": {"x": "\\u0000"}}',
     "capabilities.x"),
    ("over-long model", "/api/tasks/submit",
     '{"type": "agent_action", "data": {"messages": [{"role": "user", "content": "hi"}], '
     '"model": "' + "m" * 201 + '"}}', "data.model"),
    ("over-long task_id", "/api/tasks/submit",
     "{" + MUTATION + ', "task_id": "' + "x" * 201 + '"}', "task_id"),
    ("over-long worker type", "/api/workers/register",
     '{"worker_id": "w4", "worker_type": "' + "e" * 65 + '"}', "worker_type"),
]
READ_PATHS = ("/api/tasks", "/tasks", "/api/workers/list", "/workers", "/stats", "/api/stats",
              "/api/results", "/health")


def strict_json(text: str) -> object:
    """Parse as RFC 8259 JSON: NaN and Infinity are not numbers there."""
    def refuse(constant: str) -> object:
        raise ValueError(f"non-standard JSON constant {constant}")
    return json.loads(text, parse_constant=refuse)


def test_hostile_bodies_get_400_naming_the_field_and_no_answer_holds_nan(
        start_server: Callable[..., ServerProcess], database_url: str) -> None:
    server = start_server(database_url)
    problems = []
    for what, path, body, field in HOSTILE_BODIES:
        answer = requests.post(f"{server.url}{path}", data=body.encode(), timeout=60,
                               headers={"Content-Type": "application/json"})
        error = answer.json().get("error", "") if answer.status_code < 500 else answer.text
        if answer.status_code != 400 or field not in error:
            problems.append(f"{what}: {answer.status_code} {error[:200]}")
    for path in READ_PATHS:
        answer = requests.get(f"{server.url}{path}", timeout=30)
        try:
            strict_json(answer.text)
        except ValueError as exc:
            problems.append(f"GET {path}: {exc}")
    assert not problems, problems
    assert "Traceback" not in (server.folder / "server.log").read_text(errors="replace")


def test_a_hostile_task_file_in_task_queues_is_rejected_naming_the_field(
        start_server: Callable[..., ServerProcess], project_folder: Path) -> None:
    queues = project_folder / "task_queues"
    queues.mkdir(exist_ok=True)
    start_server()
    (queues / "surrogate.json").write_text(
        '{"tasks": [{"type": "evolution_mutation", "data": {"genome": {"a": 1.0}, '
        '"mutation_rate": 0.1}}, {"task_id": "t\\ud800", "algorithm": "python", '
        '"parameters": {"num_particles": 10, "num_steps": 2}}]}')
    error_file = queues / "rejected" / "surrogate.error.json"
    wait_until(error_file.exists, timeout=60, message="the file to be rejected")
    error = json.loads(error_file.read_text())
    assert "tasks[1].task_id" in json.dumps(error), error


def test_the_clients_local_run_refuses_what_the_server_would(tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens: the client runs it here
    client = Client(nowhere, timeout=2)
    with pytest.raises(InvalidTask) as refused:
        client.run("evolution_mutation", {"genome": {"a\ud800": 1.0}, "mutation_rate": 0.1},
                   timeout=5)
    assert "data.genome.a" in str(refused.value), refused.value


# -- what the store holds anyway: the writers never stop ---------------------------------------

def _finish_with_unjsonable_values(database_url: str, task_ids: list[str]) -> None:
    """End ``task_ids`` as completed with a lone surrogate and NaN in their data and result,
    written straight through SQLAlchemy (around every gate): what an older elastic let in."""
    engine = sqlalchemy.create_engine(database_url)
    tasks = sqlalchemy.Table("tasks", sqlalchemy.MetaData(), autoload_with=engine)
    now = time.time()
    with engine.begin() as connection:
        for task_id in task_ids:
            connection.execute(tasks.update().where(tasks.c.task_id == task_id).values(
                status="completed", started_at=now - 1, finished_at=now,
                data={"genome": {"a\ud800": math.nan}, "mutation_rate": 0.1},
                result={"success": True, "output": "bad \udc00 text", "score": math.inf}))
    engine.dispose()


def _elastic(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # Wide enough that rich never wraps a cell the test looks for.
    return subprocess.run([sys.executable, "-m", "elastic", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=120, encoding="utf-8", errors="replace",
                          env={**os.environ, "COLUMNS": "300"})


def test_results_files_stats_and_export_keep_working_whatever_the_store_holds(
        start_server: Callable[..., ServerProcess], project_folder: Path) -> None:
    # SQLite only: PostgreSQL refuses to store NaN or a lone surrogate at all.
    server = start_server()
    submitted = requests.post(f"{server.url}/api/tasks/submit", timeout=30, json={"tasks": [
        {"task_id": f"bad-{n}", "type": "evolution_mutation",
         "data": {"genome": {"a": 1.0}, "mutation_rate": 0.1}} for n in range(2)]
        + [{"task_id": "good-0", "type": "evolution_mutation",
            "data": {"genome": {"a": 1.0}, "mutation_rate": 0.1}}]})
    assert submitted.status_code == 200, submitted.text
    _finish_with_unjsonable_values(server.database_url, ["bad-0", "bad-1", "good-0"])
    results = project_folder / "results"

    def written_ids() -> set[str]:
        found = set()
        for path in results.glob("task_results_*.json"):
            found |= {entry["task_id"] for entry in strict_json(path.read_text())["task_results"]}
        return found

    wait_until(lambda: written_ids() >= {"bad-0", "bad-1", "good-0"}, timeout=60,
               message="a results file with the three tasks")
    def completed_in_stats() -> object:
        stats = results / "orchestrator_stats.json"  # written atomically, once the loop runs
        return stats.exists() and strict_json(stats.read_text())[  # type: ignore[index]
            "orchestrator_stats"]["completed_tasks"]

    wait_until(lambda: completed_in_stats() == 3, timeout=60,
               message="orchestrator_stats.json to count them")
    log = (project_folder / "server.log").read_text(errors="replace")
    assert "'bad-0'" in log and "not JSON text" in log, log[-2000:]
    for source in (["--db", server.database_url], ["--server", server.url]):
        for fmt in ("json", "csv"):
            exported = _elastic("results", "export", "--format", fmt, *source,
                                "--config", str(project_folder / "elastic.toml"),
                                cwd=project_folder)
            assert exported.returncode == 0, exported.stderr
            assert "bad-1" in exported.stdout and "\ufffd" in exported.stdout
            if fmt == "json":
                entries = strict_json(exported.stdout)["task_results"]  # type: ignore[index]
                assert {entry["task_id"] for entry in entries} == {"bad-0", "bad-1", "good-0"}


# -- elastic status shows markup-looking data as text -------------------------------------------

def test_status_shows_markup_looking_worker_types_and_errors_as_text(
        start_server: Callable[..., ServerProcess], project_folder: Path) -> None:
    server = start_server()
    registered = requests.post(f"{server.url}/api/workers/register", timeout=30, json={
        "worker_id": "[bold]w", "worker_type": "[/INST]",
        "capabilities": {"task_types": ["evolution_mutation"]}}).json()
    headers = {"X-Worker-Secret": registered["worker_secret"]} if "worker_secret" in registered else {}
    requests.post(f"{server.url}/api/tasks/submit", timeout=30, json={
        "task_id": "[red]t", "type": "evolution_mutation",
        "data": {"genome": {"a": 1.0}, "mutation_rate": 0.1}}).raise_for_status()
    lease = requests.get(f"{server.url}/api/workers/[bold]w/tasks", headers=headers,
                         timeout=30).json()["task"]
    answer = requests.post(f"{server.url}/api/tasks/[red]t/result", headers=headers,
                           timeout=30, json={
        "worker_id": "[bold]w", "lease_token": lease["lease_token"],
        "result": {"success": False, "retryable": False, "error": "model said [/INST] [x"}})
    assert answer.status_code == 200, answer.text
    shown = _elastic("status", "--server", server.url, "--config",
                     str(project_folder / "elastic.toml"), cwd=project_folder)
    assert shown.returncode == 0, shown.stderr
    for text in ("[/INST]", "[bold]w", "[red]t", "[/INST] [x"):
        assert text in shown.stdout, (text, shown.stdout)


def test_a_task_file_over_the_body_limit_is_rejected_unread_naming_the_limit(
        start_server: Callable[..., ServerProcess], project_folder: Path) -> None:
    queues = project_folder / "task_queues"
    queues.mkdir(exist_ok=True)
    server = start_server()
    with (queues / "huge.json").open("wb") as huge:
        huge.truncate(200 * 1024 * 1024)  # sparse: 200 MB to read, no disk used
    error_file = queues / "rejected" / "huge.error.json"
    wait_until(error_file.exists, timeout=60, message="the 200 MB file to be rejected")
    assert "max_body_bytes" in error_file.read_text()
    assert (queues / "rejected" / "huge.json").stat().st_size == 200 * 1024 * 1024
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    peak_kib = int(status.split("VmHWM:")[1].split()[0])
    assert peak_kib < 190 * 1024, f"the server's memory peaked at {peak_kib} KiB: it read the file"
