"""The worker-type table: every rule about which worker runs what is read from it.

The CLI's choices, the server's defaults for a registering worker and ``elastic run``'s
choice of workers come from ``elastic.worker_types``. ``elastic run --llm-type X`` is run
for every LLM type, as real processes, against the loopback SDK stand-ins.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from standins.gemini_standin import GeminiStandIn
from standins.groq_standin import GroqStandIn
from standins.ollama_standin import OllamaStandIn

from elastic import cli
from elastic.errors import ConfigError
from elastic.runner import worker_types_for
from elastic.store import Store
from elastic.tasks import NewTask
from elastic.worker_types import LLM_WORKER_TYPES, WORKER_TYPES, install_hint

GROQ_KEY = "gsk_standin_good_key_0123456789abcdef"
GEMINI_KEY = "AIzaSy-standin-good-key-0123456789abcd"
GENOME = {"param1": 0.7, "param2": 120}
AGENT = {"type": "agent_action", "task_id": "agent",
         "data": {"messages": [{"role": "user", "content": "Say hello."}]}}
CODE = {"type": "code_generation", "task_id": "code",
        "data": {"prompt": "Write add(a, b).", "language": "python"}}
MUTATION = {"type": "evolution_mutation", "task_id": "mutate",
            "data": {"genome": GENOME, "mutation_rate": 0.5, "seed": 1}}
LLM_CROSSOVER = {"type": "evolution_crossover", "task_id": "cross-llm",
                 "data": {"genome1": GENOME, "genome2": {"param1": 0.2, "param2": 80},
                          "seed": 2, "mode": "llm"}}


def new_task(entry: dict[str, Any]) -> NewTask:
    """A NewTask from a seed-000 task entry."""
    return NewTask(task_id=entry["task_id"], type=entry["type"], data=entry["data"])


def test_the_cli_offers_exactly_the_tables_worker_types() -> None:
    type_option = next(p for p in cli.worker.params if p.name == "worker_type")
    llm_option = next(p for p in cli.run.params if p.name == "llm_type")
    assert list(type_option.type.choices) == list(WORKER_TYPES)
    assert list(llm_option.type.choices) == list(LLM_WORKER_TYPES) == ["deepseek", "groq", "gemini"]


def test_a_worker_registering_without_task_types_gets_its_types_from_the_table(
        store: Store) -> None:
    for name, kind in WORKER_TYPES.items():
        registered = store.register_worker(f"w-{name}", worker_type=name, capabilities={})
        assert tuple(registered.task_types) == kind.task_types


def test_each_llm_type_names_the_extra_that_installs_its_sdk() -> None:
    assert [WORKER_TYPES[name].provider for name in LLM_WORKER_TYPES] == ["ollama", "groq", "gemini"]
    assert install_hint("gemini") == "pip install 'elastic-orchestrator[gemini]'"


@pytest.mark.parametrize("llm_type", ["deepseek", "groq", "gemini"])
def test_run_sends_llm_tasks_to_the_llm_type_and_operator_evolution_to_evolution_workers(
        llm_type: str) -> None:
    batch = [new_task(entry) for entry in (AGENT, CODE, MUTATION)]
    assert worker_types_for(batch, llm_worker_type=llm_type) == [llm_type, "evolution"]


def test_run_sends_llm_mode_evolution_to_deepseek() -> None:
    batch = [new_task(LLM_CROSSOVER), new_task(MUTATION)]
    assert worker_types_for(batch, llm_worker_type="deepseek") == ["deepseek", "evolution"]


@pytest.mark.parametrize("llm_type", ["groq", "gemini"])
def test_llm_mode_evolution_on_a_type_that_cannot_run_it_is_refused_naming_the_task(
        llm_type: str) -> None:
    with pytest.raises(ConfigError, match=r"cross-llm.*deepseek"):
        worker_types_for([new_task(AGENT), new_task(LLM_CROSSOVER)], llm_worker_type=llm_type)


# -- elastic run, as real processes ----------------------------------------------------------

@pytest.fixture
def stand_in_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """A stand-in for the parametrized LLM type, and the environment pointing its SDK at it."""
    llm_type = request.param
    if llm_type == "deepseek":
        with OllamaStandIn().serving() as ollama:
            yield {"OLLAMA_HOST": ollama.base_url}
    elif llm_type == "groq":
        with GroqStandIn(api_key=GROQ_KEY).serving() as groq:
            yield {"GROQ_BASE_URL": groq.base_url, "GROQ_API_KEY": GROQ_KEY}
    else:
        with GeminiStandIn(api_key=GEMINI_KEY).serving() as gemini:
            yield {"GEMINI_BASE_URL": gemini.base_url, "GEMINI_API_KEY": GEMINI_KEY}


def elastic_run(project_folder: Path, tasks: list[dict[str, Any]], llm_type: str,
                env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``elastic run batch.json --llm-type LLM_TYPE --workers 1`` in the project folder."""
    batch = project_folder / "batch.json"
    batch.write_text(json.dumps({"tasks": tasks}), encoding="utf-8")
    return subprocess.run([sys.executable, "-m", "elastic", "run", str(batch), "--workers", "1",
                           "--llm-type", llm_type], cwd=project_folder, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "COLUMNS": "80", **env})


@pytest.mark.parametrize("stand_in_env", ["deepseek", "groq", "gemini"], indirect=True)
def test_elastic_run_finishes_an_llm_and_evolution_batch_with_every_llm_type(
        project_folder: Path, stand_in_env: dict[str, str],
        request: pytest.FixtureRequest) -> None:
    llm_type = request.node.callspec.params["stand_in_env"]
    tasks = [AGENT, CODE, MUTATION] + ([LLM_CROSSOVER] if llm_type == "deepseek" else [])

    done = elastic_run(project_folder, tasks, llm_type, stand_in_env)

    assert done.returncode == 0, done.stdout + done.stderr
    results = {entry["task_id"]: entry
               for path in (project_folder / "results").glob("task_results_*.json")
               for entry in json.loads(path.read_text())["task_results"]}
    assert {task_id: entry["status"] for task_id, entry in results.items()} == {
        task["task_id"]: "completed" for task in tasks}
    assert results["agent"]["result"]["output"] == "echo: Say hello."


@pytest.mark.parametrize("stand_in_env", ["groq", "gemini"], indirect=True)
def test_elastic_run_refuses_llm_mode_evolution_up_front_where_the_llm_type_cannot_run_it(
        project_folder: Path, stand_in_env: dict[str, str],
        request: pytest.FixtureRequest) -> None:
    llm_type = request.node.callspec.params["stand_in_env"]

    done = elastic_run(project_folder, [AGENT, LLM_CROSSOVER], llm_type, stand_in_env)

    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "'cross-llm'" in done.stderr and "deepseek" in done.stderr
    assert not (project_folder / "results").exists()
