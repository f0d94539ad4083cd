"""Fuzz the live HTTP API from its own ``/openapi.json`` with schemathesis.

A real orchestrator (waitress + bottle) runs in a thread on each database; schemathesis
reads the document it serves and sends schema-valid and schema-invalid requests to
every operation. Path parameters are sometimes swapped for the ids of a registered
worker and of seeded tasks, so routes that look objects up reach real ones, not only 404.

Checked on every response: every check schemathesis has (never a 5xx, responses
conforming to the document's schemas, schema-valid data accepted and schema-invalid data
refused...), and every error is JSON ``{"error": "..."}`` (the interface's error
contract). Long polls are capped at 0 s so no case waits; 30 examples per operation keep
a run under a minute per database. Two targeted tests cover what a JSON schema cannot
generate: non-standard JSON numbers (NaN, Infinity) and NUL characters in strings.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from conftest import _pg_admin
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from elastic import config
from elastic.server.serve import Orchestrator

WORKER_ID = "fuzz-worker"
TASK_IDS = ("fuzz-task-1", "fuzz-task-2", "fuzz-task-3", "fuzz-sim-1")
REAL_IDS = {"worker_id": (WORKER_ID,), "task_id": TASK_IDS}
MUTATION = {"type": "evolution_mutation", "data": {"genome": {"a": 1.0}, "mutation_rate": 0.1}}


def _seed(url: str) -> None:
    """A registered worker, a task leased to it, and queued tasks of both file formats."""
    register = requests.post(f"{url}/api/workers/register", timeout=10, json={
        "worker_id": WORKER_ID, "worker_type": "evolution", "capacity": 2})
    assert register.status_code == 200, register.text
    submitted = requests.post(f"{url}/api/tasks/submit", timeout=10, json={"tasks": [
        {**MUTATION, "task_id": task_id, "priority": 5} for task_id in TASK_IDS[:3]]})
    assert submitted.status_code == 200, submitted.text
    simulation = requests.post(f"{url}/api/tasks/submit", timeout=10, json={"tasks": [
        {"task_id": TASK_IDS[3], "algorithm": "python", "priority": "low",
         "parameters": {"num_particles": 100, "num_steps": 2, "seed": 1}}]})
    assert simulation.status_code == 200, simulation.text
    leased = requests.get(f"{url}/api/workers/{WORKER_ID}/tasks", timeout=10)
    assert leased.json()["task"] is not None, leased.text


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live_url(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An in-thread orchestrator on each database, seeded, with long polls capped at 0 s."""
    folder: Path = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    (folder / "task_queues").mkdir()
    database_url = f"sqlite:///{folder}/fuzz.db"
    pg_name = None
    if request.param == "postgresql":
        template = request.getfixturevalue("postgres_template")
        pg_name = f"elastic_fuzz_{uuid.uuid4().hex[:10]}"
        _pg_admin(f'CREATE DATABASE "{pg_name}" TEMPLATE "{template}"')
        database_url = f"postgresql://postgres@127.0.0.1:5432/{pg_name}"
    orchestrator = Orchestrator(config.load(None, {
        "database_url": database_url, "port": 0,
        "task_queues_path": str(folder / "task_queues"), "results_path": str(folder / "results"),
        "max_wait_seconds": 0.0, "max_body_bytes": 256 * 1024}))
    orchestrator.start_in_thread()
    try:
        _seed(orchestrator.url)
        yield orchestrator.url
    finally:
        orchestrator.stop()
        orchestrator.store.engine.dispose()
        if pg_name:
            _pg_admin(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')


# A task's data obeys its executor's rules, some of which JSON Schema cannot state (a
# simulation's cutoff against its box, its cost); the document says so, and a submission of
# schema-valid data may be answered 400 naming the field inside the data: the one place
# where schemathesis's positive-data check is told what to expect, not switched off.
FUZZ_CONFIG = schemathesis.config.SchemathesisConfig.from_dict({"operations": [{
    "include-path": "/api/tasks/submit",
    "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401", "409"]}},
}]})


@pytest.fixture(scope="module")
def api_schema(live_url: str) -> Any:
    """The document the live server serves, with real ids mixed into path parameters."""
    loaded = schemathesis.openapi.from_url(f"{live_url}/openapi.json", config=FUZZ_CONFIG)

    @loaded.hook
    def before_generate_path_parameters(context: Any, strategy: Any) -> Any:
        return st.one_of(strategy, strategy.flatmap(_with_real_ids))

    @loaded.hook
    def before_generate_body(context: Any, strategy: Any) -> Any:
        valid = VALID_BODIES.get(context.operation.path) if context.operation else None
        return st.one_of(strategy, valid) if valid is not None else strategy

    return loaded


# Bodies the server accepts, mixed in so that creating routes also answer 200.
VALID_BODIES = {
    "/api/tasks/submit": st.builds(
        lambda rate, priority, task_id: {
            "type": "evolution_mutation", "priority": priority, "task_id": task_id,
            "data": {"genome": {"a": 1.0}, "mutation_rate": rate}},
        st.floats(0, 1), st.integers(1, 10), st.sampled_from(("fuzz-new-1", *TASK_IDS))),
    "/api/workers/register": st.builds(
        lambda worker_id, worker_type, capacity: {
            "worker_id": worker_id, "worker_type": worker_type, "capacity": capacity},
        st.sampled_from(("fuzz-new-worker", WORKER_ID)),
        st.sampled_from(("simulation", "evolution", "groq")), st.integers(1, 8)),
}


def _with_real_ids(generated: dict[str, Any] | None) -> Any:
    if not generated or not any(name in REAL_IDS for name in generated):
        return st.just(generated)
    return st.fixed_dictionaries({
        name: st.sampled_from(REAL_IDS[name]) if name in REAL_IDS else st.just(value)
        for name, value in generated.items()})


@schemathesis.check
def error_is_json_with_an_error_key(ctx: Any, response: Any, case: Any) -> None:
    """The interface's error contract: every 4xx/5xx is JSON {"error": "<text>"}."""
    if response.status_code < 400:
        return
    content_type = response.headers.get("Content-Type") or response.headers.get("content-type") or ""
    if isinstance(content_type, list):
        content_type = content_type[0] if content_type else ""
    assert content_type.startswith("application/json"), (
        f"{response.status_code} answered with Content-Type {content_type!r}: {response.text[:200]}")
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], (
        f"{response.status_code} body has no 'error' text: {response.text[:200]}")


schema = schemathesis.pytest.from_fixture("api_schema")


# About 40 operations x 30 examples in one pytest test: 60-90 s alone, 160 s seen on a
# machine loaded 15 deep; the limit is there to catch a hang, not to time the server.
@pytest.mark.timeout(420)
@schema.parametrize()
@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_schemathesis_check_passes_on_every_operation(case: Any) -> None:
    # No ``checks=``: every check schemathesis has (5xx, status codes, content types,
    # headers, response schemas, positive and negative data, auth...) plus ours.
    case.call_and_validate(timeout=10, additional_checks=[error_is_json_with_an_error_key])


def _strict_json(text: str) -> object:
    """Parse as RFC 8259 JSON: NaN and Infinity are not numbers there."""
    def refuse(constant: str) -> object:
        raise ValueError(f"non-standard JSON constant {constant}")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_standard_json_numbers_in_a_body_get_400_and_never_come_back_out(
        live_url: str, constant: str) -> None:
    task_id = f"nan-{constant.strip('-').lower()}-{uuid.uuid4().hex[:6]}"
    worker_id = f"nan-worker-{uuid.uuid4().hex[:6]}"
    requests.post(f"{live_url}/api/workers/register", timeout=10,
                  json={"worker_id": worker_id, "worker_type": "evolution", "capacity": 100})
    requests.post(f"{live_url}/api/tasks/submit", timeout=10,
                  json={**MUTATION, "task_id": task_id, "priority": 10})
    # The fuzzing before may have left other urgent tasks pending: take them all, keep ours.
    leases = requests.get(f"{live_url}/api/workers/{worker_id}/tasks", params={"limit": 100},
                          timeout=10).json()["tasks"]
    [lease] = [lease for lease in leases if lease["task_id"] == task_id]
    token = lease["lease_token"]
    bodies = {
        f"/api/workers/{worker_id}/heartbeat":
            f'{{"tasks": {{"{task_id}": {{"lease_token": {token}, "progress": {constant}}}}}}}',
        f"/api/tasks/{task_id}/checkpoint":
            f'{{"worker_id": "{worker_id}", "lease_token": {token}, "checkpoint": {{}}, '
            f'"progress": {constant}}}',
        f"/api/tasks/{task_id}/result":
            f'{{"worker_id": "{worker_id}", "lease_token": {token}, '
            f'"result": {{"success": true, "score": {constant}}}}}',
    }
    problems = []
    for path, body in bodies.items():
        answer = requests.post(f"{live_url}{path}", data=body, timeout=10,
                               headers={"Content-Type": "application/json"})
        if answer.status_code != 400:
            problems.append(f"POST {path} with {constant} answered {answer.status_code}")
    for path in (f"/api/tasks/status/{task_id}", "/tasks", "/api/tasks"):
        try:
            _strict_json(requests.get(f"{live_url}{path}", timeout=10).text)
        except ValueError as exc:
            problems.append(f"GET {path} is not strict JSON: {exc}")
    assert not problems, problems


@pytest.mark.parametrize(("path", "body"), [
    ("/api/tasks/submit", {**MUTATION, "task_id": "nul\x00id"}),
    ("/api/tasks/submit", {**MUTATION, "description": "nul\x00text"}),
    ("/api/workers/register", {"worker_id": "nul\x00worker", "worker_type": "evolution"}),
])
def test_a_nul_character_in_a_string_field_is_no_server_error(
        live_url: str, path: str, body: dict[str, Any]) -> None:
    answer = requests.post(f"{live_url}{path}", json=body, timeout=10)
    assert answer.status_code in (200, 400), (answer.status_code, answer.text)


def test_a_nul_character_in_a_listed_id_gets_400_not_a_server_error(live_url: str) -> None:
    answer = requests.get(f"{live_url}/api/tasks", params={"id": ["ok", "nul\x00id"]}, timeout=10)
    assert answer.status_code == 400, (answer.status_code, answer.text)
    assert "'id'" in answer.json()["error"]


def test_a_nul_character_in_a_path_id_gets_404_not_a_server_error(live_url: str) -> None:
    answer = requests.get(f"{live_url}/api/tasks/status/missing%00task", timeout=10)
    assert answer.status_code == 404, (answer.status_code, answer.text)
    assert "error" in answer.json()

