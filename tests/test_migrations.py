"""Alembic migrations produce exactly the schema in elastic/store/schema.py, on every database."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from elastic.store import Store
from elastic.store.migrate import alembic_config, current_revision, head_revision, upgrade_to_head
from elastic.store.schema import metadata, tasks
from elastic.tasks import NewTask, content_hash


def test_upgrade_head_matches_the_schema_module(store: Store) -> None:
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []


def test_the_database_is_at_the_newest_revision_and_upgrading_again_is_harmless(
        store: Store) -> None:
    assert current_revision(store.engine) == head_revision()
    upgrade_to_head(store.engine)
    assert current_revision(store.engine) == head_revision()


def test_upgrading_to_the_content_hash_fills_it_for_the_tasks_already_there(
        store: Store) -> None:
    task = NewTask(task_id="old", type="evolution_mutation",
                   data={"genome": {"a": 1.0}, "mutation_rate": 0.1})
    store.submit_tasks([task])
    config = alembic_config()
    with store.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0003")
    upgrade_to_head(store.engine)
    with store.engine.connect() as connection:
        stored = connection.scalar(select(tasks.c.content_hash))
    assert stored == content_hash(task.type, task.data)
    assert store.submit_tasks([task])[0].changed is False
