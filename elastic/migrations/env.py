"""Alembic environment shared by SQLite and PostgreSQL; the schema comes from elastic.store.schema."""

from __future__ import annotations

from alembic import context

from elastic.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
