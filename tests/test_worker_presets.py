"""Worker presets: what each ``--type`` registers, so tasks reach a worker that can run them."""

from __future__ import annotations

import pytest

from elastic.errors import ConfigError
from elastic.kernels import available_algorithms
from elastic.providers import open_provider
from elastic.store import Store
from elastic.tasks import NewTask
from elastic.worker.presets import worker_capabilities


def test_a_simulation_worker_offers_exactly_the_kernels_that_loaded() -> None:
    capabilities = worker_capabilities("simulation")
    assert capabilities == {"task_types": ["simulation"], "algorithms": available_algorithms()}


def test_llm_workers_offer_their_providers_models_and_aliases(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROQ_API_KEY", "k")
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    groq = worker_capabilities("groq", provider=open_provider("groq"))
    gemini = worker_capabilities("gemini", provider=open_provider("gemini", {
        "models": ["gemini-2.0-flash", "gemini-2.5-pro"]}))
    deepseek = worker_capabilities("deepseek", provider=open_provider("ollama"))
    assert groq["models"] == ["llama-3.3-70b-versatile", "llama-3.3-70b"]
    assert gemini["models"] == ["gemini-2.0-flash", "gemini-2.5-pro"]
    assert deepseek["models"] == ["deepseek-coder:6.7b"]
    assert deepseek["task_types"] == ["agent_action", "code_generation", "evolution_crossover",
                                      "evolution_mutation"]


def test_a_task_naming_a_groq_model_never_goes_to_another_provider(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROQ_API_KEY", "k")
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    for worker_type, provider in (("gemini", "gemini"), ("deepseek", "ollama"), ("groq", "groq")):
        store.register_worker(worker_type, worker_type=worker_type, capabilities=worker_capabilities(
            worker_type, provider=open_provider(provider)))
    store.submit_tasks([NewTask(task_id="seed-example", type="agent_action", data={
        "messages": [{"role": "user", "content": "Generate business ideas"}],
        "model": "llama-3.3-70b", "temperature": 0.8})])
    assert store.lease_tasks("gemini") == []
    assert store.lease_tasks("deepseek") == []
    assert [lease.task.task_id for lease in store.lease_tasks("groq")] == ["seed-example"]


def test_an_unknown_worker_type_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="type"):
        worker_capabilities("quantum")
