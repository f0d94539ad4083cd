"""LLM workers end to end: real ``elastic serve`` and ``elastic worker --type deepseek|groq|gemini``
processes, the real SDKs over real HTTP to loopback stand-ins, and the provider budget the
orchestrator shares between workers.

The first tests drive the shared budget in-process (its routes on a bare bottle app and
``SharedLimiter``s over real HTTP); the rest start processes. Every wait has a deadline.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import FAST_CONFIG, ServerProcess, free_port, wait_until
from standins.gemini_standin import PER_MINUTE_QUOTA, GeminiStandIn, quota_error
from standins.groq_standin import GroqStandIn, error_body
from standins.ollama_standin import OllamaStandIn
from standins.server import serve_app

from elastic.config import Config
from elastic.providers.limits import ProviderLimiter, key_fingerprint
from elastic.providers.shared_limits import SharedBudgetExhausted, SharedLimiter
from elastic.server import budgets
from elastic.store import open_store
from elastic.transport import Transport
from elastic.web import json_app

Starter = Callable[..., ServerProcess]
WorkerStarter = Callable[..., subprocess.Popen[bytes]]

GROQ_KEY = "gsk_standin_good_key_0123456789abcdef"
GEMINI_KEY = "AIzaSy-standin-good-key-0123456789abcd"
FAKE_KEY = "gsk_FAKE_key_that_must_never_be_written_5d1c9e"
SYSTEM = "Be brief."
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Say hello."}]
PROMPT = "Write a function add(a, b) that returns the sum."
CODE = "def add(a, b):\n    return a + b"
CODE_ANSWER = f"Here it is:\n\n```python\n{CODE}\n```\n"
MODELS = {"deepseek": "deepseek-coder:6.7b", "groq": "llama-3.3-70b-versatile",
          "gemini": "gemini-2.0-flash"}
PROVIDER_OF = {"deepseek": "ollama", "groq": "groq", "gemini": "gemini"}
RATE_LIMITED = error_body("Rate limit reached for model `llama-3.3-70b-versatile` on requests "
                          "per minute (RPM): Limit 30, Used 30, Requested 1.", "requests",
                          "rate_limit_exceeded")


# -- stand-ins and helpers --------------------------------------------------------------------

class TimedGroqStandIn(GroqStandIn):
    """A Groq stand-in that also notes when each request arrived (monotonic seconds)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.arrivals: list[float] = []

    def answer(self, route_model: str | None = None) -> Any:
        """Note the arrival, then answer as Groq."""
        self.arrivals.append(time.monotonic())
        return super().answer(route_model)


class TimedGeminiStandIn(GeminiStandIn):
    """A Gemini stand-in that also notes when each request arrived (monotonic seconds)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.arrivals: list[float] = []

    def answer(self, route_model: str | None = None) -> Any:
        """Note the arrival, then answer as Gemini."""
        self.arrivals.append(time.monotonic())
        return super().answer(route_model)


@pytest.fixture
def ollama() -> Iterator[OllamaStandIn]:
    """An Ollama stand-in on loopback."""
    with OllamaStandIn().serving() as running:
        yield running


@pytest.fixture
def groq() -> Iterator[TimedGroqStandIn]:
    """A Groq stand-in on loopback that accepts only ``GROQ_KEY``."""
    with TimedGroqStandIn(api_key=GROQ_KEY).serving() as running:
        yield running


@pytest.fixture
def gemini() -> Iterator[TimedGeminiStandIn]:
    """A Gemini stand-in on loopback that accepts only ``GEMINI_KEY``."""
    with TimedGeminiStandIn(api_key=GEMINI_KEY).serving() as running:
        yield running


def provider_env(worker_type: str, stand_in: Any, *, key: str | None = None) -> dict[str, str]:
    """The environment that points a worker of ``worker_type`` at ``stand_in``."""
    if worker_type == "deepseek":
        return {"OLLAMA_HOST": stand_in.base_url}
    if worker_type == "groq":
        return {"GROQ_BASE_URL": stand_in.base_url, "GROQ_API_KEY": key or GROQ_KEY}
    return {"GEMINI_BASE_URL": stand_in.base_url, "GEMINI_API_KEY": key or GEMINI_KEY}


def start_llm_worker(start_worker: WorkerStarter, server: ServerProcess, worker_type: str,
                     stand_in: Any, *, worker_id: str | None = None, model: str | None = None,
                     key: str | None = None) -> str:
    """Start an LLM worker on ``stand_in``; ``model`` limits it to tasks for that model."""
    worker_id = worker_id or f"{worker_type}-worker"
    extra = ["--capabilities", json.dumps({"models": [model]})] if model else []
    start_worker(server.url, worker_type=worker_type, worker_id=worker_id, extra=extra,
                 env=provider_env(worker_type, stand_in, key=key))
    return worker_id


def agent_action(task_id: str, *, model: str | None = None, priority: int = 5) -> dict[str, Any]:
    """An agent_action task (temperature 0.3)."""
    data: dict[str, Any] = {"messages": MESSAGES, "temperature": 0.3}
    if model:
        data["model"] = model
    return {"task_id": task_id, "type": "agent_action", "data": data, "priority": priority}


def code_generation(task_id: str, *, model: str, priority: int = 5) -> dict[str, Any]:
    """A code_generation task for Python (temperature 0.3)."""
    return {"task_id": task_id, "type": "code_generation", "priority": priority,
            "data": {"prompt": PROMPT, "language": "python", "model": model, "temperature": 0.3}}


def submit(url: str, tasks: list[dict[str, Any]]) -> list[str]:
    """Submit a batch; the task ids."""
    answer = requests.post(f"{url}/api/tasks/submit", json={"tasks": tasks}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["task_ids"]


def task_status(url: str, task_id: str) -> dict[str, Any]:
    """``GET /api/tasks/status/<id>``."""
    return requests.get(f"{url}/api/tasks/status/{task_id}", timeout=10).json()


def wait_for_status(url: str, task_ids: list[str], status: str, *,
                    timeout: float = 20.0) -> dict[str, dict[str, Any]]:
    """Wait until every task has ``status``; their status answers."""
    def reached() -> dict[str, dict[str, Any]] | None:
        current = {tid: task_status(url, tid) for tid in task_ids}
        return current if all(s["status"] == status for s in current.values()) else None
    return wait_until(reached, timeout=timeout, message=f"{task_ids} to be {status}")


def holds_for(seconds: float, predicate: Callable[[], bool]) -> bool:
    """Whether ``predicate`` stays true for ``seconds`` (checked every 0.1 s)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not predicate():
            return False
        time.sleep(0.1)
    return predicate()


def worker_info(url: str, worker_id: str) -> dict[str, Any]:
    """The ``info.provider`` a worker last reported in ``/api/workers/list``."""
    workers = requests.get(f"{url}/api/workers/list", timeout=10).json()["workers"]
    found = [w for w in workers if w["worker_id"] == worker_id]
    return ((found[0].get("info") or {}).get("provider") or {}) if found else {}


def provider_budgets(url: str) -> dict[str, dict[str, Any]]:
    """``GET /api/providers``."""
    answer = requests.get(f"{url}/api/providers", timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["providers"]


# -- the shared budget, in-process --------------------------------------------------------------

@pytest.fixture
def budget_url(tmp_path: Path) -> Iterator[str]:
    """The budget routes alone on a loopback bottle app, with ``ollama`` at 3 requests/minute."""
    from elastic.server.identity import WorkerIdentity

    settings = Config(providers={"ollama": {"limits": {"requests_per_minute": 3}}})
    store = open_store(f"sqlite:///{tmp_path}/budgets.db")
    app = json_app(token=None, max_body_bytes=settings.max_body_bytes)
    budgets.add_routes(app, budgets.ProviderBudgets.from_config(store, settings),
                       identity=WorkerIdentity(store))
    with serve_app(app) as url:
        yield url
    store.close()


def shared_limiter(url: str, worker_id: str, **options: Any) -> SharedLimiter:
    """A SharedLimiter for ``ollama`` on the orchestrator at ``url``."""
    return SharedLimiter("ollama", Transport(url, token=""), worker_id=worker_id, **options)


def test_racing_workers_get_exactly_the_shared_requests_per_minute(budget_url: str) -> None:
    limiters = [shared_limiter(budget_url, f"w{n}", max_wait_seconds=0.0) for n in range(10)]
    barrier = threading.Barrier(len(limiters))
    outcomes: list[str] = []

    def race(limiter: SharedLimiter) -> None:
        barrier.wait()
        try:
            reservation = limiter.reserve(100, time.time())
            outcomes.append("granted" if reservation.reservation_id else "local")
        except SharedBudgetExhausted as error:
            outcomes.append(error.message)

    threads = [threading.Thread(target=race, args=(limiter,)) for limiter in limiters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    assert outcomes.count("granted") == 3 and len(outcomes) == 10
    refusals = [outcome for outcome in outcomes if outcome != "granted"]
    assert all("requests_per_minute used up by all workers" in r for r in refusals)
    ollama = provider_budgets(budget_url)["ollama"]
    assert (ollama["requests_per_minute"], ollama["remaining_requests_per_minute"]) == (3, 0)
    assert all(limiter.token_allowance(time.time()) == 0 for limiter in limiters)


def test_a_reserve_waits_out_a_short_pause_then_counts_the_tokens_used(budget_url: str) -> None:
    first, second = shared_limiter(budget_url, "w1"), shared_limiter(budget_url, "w2")
    paused_until = time.time() + 0.6
    first.pause_until(paused_until)
    assert second.cooldown_until is not None and not second.can_take(0, time.time())

    reservation = second.reserve(500, time.time())
    second.settle(reservation, 42, time.time())

    # Granted once the pause is over (measured from its end: the checks above take a
    # while on a loaded machine), and soon after.
    assert paused_until <= time.time() < paused_until + 3.0
    assert reservation.reservation_id is not None and reservation.tokens == 42
    snapshot = second.snapshot(time.time())
    assert snapshot["budget"] == "shared" and snapshot["remaining_requests_per_minute"] == 2
    assert snapshot["cooldown_until"] is None


def test_a_pause_longer_than_the_wait_fails_at_once_so_the_task_goes_back(budget_url: str) -> None:
    limiter = shared_limiter(budget_url, "w1", max_wait_seconds=5.0)
    limiter.pause_until(time.time() + 300)

    started = time.monotonic()
    with pytest.raises(SharedBudgetExhausted, match="rests until") as raised:
        limiter.reserve(10, time.time())

    assert time.monotonic() - started < 2.0
    assert raised.value.retryable and raised.value.reset_at > time.time() + 290
    assert limiter.token_allowance(time.time()) == 0


def test_an_unreachable_orchestrator_leaves_the_workers_own_limits_and_says_so(
        caplog: pytest.LogCaptureFixture) -> None:
    limiter = SharedLimiter("ollama", Transport(f"http://127.0.0.1:{free_port()}", token=""),
                            worker_id="w1", fallback=ProviderLimiter(requests_per_minute=1),
                            request_timeout_seconds=1.0)
    with caplog.at_level(logging.WARNING, logger="elastic.providers.shared"):
        reservation = limiter.reserve(10, time.time())
        limiter.settle(reservation, 7, time.time())

    assert reservation.reservation_id is None and reservation.tokens == 7
    assert limiter.token_allowance(time.time()) == 0
    assert limiter.snapshot(time.time())["budget"] == "local"
    warnings = [r.getMessage() for r in caplog.records if "own limits" in r.getMessage()]
    assert len(warnings) == 1 and "cannot reach the orchestrator" in warnings[0]


@pytest.mark.parametrize(("path", "body", "status", "named"), [
    ("/api/providers/ollama/reserve", {"worker_id": "w"}, 400, "estimated_tokens"),
    ("/api/providers/ollama/reserve", {"estimated_tokens": -1, "worker_id": "w"}, 400,
     "estimated_tokens"),
    ("/api/providers/ollama/reserve", {"estimated_tokens": 5, "worker_id": 7}, 400, "worker_id"),
    ("/api/providers/ollama/settle", {"reservation_id": "x"}, 400, "tokens_used"),
    ("/api/providers/ollama/settle", {"reservation_id": "nope", "tokens_used": 1}, 404, "nope"),
    ("/api/providers/ollama/pause", {"until": "soon"}, 400, "until"),
    ("/api/providers/ollama/pause", {"until": 1e300}, 400, "until"),
    ("/api/providers/openai/pause", {"until": 1.0}, 404, "openai"),
])
def test_budget_routes_answer_json_errors_naming_the_field(
        budget_url: str, path: str, body: dict[str, Any], status: int, named: str) -> None:
    answer = requests.post(f"{budget_url}{path}", data=json.dumps(body), timeout=10,
                           headers={"Content-Type": "application/json"})

    assert answer.status_code == status
    assert named in answer.json()["error"]


# -- real processes --------------------------------------------------------------------------

def test_agent_action_and_code_generation_complete_through_each_llm_worker_type(
        start_server: Starter, start_worker: WorkerStarter, ollama: OllamaStandIn,
        groq: TimedGroqStandIn, gemini: TimedGeminiStandIn) -> None:
    server = start_server()
    stand_ins = {"deepseek": ollama, "groq": groq, "gemini": gemini}
    batch = []
    for worker_type, stand_in in stand_ins.items():
        model = MODELS[worker_type]
        stand_in.enqueue_reply(f"Hello from {worker_type}.", tokens=21, model=model)
        stand_in.enqueue_reply(CODE_ANSWER, tokens=34, model=model)
        start_llm_worker(start_worker, server, worker_type, stand_in, model=model)
        batch += [agent_action(f"agent-{worker_type}", model=model, priority=9),
                  code_generation(f"code-{worker_type}", model=model, priority=5)]

    ended = wait_for_status(server.url, submit(server.url, batch), "completed", timeout=30)

    for worker_type, stand_in in stand_ins.items():
        model, provider = MODELS[worker_type], PROVIDER_OF[worker_type]
        agent = ended[f"agent-{worker_type}"]["result"]
        assert agent == {"success": True, "output": f"Hello from {worker_type}.",
                         "tokens_used": 21, "model": model, "provider": provider}
        code = ended[f"code-{worker_type}"]["result"]
        assert (code["output"], code["code"], code["tokens_used"]) == (CODE_ANSWER, CODE, 34)
        assert (code["model"], code["provider"]) == (model, provider)
        assert len(stand_in.requests) == 2
    for worker_type in ("deepseek", "groq"):
        asked, coded = (r.json for r in stand_ins[worker_type].requests)
        assert (asked["model"], asked["messages"]) == (MODELS[worker_type], MESSAGES)
        assert coded["messages"][-1] == {"role": "user", "content": PROMPT}
    assert ollama.requests[0].json["options"] == {"temperature": 0.3}
    assert groq.requests[0].json["temperature"] == 0.3
    asked, coded = (r.json for r in gemini.requests)
    assert gemini.requests[0].path == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert asked["contents"] == [{"role": "user", "parts": [{"text": "Say hello."}]}]
    assert asked["systemInstruction"]["parts"] == [{"text": SYSTEM}]
    assert asked["generationConfig"] == {"temperature": 0.3}
    assert coded["contents"] == [{"role": "user", "parts": [{"text": PROMPT}]}]


def test_a_429_waits_as_long_as_the_provider_says_then_the_task_completes(
        start_server: Starter, start_worker: WorkerStarter, groq: TimedGroqStandIn,
        gemini: TimedGeminiStandIn) -> None:
    server = start_server()
    groq.enqueue_error(429, RATE_LIMITED, {"retry-after": "1"})
    groq.enqueue_reply("after the wait", tokens=12)
    gemini.enqueue(quota_error(PER_MINUTE_QUOTA, "1s"))
    gemini.enqueue_reply("after the retryDelay", tokens=13)
    for worker_type, stand_in in (("groq", groq), ("gemini", gemini)):
        start_llm_worker(start_worker, server, worker_type, stand_in, model=MODELS[worker_type])

    ended = wait_for_status(server.url, submit(server.url, [
        agent_action("via-groq", model=MODELS["groq"]),
        agent_action("via-gemini", model=MODELS["gemini"])]), "completed", timeout=30)

    assert ended["via-groq"]["result"]["output"] == "after the wait"
    assert ended["via-gemini"]["result"]["output"] == "after the retryDelay"
    for stand_in in (groq, gemini):
        assert len(stand_in.requests) == 2
        assert 0.9 <= stand_in.arrivals[1] - stand_in.arrivals[0] < 3.0
    assert [s["attempts"] for s in ended.values()] == [1, 1]


def test_a_refused_key_holds_the_task_at_once_and_is_written_nowhere(
        start_server: Starter, start_worker: WorkerStarter, groq: TimedGroqStandIn,
        project_folder: Path) -> None:
    server = start_server()
    worker_id = start_llm_worker(start_worker, server, "groq", groq, key=FAKE_KEY)

    [task_id] = submit(server.url, [agent_action("bad-key")])
    [ended] = wait_for_status(server.url, [task_id], "held", timeout=20).values()

    assert ended["held_reason"] == "rejected_by_provider"
    assert "GROQ_API_KEY was refused" in ended["error"] and "401" in ended["error"]
    assert ended["attempts"] == 1 and ended["result"]["retryable"] is False
    assert holds_for(1.0, lambda: len(groq.requests) == 1)
    assert groq.requests[0].headers["authorization"] == f"Bearer {FAKE_KEY}"
    requests.get(f"{server.url}/api/workers/list", timeout=10).raise_for_status()
    written = {"status JSON": json.dumps(task_status(server.url, task_id)).encode()}
    server.stop()
    written.update({path.name: path.read_bytes()
                    for path in project_folder.rglob("*") if path.is_file()})
    assert {"server.log", f"{worker_id}.log", "elastic.db"} <= set(written)
    assert [name for name, content in written.items() if FAKE_KEY.encode() in content] == []


def test_workers_sharing_a_key_never_exceed_the_orchestrators_requests_per_minute(
        start_server: Starter, start_worker: WorkerStarter, project_folder: Path) -> None:
    (project_folder / "elastic.toml").write_text(
        FAST_CONFIG + "\n[providers.ollama.limits]\nrequests_per_minute = 3\n")
    server = start_server()
    with OllamaStandIn(max_requests_per_minute=3).serving() as ollama:
        worker_ids = [start_llm_worker(start_worker, server, "deepseek", ollama,
                                       worker_id=f"deepseek-{n}") for n in range(3)]
        wait_until(lambda: requests.get(f"{server.url}/health", timeout=5).json()[
            "workers_online"] == 3, message="three deepseek workers")

        task_ids = submit(server.url, [agent_action(f"shared-{n}") for n in range(6)])
        wait_until(lambda: requests.get(f"{server.url}/api/stats", timeout=5).json()[
            "tasks"]["completed"] == 3, timeout=15, message="three tasks to complete")

        def words() -> list[str]:
            return sorted(task_status(server.url, tid)["status"] for tid in task_ids)

        def three_sent_none_failed() -> bool:
            now = words()
            return len(ollama.requests) == 3 and now.count("completed") == 3 and "failed" not in now

        assert holds_for(2.0, three_sent_none_failed)
        # A worker that leased on a stale allowance gives its task back: pending, not failed.
        wait_until(lambda: words() == ["completed"] * 3 + ["pending"] * 3, timeout=5,
                   message="the three other tasks to wait in the queue")
        assert ollama.requests_in_last_minute() == 3
        shared = provider_budgets(server.url)["ollama"]
        assert (shared["requests_per_minute"], shared["remaining_requests_per_minute"]) == (3, 0)
        for worker_id in worker_ids:
            wait_until(lambda wid=worker_id: worker_info(server.url, wid).get(
                "remaining_requests_per_minute") == 0, timeout=10, message=f"{worker_id} budget")
            assert worker_info(server.url, worker_id)["budget"] == "shared"


def test_a_paused_provider_sends_llm_tasks_elsewhere_and_its_worker_keeps_other_work(
        start_server: Starter, start_worker: WorkerStarter, ollama: OllamaStandIn,
        groq: TimedGroqStandIn, gemini: TimedGeminiStandIn) -> None:
    server = start_server()
    paused = requests.post(f"{server.url}/api/providers/ollama/pause",
                           json={"until": time.time() + 300}, timeout=10)
    assert paused.status_code == 200 and paused.json()["cooldown_until"] is not None
    groq.enqueue_error(429, RATE_LIMITED, {"retry-after": "600"})
    groq_id = start_llm_worker(start_worker, server, "groq", groq)
    deepseek_id = start_llm_worker(start_worker, server, "deepseek", ollama)

    [first] = submit(server.url, [agent_action("llm-first")])
    def groq_key_budget() -> dict[str, Any]:
        return provider_budgets(server.url)["groq"]["keys"].get(key_fingerprint(GROQ_KEY), {})

    wait_until(lambda: groq_key_budget().get("cooldown_until"), timeout=20,
               message="the groq key's budget to rest after its 429")
    assert groq_key_budget()["cooldown_until"] > time.time() + 500
    assert provider_budgets(server.url)["groq"]["cooldown_until"] is None  # not other keys
    wait_until(lambda: (worker_info(server.url, groq_id).get("cooldown_until") or 0)
               > time.time() + 500, timeout=10, message="the groq worker to report its cooldown")
    gemini_id = start_llm_worker(start_worker, server, "gemini", gemini)
    [second] = submit(server.url, [agent_action("llm-second")])
    evolution = submit(server.url, [
        {"task_id": "crossover", "type": "evolution_crossover",
         "data": {"genome1": {"a": 0.1, "b": 2.0}, "genome2": {"a": 0.9, "b": 4.0}, "seed": 1}},
        {"task_id": "mutation", "type": "evolution_mutation",
         "data": {"genome": {"a": 0.5}, "mutation_rate": 0.5, "seed": 2}}])

    llm = wait_for_status(server.url, [first, second], "completed", timeout=30)
    other = wait_for_status(server.url, evolution, "completed", timeout=30)

    assert {s["assigned_to"] for s in llm.values()} == {gemini_id}
    assert {s["result"]["provider"] for s in llm.values()} == {"gemini"}
    assert [a["worker_id"] for a in llm["llm-first"]["history"]] == [groq_id, gemini_id]
    assert "HTTP 429" in llm["llm-first"]["history"][0]["error"]
    assert {s["assigned_to"] for s in other.values()} == {deepseek_id}
    assert len(groq.requests) == 1 and ollama.requests == []
    assert provider_budgets(server.url)["ollama"]["cooldown_until"] is not None


def test_a_worker_whose_ollama_is_down_leases_no_llm_task_and_takes_them_again_once_it_is_back(
        start_server: Starter, start_worker: WorkerStarter, groq: TimedGroqStandIn,
        project_folder: Path) -> None:
    (project_folder / "elastic.toml").write_text(
        FAST_CONFIG + "\n[providers.ollama]\nbreaker_probe_seconds = 0.2\n")
    port = free_port()  # nothing listens there: this worker's Ollama is down
    server = start_server()
    deepseek_id = "deepseek-down"
    start_worker(server.url, worker_type="deepseek", worker_id=deepseek_id,
                 env={"OLLAMA_HOST": f"http://127.0.0.1:{port}"})
    groq_id = start_llm_worker(start_worker, server, "groq", groq)
    wait_until(lambda: worker_info(server.url, deepseek_id).get("breaker", {}).get("state")
               == "open", timeout=20, message="the deepseek worker to report Ollama down")

    llm = submit(server.url, [agent_action(f"llm-{n}") for n in range(3)])
    evolution = submit(server.url, [{"task_id": "mutation", "type": "evolution_mutation",
                                     "data": {"genome": {"a": 0.5}, "mutation_rate": 0.5}}])
    ended = wait_for_status(server.url, [*llm, *evolution], "completed", timeout=30)

    assert {ended[tid]["assigned_to"] for tid in llm} == {groq_id}
    assert all(len(status["history"]) == 1 for status in ended.values())
    assert ended["mutation"]["assigned_to"] == deepseek_id  # other work goes on
    breaker = worker_info(server.url, deepseek_id)["breaker"]
    assert breaker["state"] == "open" and f"127.0.0.1:{port}" in breaker["error"], breaker
    shown = subprocess.run([sys.executable, "-m", "elastic", "status", "--server", server.url],
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, "COLUMNS": "200"})
    [row] = [line for line in shown.stdout.splitlines() if deepseek_id in line]
    assert "ollama down since" in row, shown.stdout

    with OllamaStandIn().serving(port=port):
        [back] = submit(server.url, [agent_action("llm-back", model=MODELS["deepseek"])])
        [status] = wait_for_status(server.url, [back], "completed", timeout=20).values()
    assert status["assigned_to"] == deepseek_id and len(status["history"]) == 1
    # The worker says so at its next heartbeat (the lease came first).
    wait_until(lambda: worker_info(server.url, deepseek_id)["breaker"] == {"state": "closed"},
               timeout=10, message="the deepseek worker to report Ollama back")
