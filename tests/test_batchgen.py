"""``elastic new-batch``: batches built from values or asked for interactively, then saved."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from elastic.batchgen import build_batch, prompt_batch, write_batch
from elastic.cli import main
from elastic.errors import InvalidTask
from elastic.ingest import ingest_folder
from elastic.store import Store
from elastic.taskfiles import parse_task_file

NOW = 1_720_449_000.0  # 2024-07-08T14:30:00Z


def scripted(answers: list[str]) -> tuple[Callable[..., str], list[str]]:
    """An ``ask`` like ``click.prompt`` that gives ``answers`` in order, and the questions asked.

    An empty answer is the default, as when the user just presses Enter.
    """
    remaining: Iterator[str] = iter(answers)
    asked: list[str] = []

    def ask(text: str, default: object = None) -> str:
        asked.append(text)
        return next(remaining) or str(default)

    return ask, asked


def quiet_console() -> Console:
    """A console writing to a buffer (``.file.getvalue()`` reads it)."""
    return Console(file=io.StringIO(), width=120)


def test_a_built_batch_is_a_valid_seed_004_document() -> None:
    document = build_batch(algorithm="cython", num_particles=200, num_steps=800, seed=456,
                           priority="medium", description="Lote", count=3, created_by="ana",
                           now=NOW)
    metadata = document["metadata"]
    assert (metadata["description"], metadata["total_tasks"], metadata["created_by"]) == (
        "Lote", 3, "ana")
    assert metadata["creation_date"].startswith("2024-07-08")
    ids = [task["task_id"] for task in document["tasks"]]
    assert all(re.fullmatch(r"sim_20240708_143000_[0-9a-f]{4}_00[123]", i) for i in ids)
    assert [t["parameters"]["seed"] for t in document["tasks"]] == [456, 457, 458]
    tasks = parse_task_file(json.dumps(document), source="lote.json")
    assert [(t.task_id, t.priority, t.data["algorithm"]) for t in tasks] == [
        (i, 5, "cython") for i in ids]


def test_two_batches_of_the_same_second_do_not_share_task_ids() -> None:
    values = {"algorithm": "python", "num_particles": 30, "num_steps": 10, "now": NOW}
    first, second = build_batch(**values), build_batch(**values)
    assert first["tasks"][0]["task_id"] != second["tasks"][0]["task_id"]


@pytest.mark.parametrize(("priority", "written"), [("HIGH", "high"), ("9", 9), (3, 3)])
def test_priority_is_written_as_a_word_or_a_number(priority: str | int,
                                                   written: str | int) -> None:
    document = build_batch(algorithm="numpy", num_particles=30, num_steps=1, priority=priority)
    assert document["tasks"][0]["priority"] == written


@pytest.mark.parametrize(("values", "field"), [
    ({"num_particles": 0}, "tasks[0].parameters.num_particles"),
    ({"num_particles": 200_001}, "tasks[0].parameters.num_particles"),
    ({"num_steps": -1}, "tasks[0].parameters.num_steps"),
    ({"algorithm": "fortran"}, "tasks[0].algorithm"),
    ({"priority": "urgent"}, "priority"),
    ({"count": 0}, "count"),
    ({"seed": 2**63 - 1, "count": 2}, "tasks[1].parameters.seed")])
def test_a_bad_value_is_refused_naming_it(values: dict[str, object], field: str) -> None:
    arguments: dict[str, object] = {"algorithm": "python", "num_particles": 30, "num_steps": 10}
    with pytest.raises(InvalidTask) as caught:
        build_batch(**{**arguments, **values})  # type: ignore[arg-type]
    assert caught.value.field == field


def test_the_interactive_flow_asks_again_after_each_bad_answer() -> None:
    console = quiet_console()
    ask, asked = scripted(["fortran", "numpy", "lots", "40", "-5", "100", "7",
                           "urgent", "low", "Mi lote", "0", "2"])
    document = prompt_batch(console, ask, created_by="ana", now=NOW)
    tasks = document["tasks"]
    assert len(tasks) == 2
    assert tasks[0]["algorithm"] == "numpy" and tasks[0]["priority"] == "low"
    assert tasks[1]["parameters"] == {"num_particles": 40, "num_steps": 100, "seed": 8}
    assert document["metadata"]["description"] == "Mi lote"
    assert document["metadata"]["created_by"] == "ana"
    assert len(asked) == 12 and asked[0] == asked[1] and asked[-1] == asked[-2]
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "fortran" in shown and "try again" in shown
    assert "tasks" in shown and "8" in shown


def test_empty_answers_take_the_defaults() -> None:
    ask, _ = scripted([""] * 7)
    document = prompt_batch(quiet_console(), ask)
    task = document["tasks"][0]
    assert (task["algorithm"], task["priority"]) == ("python", "medium")
    assert task["parameters"] == {"num_particles": 100, "num_steps": 500, "seed": 42}
    assert len(document["tasks"]) == 1


def test_a_batch_written_to_a_folder_gets_a_timestamped_name_and_never_overwrites(
        tmp_path: Path) -> None:
    folder = tmp_path / "task_queues"
    document = build_batch(algorithm="python", num_particles=30, num_steps=5, count=4)
    first = write_batch(document, folder, now=NOW)
    second = write_batch(document, folder, now=NOW)
    assert (first.name, second.name) == ("lote_20240708_143000.json",
                                         "lote_20240708_143000_2.json")
    assert json.loads(first.read_text(encoding="utf-8")) == document
    assert sorted(p.name for p in folder.iterdir()) == [first.name, second.name]


def test_an_existing_folder_with_a_dot_in_its_name_is_still_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "queues.d"
    folder.mkdir()
    document = build_batch(algorithm="python", num_particles=30, num_steps=5)
    assert write_batch(document, folder, now=NOW) == folder / "lote_20240708_143000.json"


@pytest.mark.parametrize("name", ["mine.json", "mine.txt"])
def test_a_batch_written_to_a_file_path_goes_exactly_there(tmp_path: Path, name: str) -> None:
    document = build_batch(algorithm="python", num_particles=30, num_steps=5)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / name).write_text("old")
    path = write_batch(document, tmp_path / "sub" / name)
    assert path == tmp_path / "sub" / name
    assert json.loads(path.read_text(encoding="utf-8")) == document
    assert [p.name for p in (tmp_path / "sub").iterdir()] == [name]


def test_two_written_batches_are_both_queued_in_full(store: Store, tmp_path: Path) -> None:
    folder = tmp_path / "task_queues"
    values = {"algorithm": "python", "num_particles": 30, "num_steps": 5, "count": 4, "now": NOW}
    first = write_batch(build_batch(**values), folder, now=NOW)
    second = write_batch(build_batch(**values), folder, now=NOW)
    report = ingest_folder(store, folder, now=max(first.stat().st_mtime,
                                                  second.stat().st_mtime) + 10)
    assert [(a.created, a.duplicates) for a in report.accepted] == [(4, 0), (4, 0)]
    assert store.count_tasks()["total"] == 8


def only_batch_in(folder: Path) -> Path:
    """The single ``lote_*.json`` file in ``folder``."""
    (path,) = folder.glob("lote_*.json")
    return path


def test_the_cli_writes_a_batch_from_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["new-batch", "--algorithm", "numpy", "--particles", "50",
                                       "--steps", "10", "--count", "3", "--output", str(out)])
    assert result.exit_code == 0, result.output
    path = only_batch_in(out)
    assert str(path.name) in result.output.replace("\n", "")
    tasks = parse_task_file(path.read_bytes(), source=path.name)
    assert [(t.data["algorithm"], t.data["parameters"]["seed"]) for t in tasks] == [
        ("numpy", 0), ("numpy", 1), ("numpy", 2)]
    assert {t.data["parameters"]["num_particles"] for t in tasks} == {50}


def test_the_cli_asks_interactively_without_flags(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    answers = "cobol\nnumpy\n50\n10\n7\nhigh\nMi lote\n2\n"
    result = CliRunner().invoke(main, ["new-batch", "--output", str(tmp_path)], input=answers)
    assert result.exit_code == 0, result.output
    assert "try again" in result.output
    path = only_batch_in(tmp_path)
    tasks = parse_task_file(path.read_bytes(), source=path.name)
    assert [(t.priority, t.data["parameters"]["seed"]) for t in tasks] == [(8, 7), (8, 8)]


@pytest.mark.parametrize(("flags", "shown"), [
    (["--algorithm", "python", "--particles", "0", "--steps", "10"], "num_particles"),
    (["--algorithm", "python", "--particles", "30", "--steps", "10", "--priority", "11"],
     "priority"),
    (["--algorithm", "python", "--particles", "30"], "--steps")])
def test_the_cli_refuses_bad_flags_with_exit_code_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    flags: list[str], shown: str) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["new-batch", *flags, "--output", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert shown in result.output
    assert not (tmp_path / "out").exists()
