"""The ``elastic`` command line, driven as a user drives it: real processes, real server.

Every command runs as ``python -m elastic ...`` in a project folder, against an
``elastic serve`` process (fixture ``start_server``) and ``elastic worker`` processes
where needed. The interface's exit codes: 0 ok, 1 a task or operation failed, 2 usage
or configuration error. Errors are one readable line, never a traceback. Output is
taken as an 80-column terminal shows it (``COLUMNS=80``), the width of a pipe too.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from conftest import ServerProcess, free_port, hiding_modules, wait_until

from elastic import config
from elastic.errors import ConfigError

MUTATION = {"type": "evolution_mutation", "priority": 5,
            "data": {"genome": {"param1": 0.7, "param2": 120}, "mutation_rate": 0.1}}
SIMULATION_FILE = {"metadata": {"description": "cli test"}, "tasks": [
    {"task_id": "sim_cli_001", "algorithm": "python", "priority": "high",
     "parameters": {"num_particles": 100, "num_steps": 5, "seed": 123}}]}
LOG_RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ [\w.]+: ")


def elastic(*args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python -m elastic ARGS`` as a user would, in an 80-column terminal."""
    return subprocess.run([sys.executable, "-m", "elastic", *args], cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "80", **(env or {})})


def assert_one_clean_error_line(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """The command failed with one readable line on stderr (log records aside) naming ``words``."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines()
             if line.strip() and not LOG_RECORD.match(line)]
    assert len(lines) == 1, f"expected one error line, got {len(lines)}:\n{result.stderr}"
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    return lines[0]


def write_json(folder: Path, name: str, document: object) -> Path:
    path = folder / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def task_counts(server: ServerProcess, token: str | None = None) -> dict[str, int]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(f"{server.url}/api/stats", headers=headers, timeout=10).json()["tasks"]


def wait_for_worker(server: ServerProcess, worker_id: str) -> None:
    def registered() -> bool:
        workers = requests.get(f"{server.url}/api/workers/list", timeout=5).json()["workers"]
        return any(w["worker_id"] == worker_id and w["status"] in ("online", "busy")
                   for w in workers)
    wait_until(registered, timeout=30, message=f"worker {worker_id} to register")


# -- help and version ------------------------------------------------------------------------

def test_elastic_help_exits_0_and_lists_every_command(project_folder: Path) -> None:
    result = elastic("--help", cwd=project_folder)
    assert result.returncode == 0, result.stderr
    for command in ("serve", "worker", "submit", "ingest", "status", "run", "cancel"):
        assert command in result.stdout


def test_elastic_version_prints_the_package_version(project_folder: Path) -> None:
    from elastic import __version__

    result = elastic("--version", cwd=project_folder)
    assert result.returncode == 0 and __version__ in result.stdout


# -- status --------------------------------------------------------------------------------

def test_status_json_prints_valid_json_with_workers_and_task_counts(
        start_server: Callable[..., ServerProcess],
        start_worker: Callable[..., subprocess.Popen[bytes]], project_folder: Path) -> None:
    server = start_server()
    start_worker(server.url, worker_type="evolution", worker_id="evolution-json-1")
    wait_for_worker(server, "evolution-json-1")
    requests.post(f"{server.url}/api/tasks/submit", json={**MUTATION, "task_id": "json-1"},
                  timeout=10)
    result = elastic("status", "--json", "--server", server.url, cwd=project_folder)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert [w["worker_id"] for w in document["workers"]] == ["evolution-json-1"]
    counts = document["stats"]["tasks"]
    assert counts["total"] == 1
    assert {"pending", "assigned", "completed", "failed"} <= set(counts)


def test_status_table_shows_each_worker_id_in_full_in_80_columns(
        start_server: Callable[..., ServerProcess],
        start_worker: Callable[..., subprocess.Popen[bytes]], project_folder: Path) -> None:
    server = start_server()
    for worker_id in ("evolution-cli-1", "simulation-cli-2"):
        start_worker(server.url, worker_type=worker_id.split("-")[0], worker_id=worker_id)
    for worker_id in ("evolution-cli-1", "simulation-cli-2"):
        wait_for_worker(server, worker_id)
    result = elastic("status", "--server", server.url, cwd=project_folder)
    assert result.returncode == 0, result.stderr
    assert "evolution-cli-1" in result.stdout, result.stdout
    assert "simulation-cli-2" in result.stdout, result.stdout


def test_status_reads_the_server_from_elastic_server(
        start_server: Callable[..., ServerProcess], project_folder: Path) -> None:
    server = start_server()
    result = elastic("status", "--json", cwd=project_folder, env={"ELASTIC_SERVER": server.url})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["workers"] == []


# -- submit --------------------------------------------------------------------------------

def test_submit_of_a_file_with_a_bad_task_exits_2_naming_index_and_field_and_queues_nothing(
        start_server: Callable[..., ServerProcess], project_folder: Path) -> None:
    # A task file the user got wrong is a usage error (2), like an unreadable file;
    # 1 is for a task or operation that failed after it was accepted.
    server = start_server()
    bad = {**MUTATION, "data": {**MUTATION["data"], "mutation_rate": 7}}
    path = write_json(project_folder, "bad.json", {"tasks": [MUTATION, bad]})
    result = elastic("submit", str(path), "--server", server.url, cwd=project_folder)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "task 1" in result.stderr and "mutation_rate" in result.stderr, result.stderr
    assert task_counts(server)["total"] == 0


def test_submit_dash_reads_the_task_file_from_stdin(
        start_server: Callable[..., ServerProcess], project_folder: Path) -> None:
    server = start_server()
    result = elastic("submit", "-", "--server", server.url, cwd=project_folder,
                     stdin=json.dumps({"tasks": [{**MUTATION, "task_id": "from-stdin"}]}))
    assert result.returncode == 0, result.stderr
    assert "submitted 1" in result.stdout
    status = requests.get(f"{server.url}/api/tasks/status/from-stdin", timeout=10).json()
    assert status["status"] == "pending"


def test_submitted_tasks_are_recorded_with_the_name_of_their_file(
        start_server: Callable[..., ServerProcess], project_folder: Path) -> None:
    server = start_server()
    first = write_json(project_folder, "first.json", {"tasks": [{**MUTATION, "task_id": "f1"}]})
    second = write_json(project_folder, "second.json", SIMULATION_FILE)
    result = elastic("submit", str(first), str(second), "--server", server.url, cwd=project_folder)
    assert result.returncode == 0, result.stderr
    assert "submitted 2" in result.stdout
    listed = requests.get(f"{server.url}/api/tasks", timeout=10).json()["tasks"]
    assert {task["task_id"]: task["source"] for task in listed} == {
        "f1": "first.json", "sim_cli_001": "second.json"}


def test_submitting_the_same_task_id_twice_creates_one_task(
        start_server: Callable[..., ServerProcess], project_folder: Path) -> None:
    server = start_server()
    path = write_json(project_folder, "once.json", {"tasks": [{**MUTATION, "task_id": "once"}]})
    for _ in range(2):
        assert elastic("submit", str(path), "--server", server.url,
                       cwd=project_folder).returncode == 0
    assert task_counts(server)["total"] == 1


def test_submit_wait_exits_0_when_all_complete_and_1_when_a_task_is_held(
        start_server: Callable[..., ServerProcess],
        start_worker: Callable[..., subprocess.Popen[bytes]], project_folder: Path) -> None:
    server = start_server()
    start_worker(server.url, worker_type="evolution", worker_id="evolution-wait-1")
    # A simulation worker allowed 1 MB refuses every run: the task is held, not retried.
    start_worker(server.url, worker_type="simulation", worker_id="simulation-tiny-1",
                 env={"ELASTIC_MEMORY_LIMIT_MB": "1"})
    wait_for_worker(server, "evolution-wait-1")
    wait_for_worker(server, "simulation-tiny-1")
    good = write_json(project_folder, "good.json", {"tasks": [{**MUTATION, "task_id": "ok-1"}]})
    completed = elastic("submit", str(good), "--wait", "--server", server.url, cwd=project_folder)
    assert completed.returncode == 0, (completed.stdout, completed.stderr)
    failing = write_json(project_folder, "failing.json", SIMULATION_FILE)
    failed = elastic("submit", str(failing), "--wait", "--server", server.url, cwd=project_folder)
    assert failed.returncode == 1, (failed.stdout, failed.stderr)
    assert "Traceback" not in failed.stderr
    assert "sim_cli_001 held (invalid_input)" in failed.stdout
    assert "elastic release sim_cli_001" in failed.stdout
    status = requests.get(f"{server.url}/api/tasks/status/sim_cli_001", timeout=10).json()
    assert (status["status"], status["held_reason"]) == ("held", "invalid_input")


# -- cancel --------------------------------------------------------------------------------

def test_cancel_of_a_pending_task_prints_cancelled_and_a_second_cancel_is_harmless(
        start_server: Callable[..., ServerProcess], project_folder: Path) -> None:
    server = start_server()
    requests.post(f"{server.url}/api/tasks/submit", json={**MUTATION, "task_id": "to-cancel"},
                  timeout=10)
    first = elastic("cancel", "to-cancel", "--server", server.url, cwd=project_folder)
    assert first.returncode == 0, first.stderr
    assert "cancelled" in first.stdout
    second = elastic("cancel", "to-cancel", "--server", server.url, cwd=project_folder)
    assert second.returncode == 0, second.stderr
    assert "cancelled" in second.stdout
    status = requests.get(f"{server.url}/api/tasks/status/to-cancel", timeout=10).json()
    assert status["status"] == "cancelled"
    assert task_counts(server)["cancelled"] == 1


def test_cancel_of_an_unknown_task_exits_1_with_one_line(
        start_server: Callable[..., ServerProcess], project_folder: Path) -> None:
    server = start_server()
    result = elastic("cancel", "no-such-task", "--server", server.url, cwd=project_folder)
    assert result.returncode == 1
    assert_one_clean_error_line(result, "no-such-task")


# -- configuration errors ---------------------------------------------------------------------

@pytest.mark.parametrize(("env", "key", "source"), [
    ({"ELASTIC_PORT": "abc"}, "port", "ELASTIC_PORT"),
    ({"MAX_TASK_RETRIES": "lots"}, "max_task_retries", "MAX_TASK_RETRIES"),
    ({"ELASTIC_LOG_LEVEL": "LOUD"}, "log_level", "ELASTIC_LOG_LEVEL"),
])
def test_a_bad_config_value_exits_2_with_one_line_naming_key_and_source(
        project_folder: Path, env: dict[str, str], key: str, source: str) -> None:
    result = elastic("serve", "--port", str(free_port()), cwd=project_folder, env=env,
                     timeout=20)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert_one_clean_error_line(result, key, source)


def test_a_bad_value_in_elastic_toml_exits_2_naming_the_key_and_the_file(
        project_folder: Path) -> None:
    config = project_folder / "broken.toml"
    config.write_text('lease_seconds = "soon"\n', encoding="utf-8")
    result = elastic("status", "--config", str(config), "--server", "http://127.0.0.1:1",
                     cwd=project_folder, timeout=20)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert_one_clean_error_line(result, "lease_seconds", "broken.toml")


def test_serve_on_a_reachable_address_without_a_token_exits_2(project_folder: Path) -> None:
    result = elastic("serve", "--host", "0.0.0.0", "--port", str(free_port()),
                     cwd=project_folder, timeout=20)
    assert result.returncode == 2, (result.stdout, result.stderr)
    line = assert_one_clean_error_line(result, "host")
    assert "--insecure" in line and "ELASTIC_TOKEN" in line


@pytest.mark.parametrize("token", ["a", "                    ", "s3cret", "aaaaaaaaaaaaaaaaaaaa",
                                   " Zq4-tR8pL2_vX7mK "])
def test_a_weak_token_is_refused_for_a_reachable_address(token: str) -> None:
    from elastic.server.serve import check_bind_address

    settings = config.load(None, {"host": "0.0.0.0", "token": token, "insecure": True}, environ={})
    with pytest.raises(ConfigError) as caught:
        check_bind_address(settings)
    assert caught.value.exit_code == 2 and "token" in caught.value.message
    check_bind_address(config.load(None, {"host": "127.0.0.1", "token": token}, environ={}))


def test_serve_on_a_reachable_address_with_insecure_starts(project_folder: Path) -> None:
    port = free_port()
    with (project_folder / "insecure.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "elastic", "serve", "--host", "0.0.0.0", "--port", str(port),
             "--insecure", "--db", f"sqlite:///{project_folder}/insecure.db"],
            cwd=project_folder, stdout=log, stderr=subprocess.STDOUT)
    try:
        def healthy() -> bool:
            assert process.poll() is None, (project_folder / "insecure.log").read_text()
            try:
                return requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok
            except requests.RequestException:
                return False
        wait_until(healthy, timeout=30, message="the insecure server")
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()
    assert process.returncode in (0, -15), (project_folder / "insecure.log").read_text()


def test_serve_on_a_port_in_use_fails_with_one_line_not_a_traceback(project_folder: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = elastic("serve", "--port", str(port), cwd=project_folder, timeout=30)
    assert result.returncode in (1, 2), (result.stdout, result.stderr)
    assert_one_clean_error_line(result, str(port))


def test_serve_with_an_unsupported_database_url_exits_2_naming_it(project_folder: Path) -> None:
    result = elastic("serve", "--port", str(free_port()), "--db", "bogus://somewhere",
                     cwd=project_folder, timeout=30)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert_one_clean_error_line(result, "bogus")


def test_serve_with_an_unreachable_postgresql_fails_with_one_line(project_folder: Path) -> None:
    result = elastic("serve", "--port", str(free_port()), "--db",
                     f"postgresql://postgres@127.0.0.1:{free_port()}/elastic",
                     cwd=project_folder, timeout=30)
    assert result.returncode in (1, 2), (result.stdout, result.stderr)
    assert_one_clean_error_line(result)


def test_a_worker_whose_status_port_is_in_use_fails_with_one_line(project_folder: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = elastic("worker", "--type", "evolution", "--id", "busy-port", "--port", str(port),
                         "--server", f"http://127.0.0.1:{free_port()}", cwd=project_folder,
                         timeout=30)
    assert result.returncode in (1, 2), (result.stdout, result.stderr)
    assert_one_clean_error_line(result, str(port))


# -- the token ---------------------------------------------------------------------------------

def test_with_elastic_token_status_works_with_the_token_and_exits_1_naming_it_without(
        start_server: Callable[..., ServerProcess], project_folder: Path) -> None:
    server = start_server(env={"ELASTIC_TOKEN": "s3cret"})
    allowed = elastic("status", "--json", "--server", server.url, cwd=project_folder,
                      env={"ELASTIC_TOKEN": "s3cret"})
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["workers"] == []
    for env in ({}, {"ELASTIC_TOKEN": "wrong"}):
        denied = elastic("status", "--server", server.url, cwd=project_folder, env=env)
        assert denied.returncode == 1, (env, denied.stdout, denied.stderr)
        assert_one_clean_error_line(denied, "token")


def test_a_reachable_server_with_a_token_needs_no_insecure(project_folder: Path) -> None:
    port = free_port()
    result_log = project_folder / "tokened.log"
    with result_log.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "elastic", "serve", "--host", "0.0.0.0", "--port", str(port),
             "--db", f"sqlite:///{project_folder}/tokened.db"],
            cwd=project_folder, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "ELASTIC_TOKEN": "Zq4-tR8pL2_vX7mK"})
        try:
            def healthy() -> bool:
                assert process.poll() is None, result_log.read_text()
                try:
                    return requests.get(f"http://127.0.0.1:{port}/health", timeout=1).ok
                except requests.RequestException:
                    return False
            wait_until(healthy, timeout=30, message="the token-guarded server")
            denied = requests.get(f"http://127.0.0.1:{port}/api/stats", timeout=5)
            assert denied.status_code == 401
        finally:
            process.terminate()
            process.wait(timeout=15)


# -- workers without their provider key, servers out of reach --------------------------------

@pytest.mark.parametrize(("worker_type", "variable"), [("groq", "GROQ_API_KEY"),
                                                       ("gemini", "GEMINI_API_KEY")])
def test_an_llm_worker_without_its_api_key_exits_2_naming_the_variable(
        project_folder: Path, worker_type: str, variable: str) -> None:
    result = elastic("worker", "--type", worker_type, "--id", f"{worker_type}-nokey",
                     "--server", f"http://127.0.0.1:{free_port()}", cwd=project_folder,
                     timeout=30)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert_one_clean_error_line(result, variable)


@pytest.mark.parametrize("args", [("status",), ("status", "--json"), ("cancel", "some-task"),
                                  ("submit", "tasks.json")])
def test_an_unreachable_server_gives_one_clean_error_line_and_exit_1(
        project_folder: Path, args: tuple[str, ...]) -> None:
    write_json(project_folder, "tasks.json", {"tasks": [MUTATION]})
    url = f"http://127.0.0.1:{free_port()}"
    result = elastic(*args, "--server", url, cwd=project_folder, timeout=30)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert_one_clean_error_line(result, "cannot reach", url)


def test_a_missing_task_file_exits_2_naming_it(project_folder: Path) -> None:
    result = elastic("submit", "nowhere.json", "--server", "http://127.0.0.1:1",
                     cwd=project_folder)
    assert result.returncode == 2, (result.stdout, result.stderr)
    line = assert_one_clean_error_line(result, "nowhere.json", "no such file")
    assert "config" not in line


def test_an_error_shows_a_file_name_with_square_brackets_verbatim(project_folder: Path) -> None:
    result = elastic("submit", "x[/]y.json", "--server", "http://127.0.0.1:1",
                     cwd=project_folder)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert_one_clean_error_line(result, "x[/]y.json")


def test_an_error_shows_a_task_id_with_square_brackets_verbatim(
        start_server: Callable[..., ServerProcess], project_folder: Path) -> None:
    server = start_server()
    result = elastic("cancel", "[bold]task", "--server", server.url, cwd=project_folder)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert_one_clean_error_line(result, "'[bold]task'")


# -- waiting on tasks no worker can run, through a restart ------------------------------------

CYTHON_FILE = {"tasks": [{"task_id": "needs-cython", "algorithm": "cython",
                          "parameters": {"num_particles": 20, "num_steps": 5, "seed": 1}}]}


def test_status_and_submit_wait_name_work_no_online_worker_can_run_and_the_wait_ends(
        start_server: Callable[..., ServerProcess],
        start_worker: Callable[..., subprocess.Popen[bytes]], project_folder: Path) -> None:
    server = start_server()
    start_worker(server.url, worker_id="no-cython",
                 env=hiding_modules(project_folder / "site", "elastic.kernels.cython_kernel"))
    wait_for_worker(server, "no-cython")
    path = write_json(project_folder, "cython.json", CYTHON_FILE)
    waited = elastic("submit", str(path), "--wait", "--server", server.url, cwd=project_folder,
                     env={"ELASTIC_UNSERVABLE_GRACE_SECONDS": "1"}, timeout=30)
    assert waited.returncode == 1, (waited.stdout, waited.stderr)
    line = assert_one_clean_error_line(waited, "1 task(s)", "needs-cython",
                                       "no online worker offers algorithm 'cython'")
    assert "still queued" in line
    shown = elastic("status", "--server", server.url, cwd=project_folder,
                    env={"COLUMNS": "200"})
    assert "1 task(s): no online worker offers algorithm 'cython'" in shown.stdout, shown.stdout
    status = requests.get(f"{server.url}/api/tasks/status/needs-cython", timeout=10).json()
    assert status["status"] == "pending"


def test_submit_wait_rides_out_a_restart_of_the_orchestrator_saying_so(
        start_server: Callable[..., ServerProcess],
        start_worker: Callable[..., subprocess.Popen[bytes]], project_folder: Path) -> None:
    server = start_server()
    path = write_json(project_folder, "once.json", {"tasks": [{**MUTATION, "task_id": "later"}]})
    waiting = subprocess.Popen([sys.executable, "-m", "elastic", "submit", str(path), "--wait",
                                "--server", server.url], cwd=project_folder, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "COLUMNS": "80"})
    wait_until(lambda: task_counts(server)["pending"] == 1, message="the task to be queued")
    server.kill()
    server.start()
    start_worker(server.url, worker_type="evolution", worker_id="after-restart")
    output, errors = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, (output, errors)
    assert "cannot reach the orchestrator" in errors and "retrying" in errors, errors
    assert "Traceback" not in errors


# -- the right database ------------------------------------------------------------------------

def test_results_export_and_ingest_act_on_the_servers_database_not_a_local_file(
        start_server: Callable[..., ServerProcess],
        start_worker: Callable[..., subprocess.Popen[bytes]], project_folder: Path) -> None:
    server = start_server(f"sqlite:///{project_folder}/served/orchestrator.db")
    start_worker(server.url, worker_type="evolution", worker_id="evolution-export")
    queues = project_folder / "task_queues"
    queues.mkdir()
    dropped = write_json(queues, "dropped.json", {"tasks": [{**MUTATION, "task_id": "dropped"}]})
    os.utime(dropped, (0, 0))  # settled long ago: ingest takes it at once
    ingested = elastic("ingest", str(queues), "--once", "--server", server.url,
                       cwd=project_folder)
    assert ingested.returncode == 0, (ingested.stdout, ingested.stderr)
    assert server.url in ingested.stderr, ingested.stderr
    wait_until(lambda: task_counts(server)["completed"] == 1, message="the ingested task to run")
    assert not (queues / "dropped.json").exists()

    exported = elastic("results", "export", "--server", server.url, cwd=project_folder)
    assert exported.returncode == 0, exported.stderr
    assert [entry["task_id"] for entry in json.loads(exported.stdout)["task_results"]] == [
        "dropped"]
    assert server.url in exported.stderr
    as_csv = elastic("results", "export", "--format", "csv", "--server", server.url,
                     cwd=project_folder)
    assert [row.split(",")[0] for row in as_csv.stdout.splitlines()] == ["task_id", "dropped"]
    assert not (project_folder / "elastic.db").exists(), "a database was created by accident"


def test_results_export_of_a_database_file_that_does_not_exist_exits_2_and_creates_none(
        project_folder: Path) -> None:
    result = elastic("results", "export", "--db", f"sqlite:///{project_folder}/nowhere.db",
                     cwd=project_folder)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert_one_clean_error_line(result, "nowhere.db")
    assert result.stdout == ""
    assert not (project_folder / "nowhere.db").exists()


# -- a task file edited and sent again ---------------------------------------------------------

def test_an_edited_task_sent_again_is_named_and_replace_runs_its_new_content_keeping_history(
        start_server: Callable[..., ServerProcess],
        start_worker: Callable[..., subprocess.Popen[bytes]], project_folder: Path) -> None:
    server = start_server()
    # A simulation worker allowed 1 MB refuses every run: each attempt fails, not retried.
    start_worker(server.url, worker_id="simulation-tiny", env={"ELASTIC_MEMORY_LIMIT_MB": "1"})
    wait_for_worker(server, "simulation-tiny")
    path = write_json(project_folder, "edited.json", SIMULATION_FILE)
    first = elastic("submit", str(path), "--wait", "--server", server.url, cwd=project_folder)
    assert first.returncode == 1 and "sim_cli_001" in first.stdout, first.stdout
    edited = json.loads(json.dumps(SIMULATION_FILE))
    edited["tasks"][0]["parameters"]["num_particles"] = 64
    write_json(project_folder, "edited.json", edited)

    again = elastic("submit", str(path), "--server", server.url, cwd=project_folder)
    assert again.returncode == 0, again.stderr
    assert "1 task(s) already known with different content: sim_cli_001" in again.stderr
    status = requests.get(f"{server.url}/api/tasks/status/sim_cli_001", timeout=10).json()
    assert status["data"]["parameters"]["num_particles"] == 100

    replaced = elastic("submit", str(path), "--replace", "--wait", "--server", server.url,
                       cwd=project_folder)
    assert "1 task(s) requeued with their new content" in replaced.stderr, replaced.stderr
    status = requests.get(f"{server.url}/api/tasks/status/sim_cli_001", timeout=10).json()
    assert status["data"]["parameters"]["num_particles"] == 64
    assert [attempt["outcome"] for attempt in status["history"]] == ["failed", "failed"]


# -- messages one step short -------------------------------------------------------------------

def test_a_server_url_without_its_scheme_exits_2_saying_add_http(project_folder: Path) -> None:
    result = elastic("status", "--server", "localhost:5611", cwd=project_folder)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert_one_clean_error_line(result, "localhost:5611", "add http://")


def test_a_server_url_with_a_wrong_path_shows_the_path_asked_for(
        start_server: Callable[..., ServerProcess], project_folder: Path) -> None:
    server = start_server()
    result = elastic("status", "--server", f"{server.url}/api", cwd=project_folder)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert_one_clean_error_line(result, "/api/api/")
    assert server_log_lines(project_folder, "serving on") == 1


def server_log_lines(folder: Path, words: str) -> int:
    """How many lines of the server's log say ``words``."""
    return sum(words in line for line in (folder / "server.log").read_text().splitlines())


def test_a_broken_second_task_file_is_named(project_folder: Path) -> None:
    good = write_json(project_folder, "good.json", {"tasks": [MUTATION]})
    bad = write_json(project_folder, "bad.json", {"tasks": [{"type": "evolution_mutation"}]})
    result = elastic("submit", str(good), str(bad), "--server", "http://127.0.0.1:1",
                     cwd=project_folder)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert_one_clean_error_line(result, "bad.json", "task 0")


def test_run_with_an_llm_type_whose_key_is_missing_exits_2_before_starting_workers(
        project_folder: Path) -> None:
    path = write_json(project_folder, "llm.json", {"tasks": [{"type": "agent_action", "data": {
        "messages": [{"role": "user", "content": "hi"}]}}]})
    result = elastic("run", str(path), "--llm-type", "groq", "--workers", "1",
                     cwd=project_folder, timeout=60)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert_one_clean_error_line(result, "GROQ_API_KEY")
    assert not (project_folder / "logs").exists(), "workers were started"


def test_an_llm_worker_checks_its_key_before_importing_its_sdk(project_folder: Path) -> None:
    result = elastic("worker", "--type", "gemini", "--server", "http://127.0.0.1:1",
                     cwd=project_folder, env=hiding_modules(project_folder / "site", "google"))
    assert result.returncode == 2, (result.stdout, result.stderr)
    line = assert_one_clean_error_line(result, "GEMINI_API_KEY")
    assert "pip install" not in line


def test_status_watch_ends_quietly_with_exit_0_on_ctrl_c(
        start_server: Callable[..., ServerProcess], project_folder: Path) -> None:
    server = start_server()
    terminal, its_end = pty.openpty()  # a terminal, as a user watches it
    watching = subprocess.Popen([sys.executable, "-m", "elastic", "status", "--watch",
                                 "--server", server.url], cwd=project_folder,
                                stdout=its_end, stderr=its_end)
    os.close(its_end)
    shown = b""
    try:
        def on_screen(words: bytes) -> bool:
            nonlocal shown
            if select.select([terminal], [], [], 0.1)[0]:
                shown += os.read(terminal, 65536)
            return words in shown
        wait_until(lambda: on_screen(b"workers"), message="the status screen")
        watching.send_signal(signal.SIGINT)
        watching.wait(timeout=20)
        while select.select([terminal], [], [], 0.1)[0]:
            shown += os.read(terminal, 65536)
    except OSError:  # the terminal closed with the process
        pass
    finally:
        os.close(terminal)
    assert watching.returncode == 0, shown.decode(errors="replace")
    assert b"Aborted" not in shown and b"Traceback" not in shown


def test_a_command_on_an_existing_database_prints_no_alembic_lines(project_folder: Path) -> None:
    from elastic.store import open_store

    open_store(f"sqlite:///{project_folder}/here.db").close()
    result = elastic("results", "export", "--db", f"sqlite:///{project_folder}/here.db",
                     cwd=project_folder)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [f"using the database sqlite:///{project_folder}/here.db"]
