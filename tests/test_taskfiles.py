"""Task files: both formats, priorities, located errors, all or nothing, stable ids."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from elastic.errors import InvalidTask
from elastic.taskfiles import parse_task_document, parse_task_file
from elastic.tasks import MAX_ID_LENGTH

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def simulation(**overrides: Any) -> dict[str, Any]:
    """A valid seed-004 task entry."""
    task = {"algorithm": "python", "parameters": {"num_particles": 30, "num_steps": 10},
            "priority": "medium"}
    return {**task, **overrides}


def as_file(*tasks: dict[str, Any]) -> str:
    """A seed-004 document holding ``tasks``."""
    return json.dumps({"metadata": {"description": "test"}, "tasks": list(tasks)})


def error_of(content: str | bytes) -> InvalidTask:
    """The InvalidTask that parsing ``content`` raises."""
    with pytest.raises(InvalidTask) as caught:
        parse_task_file(content, source="bad.json")
    return caught.value


def test_the_seed_example_file_parses_to_two_simulation_tasks_with_priorities_8_and_5() -> None:
    path = EXAMPLES / "tareas_manuales_ejemplo.json"
    tasks = parse_task_file(path.read_bytes(), source=path.name)
    assert [(t.task_id, t.type, t.priority) for t in tasks] == [
        ("sim_001", "simulation", 8), ("sim_002", "simulation", 5)]
    assert tasks[0].data == {"algorithm": "python",
                             "parameters": {"num_particles": 100, "num_steps": 500, "seed": 123}}
    assert tasks[1].data["algorithm"] == "cython"
    assert tasks[0].description == "Simulación rápida Python"
    assert {t.source for t in tasks} == {"tareas_manuales_ejemplo.json"}


@pytest.mark.parametrize("name", ["simulations.json", "llm_tasks.json", "evolution.json",
                                  "tareas_manuales_ejemplo.json"])
def test_every_example_file_is_valid(name: str) -> None:
    assert parse_task_file((EXAMPLES / name).read_bytes(), source=name)


def test_seed_000_list_and_single_task_parse_with_numeric_priorities() -> None:
    crossover = {"type": "evolution_crossover", "priority": 7,
                 "data": {"genome1": {"a": 0.8}, "genome2": {"a": 0.6}}}
    listed = parse_task_file(json.dumps({"tasks": [crossover]}), source="x.json")
    single = parse_task_file(json.dumps({**crossover, "task_id": "one",
                                         "description": "cross"}), source="y.json")
    assert [(t.type, t.priority) for t in listed] == [("evolution_crossover", 7)]
    assert (single[0].task_id, single[0].description) == ("one", "cross")
    assert single[0].data == crossover["data"]


def test_a_seed_004_list_may_mix_in_type_and_data_tasks() -> None:
    mutation = {"type": "evolution_mutation", "data": {"genome": {"a": 1.0}, "mutation_rate": 0.1}}
    tasks = parse_task_file(as_file(simulation(task_id="s1"), mutation), source="mixed.json")
    assert [t.type for t in tasks] == ["simulation", "evolution_mutation"]


@pytest.mark.parametrize(("priority", "expected"), [
    ("high", 8), ("medium", 5), ("low", 2), ("HIGH", 8), (1, 1), (10, 10), (None, 5)])
def test_priority_words_and_numbers_1_to_10_are_accepted(priority: object, expected: int) -> None:
    tasks = parse_task_file(as_file(simulation(priority=priority)), source="p.json")
    assert tasks[0].priority == expected


@pytest.mark.parametrize("priority", ["urgent", 0, 11, 5.5, True, "8", []])
def test_a_bad_priority_names_the_task_and_field(priority: object) -> None:
    error = error_of(as_file(simulation(), simulation(priority=priority)))
    assert (error.index, error.field) == (1, "tasks[1].priority")


@pytest.mark.parametrize("num_steps", [-1, "500", 1.5, None, True])
def test_a_bad_parameter_names_the_task_index_and_the_full_field_path(num_steps: object) -> None:
    bad = simulation(parameters={"num_particles": 30, "num_steps": num_steps})
    error = error_of(as_file(simulation(), bad, simulation()))
    assert (error.index, error.field) == (1, "tasks[1].parameters.num_steps")
    assert "task 1" in error.message and "tasks[1].parameters.num_steps" in error.message


def test_an_unknown_parameter_is_rejected_by_name() -> None:
    bad = simulation(parameters={"num_particles": 30, "num_steps": 5, "particles": 9})
    assert error_of(as_file(bad)).field == "tasks[0].parameters.particles"


def test_a_bad_seed_000_data_field_is_located_under_data() -> None:
    error = error_of(json.dumps({"tasks": [{"type": "agent_action", "data": {"messages": []}}]}))
    assert (error.index, error.field) == (0, "tasks[0].data.messages")


@pytest.mark.parametrize(("entry", "field"), [
    ({"type": "no_such_type", "data": {}}, "tasks[0].type"),
    ({"type": "agent_action"}, "tasks[0].data"),
    ({"type": "agent_action", "data": []}, "tasks[0].data"),
    (simulation(algorithm="fortran"), "tasks[0].algorithm"),
    (simulation(parametres={}), "tasks[0].parametres"),
    (simulation(description=3), "tasks[0].description"),
    (simulation(task_id=""), "tasks[0].task_id"),
    (simulation(task_id=7), "tasks[0].task_id"),
    (simulation(task_id="a/b"), "tasks[0].task_id"),
    (simulation(task_id="x" * (MAX_ID_LENGTH + 1)), "tasks[0].task_id"),
    ("not an object", "tasks[0]"),
])
def test_an_invalid_task_names_its_field(entry: object, field: str) -> None:
    error = error_of(json.dumps({"tasks": [entry]}))
    assert (error.index, error.field) == (0, field)


def test_a_task_id_of_the_maximum_length_is_accepted() -> None:
    tasks = parse_task_file(as_file(simulation(task_id="x" * MAX_ID_LENGTH)), source="a")
    assert len(tasks[0].task_id) == MAX_ID_LENGTH


def test_a_repeated_task_id_in_one_file_is_rejected() -> None:
    error = error_of(as_file(simulation(task_id="a"), simulation(task_id="b"),
                             simulation(task_id="a")))
    assert (error.index, error.field) == (2, "tasks[2].task_id")


@pytest.mark.parametrize(("document", "field"), [
    ({"tasks": []}, "tasks"), ({"tasks": {}}, "tasks"), ({"tasks": [], "extra": 1}, "extra"),
    ({"metadata": [], "tasks": [simulation()]}, "metadata")])
def test_a_bad_document_shape_names_the_key(document: object, field: str) -> None:
    assert error_of(json.dumps(document)).field == field


def test_one_bad_task_fails_the_whole_file_naming_the_first_problem() -> None:
    with pytest.raises(InvalidTask) as caught:
        parse_task_document({"tasks": [simulation(), simulation(priority="x"),
                                       simulation(algorithm="y")]}, source="a")
    assert (caught.value.index, caught.value.field) == (1, "tasks[1].priority")


@pytest.mark.parametrize(("content", "where"), [
    ('{"tasks": [\n  {"algorithm": "python",}\n]}', "line 2 column"),
    ('{"tasks": [', "line 1 column 12"),
    ("", "line 1 column 1")])
def test_bad_json_names_line_and_column(content: str, where: str) -> None:
    error = error_of(content)
    assert "not valid JSON" in error.message and where in error.message


def test_bytes_that_are_not_utf8_are_rejected() -> None:
    latin1 = '{"tasks": [{"type": "agent_action", "description": "café"}]}'.encode("latin-1")
    error = error_of(latin1)
    assert "UTF-8" in error.message and error.index is None


@pytest.mark.parametrize("content", [b"\xff\xfe\x00garbage\x9c", '{"a": NaN}', "[" * 100_000])
def test_not_text_or_not_standard_json_is_an_invalid_task(content: str | bytes) -> None:
    assert error_of(content).index is None


def test_derived_ids_are_stable_across_calls_and_differ_by_position_and_content() -> None:
    content = json.dumps({"tasks": [simulation(), simulation()]})
    first = [t.task_id for t in parse_task_file(content, source="a.json")]
    again = [t.task_id for t in parse_task_file(content, source="renamed.json")]
    changed = json.dumps({"tasks": [simulation(), simulation(priority="low")]})
    other = [t.task_id for t in parse_task_file(changed, source="a.json")]
    assert first == again
    assert first[0] != first[1]
    assert set(first).isdisjoint(other)


def test_given_ids_are_kept_and_missing_ones_derived_beside_them() -> None:
    tasks = parse_task_file(as_file(simulation(task_id="mine"), simulation()), source="a")
    assert tasks[0].task_id == "mine"
    assert tasks[1].task_id.endswith("-1")


def test_without_derived_ids_each_parse_gets_fresh_random_ids() -> None:
    content = as_file(simulation())
    first = parse_task_file(content, source="a", derive_ids=False)[0].task_id
    second = parse_task_file(content, source="a", derive_ids=False)[0].task_id
    assert first != second
    assert parse_task_document(json.loads(content), source="api")[0].task_id != first
