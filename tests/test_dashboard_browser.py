"""The dashboard as a person sees it: a real headless Chromium against a real orchestrator.

The page asks for the token, shows a task the test submitted, follows it to ``failed``
without a reload, and its retry button puts it back in the queue; screenshots are saved
in the test's tmp folder. Without chromium the test skips locally and fails in CI
(``.ci/run`` installs it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import wait_until
from headless_chromium import HeadlessChromium, find_chromium, is_ci

TOKEN = "dashboard-browser-test-token-4f9a27"
TASK_ID = "browser-task"
HOSTILE_DESCRIPTION = '<img src=x onerror="window.pwned = 1">shown as text'
ROW = f"document.querySelector('tr[data-task-id=\"{TASK_ID}\"]')"


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[HeadlessChromium]:
    """A headless Chromium with one page; a missing binary fails in CI, skips elsewhere."""
    binary = find_chromium()
    if binary is None:
        message = "chromium is not installed (apt-get install chromium)"
        if is_ci():
            pytest.fail(message)
        pytest.skip(message)
    browser = HeadlessChromium(binary, tmp_path / "chromium-profile")
    yield browser
    browser.close()


def _row_text(browser: HeadlessChromium) -> str:
    return browser.evaluate(f"{ROW} ? {ROW}.innerText : ''") or ""


def _fail_the_task(session: requests.Session, url: str) -> None:
    """A hand-driven worker takes the task and reports a failure (no retries are left)."""
    registered = session.post(f"{url}/api/workers/register", timeout=10, json={
        "worker_id": "browser-worker", "worker_type": "evolution"})
    assert registered.status_code == 200, registered.text
    lease = session.get(f"{url}/api/workers/browser-worker/tasks", timeout=10).json()["task"]
    assert lease["task_id"] == TASK_ID
    reported = session.post(f"{url}/api/tasks/{TASK_ID}/result", timeout=10, json={
        "worker_id": "browser-worker", "lease_token": lease["lease_token"],
        "result": {"success": False, "error": "genome out of bounds"}})
    assert reported.status_code == 200, reported.text


def test_the_dashboard_follows_a_task_live_and_its_retry_button_requeues_it(
        start_orchestrator: Callable[..., Any], chromium: HeadlessChromium,
        tmp_path: Path) -> None:
    url = start_orchestrator(token=TOKEN, max_task_retries=0).url
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {TOKEN}"
    submitted = session.post(f"{url}/api/tasks/submit", timeout=10, json={
        "task_id": TASK_ID, "type": "evolution_mutation", "description": HOSTILE_DESCRIPTION,
        "data": {"genome": {"a": 0.5}, "mutation_rate": 0.1}, "priority": 7})
    assert submitted.status_code == 200, submitted.text

    chromium.navigate(f"{url}/")
    wait_until(lambda: chromium.evaluate("!document.getElementById('token-form').hidden"),
               timeout=30, message="the page to ask for the token")
    chromium.evaluate(f"document.getElementById('token-input').value = {json.dumps(TOKEN)};"
                      "document.getElementById('token-form').requestSubmit(); true")
    wait_until(lambda: "pending" in _row_text(chromium), timeout=30,
               message="the submitted task to show as pending")
    chromium.evaluate("window.sameDocument = 'still here'; true")

    _fail_the_task(session, url)
    wait_until(lambda: "failed" in _row_text(chromium), timeout=30,
               message="the task to show as failed without a reload")
    assert chromium.evaluate("window.sameDocument") == "still here"
    assert HOSTILE_DESCRIPTION in _row_text(chromium)
    assert chromium.evaluate("window.pwned === undefined")
    chromium.screenshot(tmp_path / "dashboard-overview.png")

    chromium.evaluate(f"{ROW}.querySelector('a').click(); true")
    wait_until(lambda: chromium.evaluate("!document.getElementById('retry-button').disabled"),
               timeout=30, message="the task page with its retry button")
    chromium.evaluate("document.getElementById('retry-button').click(); true")
    wait_until(lambda: session.get(f"{url}/api/tasks/status/{TASK_ID}", timeout=10)
               .json()["status"] == "pending", timeout=30, message="the retry to requeue it")
    history = session.get(f"{url}/api/tasks/status/{TASK_ID}", timeout=10).json()["history"]
    assert [(a["outcome"], a["error"]) for a in history] == [("failed", "genome out of bounds")]
    wait_until(lambda: "pending" in chromium.evaluate(
        "document.getElementById('task-fields').innerText"), timeout=30,
               message="the task page to show it pending again")
    assert chromium.evaluate("window.sameDocument") == "still here"
    shot = chromium.screenshot(tmp_path / "dashboard-task.png")
    assert shot.read_bytes().startswith(b"\x89PNG")
