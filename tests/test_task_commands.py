"""Finding and retrying tasks without curl: ``elastic tasks``, ``elastic task ID``,
``elastic retry`` and ``POST /api/tasks/<id>/retry``, against a real ``elastic serve``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import requests
from conftest import ServerProcess
from test_cli import MUTATION, assert_one_clean_error_line, elastic


def submit(server: ServerProcess, *task_ids: str) -> None:
    answer = requests.post(f"{server.url}/api/tasks/submit", timeout=10, json={
        "tasks": [{**MUTATION, "task_id": task_id} for task_id in task_ids]})
    assert answer.status_code == 200, answer.text


def test_retry_of_a_cancelled_task_requeues_it_and_of_a_pending_one_is_409_naming_the_state(
        start_server: Callable[..., ServerProcess]) -> None:
    server = start_server()
    submit(server, "cancelled", "waiting")
    requests.post(f"{server.url}/api/tasks/cancelled/cancel", timeout=10).raise_for_status()
    retried = requests.post(f"{server.url}/api/tasks/cancelled/retry", timeout=10)
    assert retried.json() == {"task_id": "cancelled", "status": "pending"}
    refused = requests.post(f"{server.url}/api/tasks/waiting/retry", timeout=10)
    assert refused.status_code == 409
    assert "pending" in refused.json()["error"]
    assert requests.post(f"{server.url}/api/tasks/nobody/retry", timeout=10).status_code == 404


def test_the_task_list_filters_by_type_and_pages_with_next(
        start_server: Callable[..., ServerProcess]) -> None:
    server = start_server()
    submit(server, "m1", "m2", "m3")
    first = requests.get(f"{server.url}/api/tasks", timeout=10,
                         params={"type": "evolution_mutation", "limit": 2}).json()
    assert [task["task_id"] for task in first["tasks"]] == ["m3", "m2"]
    rest = requests.get(f"{server.url}/api/tasks", timeout=10, params={
        "type": "evolution_mutation", "limit": 2, "before": first["next"]}).json()
    assert ([task["task_id"] for task in rest["tasks"]], rest["next"]) == (["m1"], None)
    none = requests.get(f"{server.url}/api/tasks", params={"type": "simulation"}, timeout=10)
    assert none.json()["tasks"] == []


def test_elastic_tasks_task_and_retry_find_and_requeue_a_cancelled_task(
        start_server: Callable[..., ServerProcess], project_folder: Path) -> None:
    server = start_server()
    submit(server, "first-task", "second-task")
    elastic("cancel", "second-task", "--server", server.url, cwd=project_folder)
    listed = elastic("tasks", "--status", "cancelled", "--json", "--server", server.url,
                     cwd=project_folder)
    assert listed.returncode == 0, listed.stderr
    assert [task["task_id"] for task in json.loads(listed.stdout)["tasks"]] == ["second-task"]
    table = elastic("tasks", "--type", "evolution_mutation", "--server", server.url,
                    cwd=project_folder)
    assert "first-task" in table.stdout and "cancelled" in table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) <= 80
    shown = elastic("task", "second-task", "--server", server.url, cwd=project_folder)
    assert shown.returncode == 0, shown.stderr
    assert "mutation_rate" in shown.stdout and "cancelled" in shown.stdout
    retried = elastic("retry", "second-task", "--server", server.url, cwd=project_folder)
    assert retried.returncode == 0, retried.stderr
    assert "second-task: pending" in retried.stdout
    again = elastic("retry", "second-task", "--server", server.url, cwd=project_folder)
    assert again.returncode == 1
    assert_one_clean_error_line(again, "second-task", "pending")


def test_elastic_retry_needs_an_id_or_failed_and_failed_with_none_says_so(
        start_server: Callable[..., ServerProcess], project_folder: Path) -> None:
    server = start_server()
    neither = elastic("retry", "--server", server.url, cwd=project_folder)
    assert neither.returncode == 2
    assert_one_clean_error_line(neither, "--failed")
    none = elastic("retry", "--failed", "--server", server.url, cwd=project_folder)
    assert none.returncode == 0, none.stderr
    assert "no failed task" in none.stdout
