"""The genetic operators and the evolution_crossover / evolution_mutation executors."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from elastic.errors import InvalidTask, TaskCancelled
from elastic.evolution.llm_mode import conform_offspring, find_first_json_object
from elastic.evolution.operators import CROSSOVER_METHODS, crossover_genomes, is_number, mutate_genome
from elastic.executors.base import ExecutionContext
from elastic.executors.evolution import Crossover, Mutation

keys = st.text(alphabet="abcdefgh", min_size=1, max_size=3)
leaves = st.one_of(
    st.integers(-1000, 1000),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.booleans(),
    st.text(max_size=4),
)
genomes = st.dictionaries(keys, st.one_of(leaves, st.dictionaries(keys, leaves, max_size=3)),
                          max_size=8)
numeric_genomes = st.dictionaries(
    keys, st.one_of(st.integers(-1000, 1000), st.floats(-1e6, 1e6, allow_nan=False)),
    min_size=1, max_size=8,
)
seeds = st.integers(0, 2**32)
methods = st.sampled_from(CROSSOVER_METHODS)


@dataclass
class FakeCompletion:
    """What a provider returns."""

    text: str
    tokens_used: int = 42
    model: str = "fake-model"


@dataclass
class FakeProvider:
    """An in-process LLM provider that answers a scripted text and records requests."""

    answer: str = ""
    error: Exception | None = None
    requests: list[Any] = field(default_factory=list)
    name: str = "fake"
    default_model: str = "fake-model"

    def complete(self, request: Any) -> FakeCompletion:
        """Record the request; answer the script or raise its error."""
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        return FakeCompletion(self.answer)


def context_with(provider: Any = None) -> ExecutionContext:
    """An execution context for one test task."""
    return ExecutionContext(task_id="test-task", provider=provider)


def crossover(data: dict[str, Any], provider: Any = None) -> dict[str, Any]:
    """Validate and run one evolution_crossover task."""
    executor = Crossover()
    return executor.run(executor.validate(data), context_with(provider))


def mutation(data: dict[str, Any], provider: Any = None) -> dict[str, Any]:
    """Validate and run one evolution_mutation task."""
    executor = Mutation()
    return executor.run(executor.validate(data), context_with(provider))


PARENT1 = {"param1": 0.8, "param2": 100, "flag": True, "name": "a"}
PARENT2 = {"param1": 0.6, "param2": 150, "flag": False, "name": "b"}


# Crossover operators ------------------------------------------------------------------


@given(genomes, genomes, seeds, methods)
def test_crossover_with_the_same_seed_gives_the_same_child(g1, g2, seed, method):
    first = crossover_genomes(g1, g2, rng=random.Random(seed), method=method)
    second = crossover_genomes(g1, g2, rng=random.Random(seed), method=method)
    assert first == second


@given(genomes, genomes, seeds, methods)
def test_crossover_child_has_exactly_the_union_of_the_parents_keys(g1, g2, seed, method):
    child = crossover_genomes(g1, g2, rng=random.Random(seed), method=method)
    assert set(child) == set(g1) | set(g2)


@given(genomes, genomes, seeds, st.sampled_from(["uniform", "single_point"]))
def test_uniform_and_single_point_take_each_value_from_a_parent(g1, g2, seed, method):
    child = crossover_genomes(g1, g2, rng=random.Random(seed), method=method)
    for key, value in child.items():
        if isinstance(g1.get(key), dict) and isinstance(g2.get(key), dict):
            continue
        assert value in [g[key] for g in (g1, g2) if key in g]


@given(numeric_genomes, numeric_genomes, seeds)
def test_blend_keeps_ints_as_ints_and_numbers_between_the_parents(g1, g2, seed):
    child = crossover_genomes(g1, g2, rng=random.Random(seed), method="blend")
    for key in set(g1) & set(g2):
        a, b, value = g1[key], g2[key], child[key]
        assert min(a, b) <= value <= max(a, b)
        if isinstance(a, int) and isinstance(b, int):
            assert type(value) is int


@given(st.floats(-100, 100), st.floats(-100, 100), seeds)
def test_blend_alpha_widens_the_interval_by_alpha_times_the_distance(a, b, seed):
    child = crossover_genomes({"x": a}, {"x": b}, rng=random.Random(seed), method="blend",
                              alpha=0.5)
    spread = abs(a - b) * 0.5
    assert min(a, b) - spread <= child["x"] <= max(a, b) + spread


def test_blend_picks_a_parent_for_booleans_and_strings():
    for seed in range(20):
        child = crossover_genomes(PARENT1, PARENT2, rng=random.Random(seed), method="blend")
        assert child["flag"] in (True, False)
        assert child["name"] in ("a", "b")


@given(numeric_genomes, numeric_genomes, seeds)
def test_single_point_takes_sorted_keys_up_to_a_cut_from_parent1(g1, g2, seed):
    shared = {key: g1.get(key, 0) for key in set(g1) | set(g2)}
    first, second = dict(shared), {key: ("second", key) for key in shared}
    child = crossover_genomes(first, second, rng=random.Random(seed), method="single_point")
    from_first = [child[key] == first[key] for key in sorted(shared)]
    if len(shared) >= 2:
        assert from_first == sorted(from_first, reverse=True)
        assert from_first[0] and not from_first[-1]


def test_keys_present_in_one_parent_only_are_inherited():
    for method in CROSSOVER_METHODS:
        child = crossover_genomes({"a": 1, "only1": "x"}, {"a": 2, "only2": [1, 2]},
                                  rng=random.Random(3), method=method)
        assert child["only1"] == "x"
        assert child["only2"] == [1, 2]


def test_nested_objects_are_crossed_key_by_key():
    g1 = {"net": {"layers": 2, "rate": 0.1, "extra": True}}
    g2 = {"net": {"layers": 8, "rate": 0.9}}
    child = crossover_genomes(g1, g2, rng=random.Random(0), method="blend")
    assert set(child["net"]) == {"layers", "rate", "extra"}
    assert 2 <= child["net"]["layers"] <= 8
    assert type(child["net"]["layers"]) is int


def test_crossover_does_not_modify_the_parents():
    g1, g2 = {"n": {"x": [1, 2]}}, {"n": {"x": [3]}}
    child = crossover_genomes(g1, g2, rng=random.Random(1))
    child["n"]["x"].append(99)
    assert g1 == {"n": {"x": [1, 2]}}
    assert g2 == {"n": {"x": [3]}}


# Mutation operator --------------------------------------------------------------------


@given(genomes, seeds, st.floats(0, 1))
def test_mutation_with_the_same_seed_gives_the_same_genome(genome, seed, rate):
    first = mutate_genome(genome, rate, rng=random.Random(seed))
    assert first == mutate_genome(genome, rate, rng=random.Random(seed))


@given(genomes, seeds, st.floats(0, 1))
def test_mutation_keeps_keys_and_types_and_leaves_strings(genome, seed, rate):
    child = mutate_genome(genome, rate, rng=random.Random(seed))
    assert set(child) == set(genome)
    for key, value in genome.items():
        assert type(child[key]) is type(value)
        if isinstance(value, str):
            assert child[key] == value


@st.composite
def bounded_genomes(draw):
    """A numeric genome with bounds on every gene, each holding at least one integer."""
    genome = draw(numeric_genomes)
    bounds = {}
    for key in genome:
        low, high = sorted(draw(st.lists(st.integers(-500, 500), min_size=2, max_size=2)))
        bounds[key] = [low, high]
    return genome, bounds


@given(bounded_genomes(), seeds)
def test_mutated_numbers_stay_within_bounds_and_ints_stay_ints(genome_and_bounds, seed):
    genome, bounds = genome_and_bounds
    child = mutate_genome(genome, 1.0, rng=random.Random(seed), bounds=bounds)
    for key, value in child.items():
        low, high = bounds[key]
        assert low <= value <= high
        assert type(value) is type(genome[key])


def test_rate_zero_changes_nothing_and_rate_one_changes_every_number_and_boolean():
    genome = {"f": 1.5, "i": 7, "b": True, "s": "keep", "z": 0.0, "none": None}
    assert mutate_genome(genome, 0.0, rng=random.Random(1)) == genome
    child = mutate_genome(genome, 1.0, rng=random.Random(1))
    assert child["f"] != 1.5
    assert child["i"] != 7
    assert child["z"] != 0.0
    assert child["b"] is False
    assert child["s"] == "keep"
    assert child["none"] is None


def test_mutation_without_a_seed_is_random():
    genome = {f"g{i}": 1.0 for i in range(10)}
    assert mutate_genome(genome, 1.0) != mutate_genome(genome, 1.0)


def test_bounds_use_dotted_paths_for_nested_genes_and_apply_to_list_items():
    genome = {"net": {"size": 5}, "weights": [0.5, 0.5, 0.5]}
    bounds = {"net.size": [4, 6], "weights": [0.0, 1.0]}
    for seed in range(50):
        child = mutate_genome(genome, 1.0, rng=random.Random(seed), bounds=bounds, sigma=5.0)
        assert 4 <= child["net"]["size"] <= 6
        assert all(0.0 <= w <= 1.0 for w in child["weights"])


# Validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(("data", "field"), [
    ({"genome2": PARENT2}, "genome1"),
    ({"genome1": [1, 2], "genome2": PARENT2}, "genome1"),
    ({"genome1": PARENT1, "genome2": "text"}, "genome2"),
    ({"genome1": {"x": float("nan")}, "genome2": PARENT2}, "genome1.x"),
    ({"genome1": PARENT1, "genome2": PARENT2, "method": "two_point"}, "method"),
    ({"genome1": PARENT1, "genome2": PARENT2, "mode": "magic"}, "mode"),
    ({"genome1": PARENT1, "genome2": PARENT2, "seed": "abc"}, "seed"),
    ({"genome1": PARENT1, "genome2": PARENT2, "seed": True}, "seed"),
    ({"genome1": PARENT1, "genome2": PARENT2, "alpha": -1}, "alpha"),
    ({"genome1": PARENT1, "genome2": PARENT2, "bounds": [0, 1]}, "bounds"),
    ({"genome1": PARENT1, "genome2": PARENT2, "bounds": {"param1": [1, 0]}}, "bounds.param1"),
])
def test_invalid_crossover_data_names_the_field(data, field):
    with pytest.raises(InvalidTask) as caught:
        Crossover().validate(data)
    assert caught.value.field == field
    assert field in caught.value.message


@pytest.mark.parametrize(("data", "field"), [
    ({"mutation_rate": 0.1}, "genome"),
    ({"genome": None}, "genome"),
    ({"genome": PARENT1, "mutation_rate": 1.5}, "mutation_rate"),
    ({"genome": PARENT1, "mutation_rate": -0.1}, "mutation_rate"),
    ({"genome": PARENT1, "mutation_rate": "high"}, "mutation_rate"),
    ({"genome": PARENT1, "mutation_rate": True}, "mutation_rate"),
    ({"genome": PARENT1, "bounds": {"param1": [0]}}, "bounds.param1"),
    ({"genome": PARENT1, "bounds": {"param1": ["a", "b"]}}, "bounds.param1"),
    ({"genome": PARENT1, "bounds": {"param1": [2, 1]}}, "bounds.param1"),
    ({"genome": PARENT1, "bounds": {"missing": [0, 1]}}, "bounds.missing"),
    ({"genome": PARENT1, "bounds": {"name": [0, 1]}}, "bounds.name"),
    ({"genome": PARENT1, "bounds": {"param2": [0.2, 0.8]}}, "bounds.param2"),
    ({"genome": PARENT1, "mode": "llm", "model": ""}, "model"),
])
def test_invalid_mutation_data_names_the_field(data, field):
    with pytest.raises(InvalidTask) as caught:
        Mutation().validate(data)
    assert caught.value.field == field


def test_the_seed_example_data_is_valid_with_defaults():
    params = Crossover().validate({"genome1": {"param1": 0.8, "param2": 100},
                                   "genome2": {"param1": 0.6, "param2": 150}})
    assert (params.method, params.mode, params.seed) == ("uniform", "operator", None)
    assert Mutation().validate({"genome": {"param1": 0.7}}).mutation_rate == 0.1


# Executors in operator mode -----------------------------------------------------------


def test_crossover_task_result_has_the_genome_method_and_mode_used():
    result = crossover({"genome1": PARENT1, "genome2": PARENT2, "seed": 7, "method": "blend"})
    assert result["success"] is True
    assert result["method"] == "blend"
    assert result["mode_used"] == "operator"
    assert set(result["genome"]) == set(PARENT1)
    assert result == crossover({"genome1": PARENT1, "genome2": PARENT2, "seed": 7,
                                "method": "blend"})


def test_mutation_task_result_respects_bounds_and_is_json():
    result = mutation({"genome": PARENT1, "mutation_rate": 1.0, "seed": 3,
                       "bounds": {"param1": [0.5, 0.9], "param2": [90, 110]}})
    assert result["success"] is True
    assert result["mode_used"] == "operator"
    assert 0.5 <= result["genome"]["param1"] <= 0.9
    assert 90 <= result["genome"]["param2"] <= 110
    assert json.loads(json.dumps(result)) == result


def test_a_cancelled_task_stops_before_running():
    executor = Crossover()
    context = context_with()
    context.cancelled.set()
    with pytest.raises(TaskCancelled):
        executor.run(executor.validate({"genome1": PARENT1, "genome2": PARENT2}), context)


# LLM mode -----------------------------------------------------------------------------


def test_llm_mode_uses_a_valid_genome_from_the_answer():
    child = {"param1": 0.7, "param2": 120, "flag": True, "name": "ab"}
    provider = FakeProvider(f"Here is the child:\n```json\n{json.dumps(child)}\n```\nEnjoy.")
    result = crossover({"genome1": PARENT1, "genome2": PARENT2, "mode": "llm",
                        "model": "deepseek-coder:6.7b"}, provider)
    assert result["mode_used"] == "llm"
    assert result["genome"] == child
    assert result["tokens_used"] == 42
    assert "fallback_reason" not in result
    request = provider.requests[0]
    prompt = request.messages[-1]["content"]
    assert json.dumps(PARENT1, sort_keys=True) in prompt
    assert json.dumps(PARENT2, sort_keys=True) in prompt
    assert request.model == "deepseek-coder:6.7b"


def test_llm_mode_normalises_whole_floats_for_integer_genes():
    answer = json.dumps({"param1": 1, "param2": 120.0, "flag": False, "name": "x"})
    result = crossover({"genome1": PARENT1, "genome2": PARENT2, "mode": "llm"},
                       FakeProvider(answer))
    assert result["mode_used"] == "llm"
    assert type(result["genome"]["param2"]) is int
    assert type(result["genome"]["param1"]) is float


@pytest.mark.parametrize(("answer", "reason"), [
    ("I cannot do that.", "no JSON object"),
    ('{"param1": 0.7, "param2": 120, "flag": true', "no JSON object"),
    ('{"param1": 0.7, "param2": 120, "flag": true}', "keys differ"),
    ('{"param1": 0.7, "param2": 120, "flag": true, "name": "x", "more": 1}', "keys differ"),
    ('{"param1": "high", "param2": 120, "flag": true, "name": "x"}', "param1"),
    ('{"param1": 0.7, "param2": 120.5, "flag": true, "name": "x"}', "integer"),
    ('{"param1": 0.7, "param2": 120, "flag": 1, "name": "x"}', "flag"),
    ('[{"param1": 0.7}]', "keys differ"),
])
def test_llm_mode_falls_back_to_the_operator_on_an_invalid_answer(answer, reason):
    data = {"genome1": PARENT1, "genome2": PARENT2, "mode": "llm", "seed": 5}
    result = crossover(data, FakeProvider(answer))
    assert result["mode_used"] == "operator"
    assert reason in result["fallback_reason"]
    assert result["tokens_used"] == 42
    operator = Crossover().run_operator(Crossover().validate(data))
    assert result["genome"] == operator["genome"]


def test_llm_mutation_outside_the_bounds_falls_back():
    answer = json.dumps({"param1": 5.0, "param2": 100, "flag": True, "name": "a"})
    result = mutation({"genome": PARENT1, "mode": "llm", "bounds": {"param1": [0.0, 1.0]}},
                      FakeProvider(answer))
    assert result["mode_used"] == "operator"
    assert "outside the bounds" in result["fallback_reason"]
    assert 0.0 <= result["genome"]["param1"] <= 1.0


def test_llm_mutation_with_a_valid_answer_is_used():
    answer = json.dumps({"param1": 0.75, "param2": 101, "flag": False, "name": "a"})
    provider = FakeProvider(answer)
    result = mutation({"genome": PARENT1, "mode": "llm", "mutation_rate": 0.3}, provider)
    assert result["mode_used"] == "llm"
    assert result["genome"]["param1"] == 0.75
    assert "30%" in provider.requests[0].messages[-1]["content"]


def test_llm_mode_falls_back_when_the_provider_raises():
    provider = FakeProvider(error=RuntimeError("model not loaded"))
    result = crossover({"genome1": PARENT1, "genome2": PARENT2, "mode": "llm"}, provider)
    assert result["mode_used"] == "operator"
    assert "model not loaded" in result["fallback_reason"]
    assert "tokens_used" not in result


def test_llm_mode_falls_back_at_once_when_the_provider_is_rate_limited():
    from elastic.providers.base import RateLimited

    provider = FakeProvider(error=RateLimited("slow down", retry_after_seconds=60))
    result = mutation({"genome": PARENT1, "mode": "llm"}, provider)
    assert result["mode_used"] == "operator"
    assert "RateLimited" in result["fallback_reason"]
    assert len(provider.requests) == 1


def test_llm_mode_without_a_provider_runs_the_operator():
    result = mutation({"genome": PARENT1, "mode": "llm", "seed": 1})
    assert result["mode_used"] == "operator"
    assert "no LLM provider" in result["fallback_reason"]


def test_operator_mode_never_calls_the_provider():
    provider = FakeProvider("{}")
    crossover({"genome1": PARENT1, "genome2": PARENT2}, provider)
    assert provider.requests == []


# Helpers ------------------------------------------------------------------------------


def test_first_json_object_is_found_after_prose_and_stray_braces():
    assert find_first_json_object('Sure {not json} then {"a": 1} and {"b": 2}') == {"a": 1}
    assert find_first_json_object("[1, 2]") is None


def test_conform_accepts_either_parents_type_where_they_differ():
    parents = [{"x": 1, "y": {"z": True}}, {"x": "one", "y": {"z": False}}]
    assert conform_offspring({"x": "two", "y": {"z": False}}, parents, {}) == {
        "x": "two", "y": {"z": False}}
    with pytest.raises(ValueError, match=r"y\.z"):
        conform_offspring({"x": 1, "y": {"z": 3}}, parents, {})


def test_booleans_are_not_numbers():
    assert not is_number(True)
    assert is_number(1)
    assert is_number(0.5)
