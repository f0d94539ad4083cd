"""Alembic migrations produce exactly the schema in elastic/store/schema.py, on every database."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from elastic.store import Store
from elastic.store.migrate import current_revision, head_revision, upgrade_to_head
from elastic.store.schema import metadata


def test_upgrade_head_matches_the_schema_module(store: Store) -> None:
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []


def test_the_database_is_at_the_newest_revision_and_upgrading_again_is_harmless(
        store: Store) -> None:
    assert current_revision(store.engine) == head_revision()
    upgrade_to_head(store.engine)
    assert current_revision(store.engine) == head_revision()
