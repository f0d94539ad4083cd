"""``elastic db`` (upgrade, current, copy) and the one-process rule of a SQLite database.

The commands run in-process through click's runner; the lock is tested against a real
``elastic serve`` process, since its pid and a ``kill -9`` are what it is about.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from click.testing import CliRunner
from conftest import ServerProcess
from sqlalchemy import select

from elastic.cli import main
from elastic.providers.limits import key_fingerprint
from elastic.store import NewAlert, Store, open_store
from elastic.store.dialects import create_store_engine
from elastic.store.lock import hold_database
from elastic.store.migrate import alembic_config, head_revision
from elastic.store.schema import metadata
from elastic.tasks import NewTask

T0 = 1_800_000_000.0


def elastic(*args: str) -> Any:
    """``elastic ARGS`` in-process; the click result (exit_code, output)."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def mutation(task_id: str) -> NewTask:
    """A tiny evolution_mutation task."""
    return NewTask(task_id=task_id, type="evolution_mutation", priority=5,
                   data={"genome": {"a": 0.5}, "mutation_rate": 0.1})


def fill(store: Store) -> None:
    """A queue in every state: pending, running, completed, held, cancelled; a budget; the
    orchestrator clock of an expiry pass; an alert waiting to be sent."""
    store.submit_tasks([mutation(f"t{n}") for n in range(6)], now=T0)
    store.register_worker("w1", worker_type="evolution", capabilities={}, capacity=4, now=T0)
    leases = store.lease_tasks("w1", limit=4, now=T0 + 1)
    store.record_result(leases[0].task.task_id, worker_id="w1", lease_token=leases[0].lease_token,
                        result={"success": True, "genome": {"a": 0.51}}, now=T0 + 2)
    store.record_result(leases[1].task.task_id, worker_id="w1", lease_token=leases[1].lease_token,
                        result={"success": False, "error": "bad", "retryable": False}, now=T0 + 2)
    store.cancel_task("t5", now=T0 + 3)
    store.reserve_provider_request("groq", key_fingerprint("k"), worker_id="w1", tokens=5,
                                   since=T0 - 60, available_at=lambda usage: T0, now=T0 + 4)
    store.pause_provider_budget("groq", "", T0 + 100)
    store.expire_leases(now=T0 + 5)
    store.enqueue_alerts([NewAlert(event="task.failed", subject="t1", channel="webhook",
                                   target="http://127.0.0.1:9/hook", text="t1 held")],
                         repeat_seconds=0.0, now=T0 + 6)


def every_row(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every table's rows, in primary-key order."""
    engine = create_store_engine(url)
    try:
        with engine.connect() as connection:
            return {table.name: [dict(row) for row in connection.execute(
                select(table).order_by(*table.primary_key.columns)).mappings()]
                for table in metadata.sorted_tables}
    finally:
        engine.dispose()


def test_db_copy_moves_every_row_of_a_sqlite_queue_to_postgresql_and_new_ids_follow(
        tmp_path: Path, postgres_url: str) -> None:
    source = f"sqlite:///{tmp_path}/elastic.db"
    store = open_store(source)
    fill(store)
    store.close()

    result = elastic("db", "copy", source, postgres_url)

    assert result.exit_code == 0, result.output
    assert "tasks 6" in result.output and "attempts 4" in result.output
    copied, original = every_row(postgres_url), every_row(source)
    assert copied == original
    assert all(original[table.name] for table in metadata.sorted_tables)
    target = open_store(postgres_url)
    try:
        target.submit_tasks([mutation("after")], now=T0 + 10)
        [lease] = target.lease_tasks("w1", now=T0 + 11, limit=1)
        granted = target.reserve_provider_request(
            "groq", key_fingerprint("k"), worker_id="w1", tokens=1, since=T0,
            available_at=lambda usage: T0, now=T0 + 12)
    finally:
        target.close()
    assert lease.task.task_id == "t4" and granted.reservation_id is not None
    after = every_row(postgres_url)
    assert max(r["seq"] for r in after["tasks"]) == max(r["seq"] for r in original["tasks"]) + 1
    assert len(after["attempts"]) == 5 and len(after["provider_requests"]) == 2


def test_db_copy_refuses_a_target_that_holds_rows_and_a_source_a_server_holds(
        tmp_path: Path) -> None:
    source, target = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    store = open_store(source)
    fill(store)
    store.close()
    assert elastic("db", "copy", source, target).exit_code == 0

    again = elastic("db", "copy", source, target)
    lock = hold_database(source, command="elastic serve")
    try:
        held = elastic("db", "copy", source, f"sqlite:///{tmp_path}/c.db")
        live = elastic("db", "copy", "--live", source, f"sqlite:///{tmp_path}/d.db")
    finally:
        assert lock is not None
        lock.release()

    assert again.exit_code == 2 and "already holds" in again.output
    assert held.exit_code == 2 and "in use by elastic serve" in held.output
    assert live.exit_code == 0 and every_row(f"sqlite:///{tmp_path}/d.db") == every_row(source)


def test_db_copy_refuses_a_source_behind_the_newest_schema(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path}/old.db"
    engine = create_store_engine(source)
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    engine.dispose()

    result = elastic("db", "copy", source, f"sqlite:///{tmp_path}/new.db")

    assert result.exit_code == 2
    assert "revision 0001" in result.output and "elastic db upgrade --db" in result.output


def test_db_current_says_whether_an_upgrade_is_due_and_db_upgrade_does_it(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/fresh.db"

    before = elastic("db", "current", "--db", url)
    upgraded = elastic("db", "upgrade", "--db", url)
    after = elastic("db", "current", "--db", url)

    assert before.exit_code == 1 and "empty" in before.output and "elastic db upgrade" in before.output
    assert upgraded.exit_code == 0 and f"empty -> {head_revision()}" in upgraded.output
    assert after.exit_code == 0 and after.output.strip() == f"{head_revision()} (head)"


def test_a_second_server_on_one_sqlite_file_exits_2_naming_it_and_the_holder(
        start_server: Callable[..., ServerProcess], project_folder: Path) -> None:
    url = f"sqlite:///{project_folder}/elastic.db"
    first = start_server(url)
    assert first.process is not None

    second = elastic("serve", "--db", url, "--port", "0",
                     "--config", str(project_folder / "elastic.toml"))
    batch = project_folder / "batch.json"
    batch.write_text(json.dumps({"tasks": [{"type": "evolution_mutation", "data": {
        "genome": {"a": 0.5}, "mutation_rate": 0.1}}]}))
    run = elastic("run", str(batch), "--db", url, "--workers", "1",
                  "--config", str(project_folder / "elastic.toml"))
    first.kill()
    third = start_server(url)

    for refused, command_name in ((second, "elastic serve"), (run, "elastic serve")):
        assert refused.exit_code == 2
        [line] = [line for line in refused.output.splitlines() if line.startswith("error:")]
        assert str(project_folder / "elastic.db") in line and command_name in line
        assert f"pid {first.process.pid} on {socket.gethostname()}" in line
    assert third.process is not None and third.process.poll() is None
    holder = json.loads((project_folder / "elastic.db.lock").read_text())
    assert holder["pid"] == third.process.pid and holder["pid"] != os.getpid()
