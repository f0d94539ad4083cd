"""The dashboard over real HTTP: its page and files, its JSON routes, retry, and the
cross-site check on state-changing requests (an orchestrator in a thread, SQLite)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import ServerProcess

TOKEN = "dashboard-api-test-token-81c2"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MUTATION = {"type": "evolution_mutation", "data": {"genome": {"a": 1.0}, "mutation_rate": 0.1}}


@pytest.fixture
def url(start_orchestrator: Callable[..., Any]) -> str:
    """An orchestrator with a token, no retries (one failed attempt fails a task), five
    queued tasks (t0..t4, priorities 3, 4, 5, 3, 4) and one failed (t2, by worker w1)."""
    base = start_orchestrator(token=TOKEN, max_task_retries=0).url
    submitted = requests.post(f"{base}/api/tasks/submit", headers=AUTH, timeout=10, json={
        "tasks": [{**MUTATION, "task_id": f"t{i}", "priority": 3 + i % 3} for i in range(5)]})
    assert submitted.status_code == 200, submitted.text
    _fail(base, "t2")
    return base


def _fail(base: str, task_id: str) -> None:
    """Worker w1 leases the most urgent task (``task_id``) and reports a failure."""
    requests.post(f"{base}/api/workers/register", headers=AUTH, timeout=10,
                  json={"worker_id": "w1", "worker_type": "evolution"}).raise_for_status()
    lease = requests.get(f"{base}/api/workers/w1/tasks", headers=AUTH, timeout=10).json()["task"]
    assert lease["task_id"] == task_id
    requests.post(f"{base}/api/tasks/{task_id}/result", headers=AUTH, timeout=10, json={
        "worker_id": "w1", "lease_token": lease["lease_token"],
        "result": {"success": False, "error": "<b>boom</b>"}}).raise_for_status()


def _get(base: str, path: str) -> Any:
    answer = requests.get(f"{base}{path}", headers=AUTH, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.mark.parametrize("path", ["/", "/dashboard"])
def test_the_dashboard_page_is_served_without_the_token_and_loads_only_its_own_files(
        url: str, path: str) -> None:
    page = requests.get(f"{url}{path}", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert '<script src="/dashboard/static/app.js">' in page.text
    assert "http" not in page.text.replace("http://www.w3.org", "")  # no CDN
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        asset = requests.get(f"{url}/dashboard/static/{name}", timeout=10)
        assert asset.status_code == 200 and kind in asset.headers["Content-Type"]


def test_an_unknown_dashboard_file_is_a_json_404(url: str) -> None:
    answer = requests.get(f"{url}/dashboard/static/missing.js", timeout=10)
    assert answer.status_code == 404
    assert "error" in answer.json()


@pytest.mark.parametrize("path", ["/api/dashboard/queue", "/api/dashboard/workers",
                                  "/api/dashboard/series", "/api/dashboard/failures"])
def test_the_dashboard_data_needs_the_token(url: str, path: str) -> None:
    assert requests.get(f"{url}{path}", timeout=10).status_code == 401


def test_the_queue_shows_counts_by_state_and_priority_and_the_oldest_wait(url: str) -> None:
    queue = _get(url, "/api/dashboard/queue")
    assert (queue["by_status"]["pending"], queue["by_status"]["failed"]) == (4, 1)
    by_priority = {(c["status"], c["priority"]): c["count"] for c in queue["by_priority"]}
    assert by_priority == {("pending", 3): 2, ("pending", 4): 2, ("failed", 5): 1}
    assert queue["oldest_pending_age_seconds"] >= 0
    assert queue["unservable"] == []  # w1 (evolution) is online


def test_workers_show_what_they_offer_and_the_tasks_they_run_with_progress(url: str) -> None:
    lease = requests.get(f"{url}/api/workers/w1/tasks", headers=AUTH, timeout=10).json()["task"]
    requests.post(f"{url}/api/workers/w1/heartbeat", headers=AUTH, timeout=10, json={
        "tasks": {lease["task_id"]: {"lease_token": lease["lease_token"], "progress": 0.25}}})
    [worker] = _get(url, "/api/dashboard/workers")["workers"]
    assert worker["worker_id"] == "w1" and "evolution_mutation" in worker["task_types"]
    assert [(t["task_id"], t["progress"]) for t in worker["running"]] == [(lease["task_id"], 0.25)]
    assert worker["success_rate"] == 0.0


def test_recent_failures_carry_each_attempts_error(url: str) -> None:
    [failure] = _get(url, "/api/dashboard/failures?limit=5")["failures"]
    assert (failure["task_id"], failure["error"]) == ("t2", "<b>boom</b>")
    assert [(a["worker_id"], a["outcome"], a["error"]) for a in failure["history"]] == [
        ("w1", "failed", "<b>boom</b>")]


def test_the_series_has_a_sample_with_the_queue_and_what_ended(url: str) -> None:
    series = _get(url, "/api/dashboard/series")
    assert series["interval_seconds"] > 0
    last = series["samples"][-1]
    assert (last["pending"], last["running"]) == (4, 0)
    assert last["completed"] + last["failed"] <= 1 and last["ended_per_minute"] >= 0


def test_the_task_list_pages_with_next_and_filters_by_state_and_type(url: str) -> None:
    first = _get(url, "/api/tasks?limit=2")
    assert [t["task_id"] for t in first["tasks"]] == ["t4", "t3"] and first["next"]
    second = _get(url, f"/api/tasks?limit=2&before={first['next']}")
    assert [t["task_id"] for t in second["tasks"]] == ["t2", "t1"]
    last = _get(url, f"/api/tasks?limit=2&before={second['next']}")
    assert ([t["task_id"] for t in last["tasks"]], last["next"]) == (["t0"], None)
    failed = _get(url, "/api/tasks?status=failed&type=evolution_mutation")
    assert [t["task_id"] for t in failed["tasks"]] == ["t2"]
    assert _get(url, "/api/tasks?type=simulation")["tasks"] == []


@pytest.mark.parametrize(("query", "field"), [
    ("/api/tasks?before=-1", "before"), ("/api/tasks?before=x", "before"),
    ("/api/tasks?status=lost", "status"), ("/api/tasks?limit=0", "limit"),
    ("/api/dashboard/failures?limit=0", "limit"), ("/api/dashboard/failures?limit=201", "limit")])
def test_a_bad_query_is_a_400_naming_the_parameter(url: str, query: str, field: str) -> None:
    answer = requests.get(f"{url}{query}", headers=AUTH, timeout=10)
    assert answer.status_code == 400
    assert f"'{field}'" in answer.json()["error"]


def test_retry_requeues_a_failed_task_and_keeps_its_history(url: str) -> None:
    answer = requests.post(f"{url}/api/tasks/t2/retry", headers=AUTH, timeout=10)
    assert answer.json() == {"task_id": "t2", "status": "pending"}
    status = _get(url, "/api/tasks/status/t2")
    assert (status["status"], status["error"], len(status["history"])) == ("pending", None, 1)


def test_retry_of_a_pending_task_is_a_409_naming_its_state(url: str) -> None:
    answer = requests.post(f"{url}/api/tasks/t0/retry", headers=AUTH, timeout=10)
    assert answer.status_code == 409
    assert "is pending" in answer.json()["error"]
    assert requests.post(f"{url}/api/tasks/nope/retry", headers=AUTH, timeout=10).status_code == 404


def test_a_state_change_from_another_sites_page_is_refused_with_403(url: str) -> None:
    hostile = requests.post(f"{url}/api/tasks/t0/cancel", timeout=10,
                            headers={**AUTH, "Origin": "http://evil.example"})
    assert hostile.status_code == 403
    assert "Origin" in hostile.json()["error"]
    assert _get(url, "/api/tasks/status/t0")["status"] == "pending"
    own_page = requests.post(f"{url}/api/tasks/t0/cancel", timeout=10,
                             headers={**AUTH, "Origin": url})
    assert own_page.json()["status"] == "cancelled"
    program = requests.post(f"{url}/api/tasks/t0/retry", headers=AUTH, timeout=10)
    assert program.json()["status"] == "pending"  # no Origin: a program, not a page


def test_a_read_from_another_origin_is_answered_but_not_shared_without_cors(url: str) -> None:
    answer = requests.get(f"{url}/api/dashboard/queue", timeout=10,
                          headers={**AUTH, "Origin": "http://evil.example"})
    assert answer.status_code == 200
    assert "Access-Control-Allow-Origin" not in answer.headers


def test_elastic_serve_prints_the_dashboards_address(
        start_server: Callable[..., ServerProcess], project_folder: Path) -> None:
    server = start_server()
    log = (project_folder / "server.log").read_text()
    assert f"dashboard: {server.url}/" in log
    assert requests.get(f"{server.url}/", timeout=10).headers["Content-Type"].startswith("text/html")
