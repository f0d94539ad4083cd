"""The dashboard as a person sees it: a real headless Chromium against a real orchestrator.

The page asks for the token, shows a task the test submitted, follows it to ``failed``
without a reload, and its retry button puts it back in the queue; a simulation's page
draws its series and particles. Screenshots are saved in each test's tmp folder.
Without chromium the tests skip locally and fail in CI (``.ci/run`` installs it).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
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


def _simulation_result() -> dict[str, Any]:
    """A finished simulation's result with what the kernels record when asked: sampled
    series and a float32 snapshot of 50 particles in a box of side 10."""
    steps = list(range(0, 101, 10))
    positions = np.linspace(0.5, 9.5, 100, dtype="<f4")
    speeds = np.linspace(0.1, 2.0, 50, dtype="<f4")
    return {"success": True, "box_length": 10.0, "series": {
        "step": steps, "kinetic_energy": [50 + i for i in range(11)],
        "potential_energy": [-80 - i for i in range(11)], "total_energy": [-30.0] * 11,
        "temperature": [1.0 + 0.01 * i for i in range(11)]},
        "snapshots": [{"step": 100, "encoding": "float32-le-base64",
                       "positions": base64.b64encode(positions.tobytes()).decode(),
                       "speeds": base64.b64encode(speeds.tobytes()).decode()}]}


def test_a_simulations_page_draws_its_energy_temperature_and_particles(
        start_orchestrator: Callable[..., Any], chromium: HeadlessChromium,
        tmp_path: Path) -> None:
    url = start_orchestrator().url
    requests.post(f"{url}/api/tasks/submit", timeout=10, json={
        "task_id": "sim-page", "algorithm": "numpy",
        "parameters": {"num_particles": 50, "num_steps": 100}}).raise_for_status()
    requests.post(f"{url}/api/workers/register", timeout=10, json={
        "worker_id": "sim-worker", "worker_type": "simulation",
        "capabilities": {"algorithms": ["numpy"]}}).raise_for_status()
    lease = requests.get(f"{url}/api/workers/sim-worker/tasks", timeout=10).json()["task"]
    requests.post(f"{url}/api/tasks/sim-page/result", timeout=10, json={
        "worker_id": "sim-worker", "lease_token": lease["lease_token"],
        "result": _simulation_result()}).raise_for_status()

    chromium.navigate(f"{url}/#/task/sim-page")
    figures = "document.querySelectorAll('#task-simulation figure')"
    wait_until(lambda: chromium.evaluate(f"{figures}.length") == 3, timeout=30,
               message="the energy, temperature and particle figures")
    captions = chromium.evaluate(f"Array.from({figures}, f => f.querySelector('figcaption').innerText)")
    assert captions == ["Energy against step", "Temperature against step",
                        "Particles at step 100 (colour: speed)"]
    assert chromium.evaluate("document.querySelectorAll('#task-simulation polyline').length") == 4
    painted = chromium.evaluate(
        "(() => { const c = document.querySelector('#task-simulation canvas');"
        " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] !== 255 || d[i + 1] !== 255) n++;"
        " return n; })()")
    assert painted > 50  # the particles are drawn, not only the white box
    chromium.screenshot(tmp_path / "dashboard-simulation.png")
