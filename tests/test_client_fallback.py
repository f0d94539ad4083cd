"""The clients with no orchestrator listening: local fallback, errors, defaults."""

from __future__ import annotations

import asyncio
import re
import runpy
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from elastic import client as client_module
from elastic.client import (
    AsyncClient,
    Client,
    D8DistributedClient,
    DistributedEvolutionAdapter,
    EvolutionAdapter,
    EvolutionResult,
)
from elastic.errors import InvalidTask, ServerUnreachable
from elastic.executors.evolution import Crossover, Mutation

README = Path(__file__).resolve().parent.parent / "README.md"
PARENT1 = {"param1": 0.8, "param2": 100}
PARENT2 = {"param1": 0.6, "param2": 150}


@pytest.fixture
def dead_server() -> str:
    """The URL of a loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@dataclass
class LocalProvider:
    """An in-process LLM provider that answers one text and records requests."""

    answer: str
    requests: list[Any] = field(default_factory=list)
    name: str = "local"
    default_model: str = "local-model"

    def complete(self, request: Any) -> Any:
        """Record the request and answer with a real Completion."""
        from elastic.providers.base import Completion

        self.requests.append(request)
        return Completion(text=self.answer, tokens_used=7, model="local-model")


def test_adapter_crossover_runs_locally_with_the_same_operator(dead_server):
    adapter = EvolutionAdapter(dead_server, timeout=5)
    outcome = adapter.crossover_result(PARENT1, PARENT2, seed=11, method="blend")
    assert outcome.ran == "local"
    assert outcome.reason and "cannot reach the orchestrator" in outcome.reason
    expected = Crossover().run_operator(Crossover().validate(
        {"genome1": PARENT1, "genome2": PARENT2, "seed": 11, "method": "blend"}))
    assert outcome.genome == expected["genome"]
    assert outcome.task_id is None
    assert outcome.to_dict() == {**expected, "ran": "local", "reason": outcome.reason,
                                 "task_id": None}


def test_seed_darwin_calls_return_genomes_when_the_orchestrator_is_down(dead_server):
    adapter = DistributedEvolutionAdapter(dead_server)
    child = adapter.crossover(PARENT1, PARENT2)
    assert set(child) == {"param1", "param2"}
    mutated = adapter.mutate(child)
    assert set(mutated) == {"param1", "param2"}
    assert type(mutated["param2"]) is int


def test_adapter_mutate_runs_locally_with_the_same_operator(dead_server):
    outcome = EvolutionAdapter(dead_server).mutate_result(
        PARENT1, 1.0, seed=3, bounds={"param1": [0.0, 1.0]})
    assert outcome.ran == "local"
    expected = Mutation().run_operator(Mutation().validate(
        {"genome": PARENT1, "mutation_rate": 1.0, "seed": 3, "bounds": {"param1": [0, 1]}}))
    assert outcome.genome == expected["genome"]
    assert 0.0 <= outcome.genome["param1"] <= 1.0


def test_without_local_fallback_the_adapter_raises_server_unreachable(dead_server):
    adapter = EvolutionAdapter(dead_server, local_fallback=False)
    with pytest.raises(ServerUnreachable, match="cannot reach"):
        adapter.crossover(PARENT1, PARENT2)


def test_local_evolution_validates_like_the_server(dead_server):
    with pytest.raises(InvalidTask) as caught:
        EvolutionAdapter(dead_server).mutate(PARENT1, mutation_rate=2.0)
    assert caught.value.field == "mutation_rate"


def test_after_one_refusal_the_orchestrator_is_not_asked_again_for_a_while(dead_server):
    client = Client(dead_server, recheck_after_seconds=60)
    adapter = EvolutionAdapter(client)
    adapter.crossover(PARENT1, PARENT2)
    sent: list[object] = []
    client.http.event_hooks["request"].append(sent.append)
    outcome = adapter.crossover_result(PARENT1, PARENT2)
    assert outcome.ran == "local"
    assert outcome.reason and "not asking it again for 60 s" in outcome.reason
    assert sent == []


def test_agent_action_without_a_local_provider_raises_server_unreachable(dead_server):
    client = Client(dead_server)
    with pytest.raises(ServerUnreachable, match="local_provider"):
        client.agent_action([{"role": "user", "content": "hello"}])
    with pytest.raises(ServerUnreachable):
        client.execute_agent_action([{"role": "user", "content": "hello"}])


def test_not_waiting_needs_the_orchestrator_even_with_a_local_provider(dead_server):
    client = Client(dead_server, local_provider=LocalProvider("unused"))
    with pytest.raises(ServerUnreachable):
        client.execute_agent_action([{"role": "user", "content": "x"}], wait_for_result=False)


def test_agent_action_runs_on_the_local_provider_when_configured(dead_server):
    provider = LocalProvider("three business ideas")
    client = D8DistributedClient(dead_server, local_provider=provider)
    result = client.execute_agent_action([{"role": "user", "content": "Generate business ideas"}],
                                         model="local-model")
    assert result["output"] == "three business ideas"
    assert result["ran"] == "local"
    assert "cannot reach" in result["reason"]
    assert provider.requests[0].messages[-1]["content"] == "Generate business ideas"


def test_llm_mode_crossover_runs_locally_on_the_local_provider(dead_server):
    provider = LocalProvider('{"param1": 0.7, "param2": 125}')
    adapter = EvolutionAdapter(Client(dead_server, local_provider=provider))
    outcome = adapter.crossover_result(PARENT1, PARENT2, mode="llm")
    assert outcome.ran == "local"
    assert outcome.genome == {"param1": 0.7, "param2": 125}
    assert outcome.mode_used == "llm"
    assert outcome.tokens_used == 7


def test_plain_calls_raise_server_unreachable_quickly(dead_server):
    client = Client(dead_server, timeout=2)
    for call in (client.health, client.stats, client.workers, lambda: client.status("t-1"),
                 lambda: client.cancel("t-1"), lambda: client.submit("evolution_mutation", {})):
        with pytest.raises(ServerUnreachable, match=r"127\.0\.0\.1"):
            call()


def test_server_and_token_default_to_the_environment(monkeypatch):
    monkeypatch.setenv("ELASTIC_SERVER", "http://127.0.0.1:5999/")
    monkeypatch.setenv("ELASTIC_TOKEN", "s3cret")
    client = Client()
    assert client.server == "http://127.0.0.1:5999"
    assert client.http.headers["Authorization"] == "Bearer s3cret"
    explicit = AsyncClient("http://127.0.0.1:6000", token="other")
    assert explicit.server == "http://127.0.0.1:6000"
    assert explicit.http.headers["Authorization"] == "Bearer other"


def test_without_a_token_no_authorization_header_is_sent(monkeypatch):
    monkeypatch.delenv("ELASTIC_TOKEN", raising=False)
    monkeypatch.delenv("ELASTIC_SERVER", raising=False)
    client = Client()
    assert client.server == client_module.DEFAULT_SERVER
    assert "Authorization" not in client.http.headers


def test_submit_many_checks_each_task_has_a_type_before_sending(dead_server):
    client = Client(dead_server)
    assert client.submit_many([]) == []
    with pytest.raises(InvalidTask) as caught:
        client.submit_many([{"type": "evolution_mutation", "data": {}}, {"data": {}}])
    assert (caught.value.field, caught.value.index) == ("type", 1)


def test_the_darwin_example_runs_with_the_orchestrator_down(dead_server, capsys):
    example = Path(__file__).parent.parent / "examples" / "darwin_integration.py"
    main = runpy.run_path(str(example))["main"]
    assert main(["--server", dead_server, "--generations", "2", "--population", "4"]) == 0
    printed = capsys.readouterr().out
    assert "crossover ran locally" in printed
    assert "mutation  ran locally" in printed
    assert "on the orchestrator" not in printed


def test_the_async_client_falls_back_and_fails_like_the_blocking_one(dead_server):
    async def calls() -> EvolutionResult:
        async with AsyncClient(dead_server, timeout=2) as client:
            with pytest.raises(ServerUnreachable, match=r"127\.0\.0\.1"):
                await client.health()
            with pytest.raises(ServerUnreachable, match="local_provider"):
                await client.agent_action([{"role": "user", "content": "hello"}])
            result = await client.run("evolution_mutation",
                                      {"genome": PARENT1, "mutation_rate": 1.0, "seed": 3})
            assert isinstance(result, EvolutionResult)
            return result

    result = asyncio.run(calls())
    assert result.ran == "local"
    expected = Mutation().run_operator(Mutation().validate(
        {"genome": PARENT1, "mutation_rate": 1.0, "seed": 3}))
    assert result.genome == expected["genome"]


def test_the_readme_shim_makes_the_seeds_import_line_work(tmp_path):
    shim = re.search(r"```python\n(# app/distributed_integration\.py.*?)```",
                     README.read_text(encoding="utf-8"), re.S)
    assert shim, "README.md shows no app/distributed_integration.py shim"
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "distributed_integration.py").write_text(shim.group(1))
    seed_line = ("from app.distributed_integration import D8DistributedClient, "
                 "DistributedEvolutionAdapter\n"
                 "import elastic\n"
                 "assert D8DistributedClient is elastic.Client\n"
                 "assert DistributedEvolutionAdapter is elastic.EvolutionAdapter\n")
    ran = subprocess.run([sys.executable, "-c", seed_line], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
