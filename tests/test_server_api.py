"""The seed-000 HTTP protocol and the error contract, over real HTTP to a real server."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from elastic import config
from elastic.server.serve import Orchestrator
from elastic.store import Store

GENOME_TASK = {"type": "evolution_crossover", "priority": 7,
               "data": {"genome1": {"param1": 0.8, "param2": 100},
                        "genome2": {"param1": 0.6, "param2": 150}}}


@dataclasses.dataclass
class Api:
    """A running orchestrator and its store."""

    url: str
    store: Store

    def post(self, path: str, body: object = None, **kwargs: object) -> requests.Response:
        return requests.post(self.url + path, json=body, timeout=10, **kwargs)

    def get(self, path: str, **kwargs: object) -> requests.Response:
        return requests.get(self.url + path, timeout=10, **kwargs)

    def register(self, worker_id: str = "deepseek-raspi-1", worker_type: str = "deepseek",
                 **extra: object) -> None:
        body = {"worker_id": worker_id, "worker_type": worker_type,
                "capabilities": {"models": ["deepseek-coder:6.7b"], "max_tokens": 2000}, **extra}
        assert self.post("/api/workers/register", body).json() == {
            "status": "registered", "worker_id": worker_id}


def start_api(tmp_path: Path, **overrides: object) -> Iterator[Api]:
    settings = config.load(None, {"database_url": f"sqlite:///{tmp_path}/api.db", "port": 0,
                                  "task_queues_path": str(tmp_path / "task_queues"),
                                  "results_path": str(tmp_path / "results"), **overrides})
    orchestrator = Orchestrator(settings)
    orchestrator.start_in_thread()
    yield Api(orchestrator.url, orchestrator.store)
    orchestrator.stop()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    yield from start_api(tmp_path, max_body_bytes=64 * 1024)


def test_the_seed_flow_from_submit_to_result(api: Api) -> None:
    assert api.get("/health").json() == {"status": "healthy", "workers_online": 0,
                                         "tasks_pending": 0}
    submitted = api.post("/api/tasks/submit", GENOME_TASK).json()
    assert submitted["status"] == "submitted"
    task_id = submitted["task_id"]
    api.register()
    assert api.get("/health").json()["workers_online"] == 1
    task = api.get("/api/workers/deepseek-raspi-1/tasks").json()["task"]
    assert (task["task_id"], task["type"], task["data"]) == (task_id, "evolution_crossover",
                                                              GENOME_TASK["data"])
    status = api.get(f"/api/tasks/status/{task_id}").json()
    assert (status["status"], status["assigned_to"]) == ("assigned", "deepseek-raspi-1")
    workers = api.get("/api/workers/list").json()
    assert workers["total"] == 1 and workers["workers"][0]["status"] == "busy"
    result = {"success": True, "genome": {"param1": 0.7, "param2": 120}, "tokens_used": 500}
    answer = api.post(f"/api/tasks/{task_id}/result",
                      {"worker_id": "deepseek-raspi-1", "result": result})
    assert answer.json() == {"status": "received"}
    status = api.get(f"/api/tasks/status/{task_id}").json()
    assert (status["status"], status["result"]) == ("completed", result)
    worker = api.get("/api/workers/list").json()["workers"][0]
    assert (worker["status"], worker["tasks_completed"]) == ("online", 1)
    assert api.get("/api/workers/deepseek-raspi-1/tasks").json() == {"task": None}
    assert api.post("/api/workers/deepseek-raspi-1/heartbeat").json()["status"] == "ok"
    stats = api.get("/api/stats").json()
    assert stats["tasks"]["completed"] == 1 and stats["workers"]["online"] == 1
    assert api.post("/api/workers/deepseek-raspi-1/unregister").json()["status"] == "unregistered"
    assert api.get("/api/workers/list").json()["workers"][0]["status"] == "offline"


def test_a_late_result_from_an_old_lease_gets_409(api: Api) -> None:
    task_id = api.post("/api/tasks/submit", GENOME_TASK).json()["task_id"]
    api.register("a")
    api.register("b")
    first = api.get("/api/workers/a/tasks").json()["task"]
    api.store.cancel_task(task_id)
    answer = api.post(f"/api/tasks/{task_id}/result",
                      {"worker_id": "a", "lease_token": first["lease_token"],
                       "result": {"success": True}})
    assert answer.status_code == 409
    assert "not current" in answer.json()["error"]
    assert api.get(f"/api/tasks/status/{task_id}").json()["status"] == "cancelled"


def test_seed_004_views_use_that_documents_words(api: Api) -> None:
    api.post("/api/tasks/submit", {"tasks": [
        {"task_id": "sim_001", "algorithm": "python", "priority": "high",
         "parameters": {"num_particles": 16, "num_steps": 5, "seed": 123}}]})
    api.register("w1", "simulation", capabilities={"algorithms": ["python"]})
    api.get("/api/workers/w1/tasks")
    api.store.expire_leases(now=time.time() + 1000)
    tasks = api.get("/tasks").json()
    assert isinstance(tasks, list)
    assert (tasks[0]["task_id"], tasks[0]["status"], tasks[0]["priority"]) == (
        "sim_001", "redistributed", "high")
    workers = api.get("/workers").json()
    assert isinstance(workers, list) and workers[0]["status"] == "inactive"
    summary = api.get("/stats").json()["tasks_summary"]
    assert summary["redistributed"] == 1 and summary["total"] == 1


def test_long_poll_for_a_task_returns_as_soon_as_one_is_submitted(api: Api) -> None:
    api.register()
    threading.Timer(0.3, lambda: api.post("/api/tasks/submit", GENOME_TASK)).start()
    started = time.monotonic()
    task = api.get("/api/workers/deepseek-raspi-1/tasks", params={"wait": 10}).json()["task"]
    assert task is not None
    assert time.monotonic() - started < 3


def test_long_poll_on_status_returns_when_the_result_arrives(api: Api) -> None:
    task_id = api.post("/api/tasks/submit", GENOME_TASK).json()["task_id"]
    api.register()
    lease = api.get("/api/workers/deepseek-raspi-1/tasks").json()["task"]
    body = {"worker_id": "deepseek-raspi-1", "lease_token": lease["lease_token"],
            "result": {"success": True, "genome": {}}}
    threading.Timer(0.3, lambda: api.post(f"/api/tasks/{task_id}/result", body)).start()
    started = time.monotonic()
    status = api.get(f"/api/tasks/status/{task_id}", params={"wait": 10}).json()
    assert status["status"] == "completed"
    assert time.monotonic() - started < 3


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/tasks/submit", {"type": "teleport", "data": {}}, "type"),
    ("/api/tasks/submit", {"type": "evolution_mutation", "data": {"genome": {"a": 1},
                                                                  "mutation_rate": 7}},
     "mutation_rate"),
    ("/api/tasks/submit", {"type": "evolution_mutation", "data": {"genome": {}},
                           "priority": 11}, "priority"),
    ("/api/workers/register", {"worker_type": "groq"}, "worker_id"),
    ("/api/workers/register", {"worker_id": "x", "worker_type": "groq", "capacity": "2"},
     "capacity"),
    ("/api/tasks/whatever/result", {"worker_id": "w"}, "result"),
])
def test_bad_input_gets_400_naming_the_field(api: Api, path: str, body: dict[str, object],
                                             field: str) -> None:
    answer = api.post(path, body)
    assert answer.status_code == 400
    assert answer.headers["Content-Type"] == "application/json"
    assert field in answer.json()["error"]


def test_a_batch_with_one_bad_task_queues_nothing(api: Api) -> None:
    answer = api.post("/api/tasks/submit", {"tasks": [GENOME_TASK, {"type": "nope", "data": {}}]})
    assert answer.status_code == 400
    assert "task 1" in answer.json()["error"]
    assert api.store.count_tasks()["total"] == 0


def test_broken_json_and_wrong_shapes_get_400_not_500(api: Api) -> None:
    broken = requests.post(api.url + "/api/tasks/submit", data=b"{nope",
                           headers={"Content-Type": "application/json"}, timeout=5)
    assert broken.status_code == 400 and "JSON" in broken.json()["error"]
    array = api.post("/api/tasks/submit", [1, 2])
    assert array.status_code == 400 and "object" in array.json()["error"]


def test_unknown_things_get_404_json(api: Api) -> None:
    for answer in (api.get("/api/tasks/status/missing"), api.get("/no/such/route"),
                   api.post("/api/workers/ghost/heartbeat"), api.get("/api/workers/ghost/tasks")):
        assert answer.status_code == 404
        assert "error" in answer.json()


def test_wrong_method_gets_405_json(api: Api) -> None:
    answer = api.get("/api/tasks/submit")
    assert answer.status_code == 405 and "error" in answer.json()


def test_a_body_over_the_limit_gets_413(api: Api) -> None:
    big = {"type": "evolution_mutation", "data": {"genome": {"x": "a" * 100_000}}}
    answer = api.post("/api/tasks/submit", big)
    assert answer.status_code == 413
    assert "max_body_bytes" in answer.json()["error"]
    assert api.store.count_tasks()["total"] == 0


def test_a_token_guards_everything_but_health(tmp_path: Path) -> None:
    api = next(start_api(tmp_path, token="s3cret"))
    assert api.get("/health").status_code == 200
    denied = api.post("/api/tasks/submit", GENOME_TASK)
    assert denied.status_code == 401 and "token" in denied.json()["error"]
    assert api.get("/tasks", headers={"Authorization": "Bearer wrong"}).status_code == 401
    allowed = api.post("/api/tasks/submit", GENOME_TASK,
                       headers={"Authorization": "Bearer s3cret"})
    assert allowed.status_code == 200


def test_openapi_describes_every_route(api: Api) -> None:
    document = api.get("/openapi.json").json()
    described = {(path, method) for path, item in document["paths"].items() for method in item}
    from elastic.server.app import make_app

    app = make_app(api.store, config.load(None, {"database_url": "sqlite://"}))
    served = {(route.rule.replace("<", "{").replace(">", "}"), route.method.lower())
              for route in app.routes}
    assert served == described


def test_submitting_a_known_task_id_again_is_idempotent(api: Api) -> None:
    task = {**GENOME_TASK, "task_id": "darwin-gen-1"}
    first = api.post("/api/tasks/submit", task).json()
    again = api.post("/api/tasks/submit", task).json()
    assert (first["task_id"], first["created"]) == ("darwin-gen-1", True)
    assert (again["task_id"], again["created"], again["status"]) == ("darwin-gen-1", False,
                                                                     "submitted")
    batch = api.post("/api/tasks/submit", {"tasks": [task, {**task, "task_id": "x"}]}).json()
    assert (batch["created"], batch["duplicates"]) == (1, 1)
    assert api.store.count_tasks()["total"] == 2


def test_a_submit_names_its_source_or_is_recorded_as_api(api: Api) -> None:
    api.post("/api/tasks/submit", {**GENOME_TASK, "task_id": "plain"})
    api.post("/api/tasks/submit", {"source": "batch.json", "tasks": [
        {**GENOME_TASK, "task_id": "filed"}]})
    refused = api.post("/api/tasks/submit", {**GENOME_TASK, "source": ""})
    assert api.store.get_task("plain").source == "api"
    assert api.store.get_task("filed").source == "batch.json"
    assert refused.status_code == 400 and "'source'" in refused.json()["error"]


def test_the_task_list_filters_by_id_and_state(api: Api) -> None:
    for task_id in ("a", "b", "c"):
        api.post("/api/tasks/submit", {**GENOME_TASK, "task_id": task_id})
    api.store.cancel_task("b")
    chosen = api.get("/api/tasks", params={"id": ["a", "b", "nope"]}).json()["tasks"]
    assert sorted(task["task_id"] for task in chosen) == ["a", "b"]
    cancelled = api.get("/api/tasks", params={"status": "cancelled"}).json()["tasks"]
    assert [task["task_id"] for task in cancelled] == ["b"]
    both = api.get("/api/tasks", params={"id": ["a", "b"], "status": "pending"}).json()["tasks"]
    assert [task["task_id"] for task in both] == ["a"]


@pytest.mark.parametrize(("params", "name"), [
    ({"status": "done"}, "status"), ({"limit": "2.7"}, "limit"), ({"limit": "0"}, "limit"),
    ({"id": [str(n) for n in range(501)]}, "id"),
])
def test_a_bad_task_list_query_gets_400_naming_the_parameter(
        api: Api, params: dict[str, object], name: str) -> None:
    answer = api.get("/api/tasks", params=params)
    assert answer.status_code == 400
    assert f"'{name}'" in answer.json()["error"]


def test_results_come_a_page_at_a_time_in_the_order_the_tasks_ended(api: Api) -> None:
    for number in range(5):
        api.post("/api/tasks/submit", {**GENOME_TASK, "task_id": f"r{number}"})
    api.register("w", "evolution", capacity=5)
    leases = api.get("/api/workers/w/tasks", params={"limit": 5}).json()["tasks"]
    for lease in sorted(leases, key=lambda lease: lease["task_id"], reverse=True):
        api.post(f"/api/tasks/{lease['task_id']}/result", {
            "worker_id": "w", "lease_token": lease["lease_token"],
            "result": {"success": True, "genome": {"param1": 0.7}}})
    seen, params = [], {"limit": 2}
    while True:
        page = api.get("/api/results", params=params).json()
        seen += [entry["task_id"] for entry in page["task_results"]]
        if page["next"] is None:
            break
        params["after"] = page["next"]
    assert seen == ["r4", "r3", "r2", "r1", "r0"]
    bad = api.get("/api/results", params={"after": "yesterday"})
    assert bad.status_code == 400 and "'after'" in bad.json()["error"]
