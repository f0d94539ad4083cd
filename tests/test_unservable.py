"""Work that no live worker can run is found, with the reason, on both databases."""

from __future__ import annotations

from elastic.store import Store
from elastic.tasks import NewTask, Requirement

NOW = 1_700_000_000.0


def _queue(store: Store) -> None:
    store.submit_tasks([
        NewTask(task_id="sim-c", type="simulation",
                data={"algorithm": "cython", "parameters": {"num_particles": 4, "num_steps": 1}}),
        NewTask(task_id="sim-c2", type="simulation",
                data={"algorithm": "cython", "parameters": {"num_particles": 4, "num_steps": 2}}),
        NewTask(task_id="mut", type="evolution_mutation",
                data={"genome": {"a": 1.0}, "mutation_rate": 0.1}),
        NewTask(task_id="llm", type="agent_action",
                data={"messages": [{"role": "user", "content": "hi"}], "model": "no-such-model"}),
    ], now=NOW)


def _reasons(store: Store) -> dict[Requirement, tuple[int, str]]:
    return {work.requirement: (work.count, work.reason) for work in store.unservable_work()}


def test_with_no_worker_every_pending_task_is_unservable_for_its_type(store: Store) -> None:
    _queue(store)
    reasons = _reasons(store)
    assert reasons[Requirement(task_type="simulation", algorithm="cython")] == (
        2, "no online worker runs simulation tasks")
    assert reasons[Requirement(task_type="evolution_mutation")][1] == (
        "no online worker runs evolution_mutation tasks")
    assert len(reasons) == 3


def test_a_missing_kernel_or_model_is_named_and_capable_workers_clear_their_tasks(
        store: Store) -> None:
    _queue(store)
    store.register_worker("sim", worker_type="simulation",
                          capabilities={"algorithms": ["python", "numpy"]}, now=NOW)
    store.register_worker("groq", worker_type="groq",
                          capabilities={"models": ["llama-3.3-70b-versatile"]}, now=NOW)
    store.register_worker("evo", worker_type="evolution", capabilities={}, now=NOW)
    reasons = _reasons(store)
    assert set(reasons.values()) == {
        (2, "no online worker offers algorithm 'cython'"),
        (1, "no online worker offers model 'no-such-model'")}


def test_a_dead_workers_offer_does_not_count(store: Store) -> None:
    _queue(store)
    store.register_worker("evo", worker_type="evolution", capabilities={}, now=NOW)
    assert Requirement(task_type="evolution_mutation") not in _reasons(store)
    store.expire_leases(now=NOW + store.worker_timeout_seconds + 1)
    assert Requirement(task_type="evolution_mutation") in _reasons(store)


def test_a_worker_without_a_model_list_takes_any_model(store: Store) -> None:
    _queue(store)
    store.register_worker("deepseek", worker_type="deepseek", capabilities={}, now=NOW)
    assert Requirement(task_type="agent_action", model="no-such-model") not in _reasons(store)
