"""Alembic environment shared by SQLite and PostgreSQL; the schema comes from elastic.store.schema.

elastic runs it with an open connection (``elastic.store.migrate``). From the command
line (``alembic upgrade head``, ``alembic revision --autogenerate``) it opens the
database named by ``-x url=...``, else ``$ELASTIC_DATABASE_URL``, else ./elastic.db.
"""

from __future__ import annotations

import os

from alembic import context

from elastic.store.dialects import create_store_engine
from elastic.store.schema import metadata


def run_migrations(connection: object) -> None:
    """Run the pending migrations on ``connection`` in one transaction."""
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if "connection" in context.config.attributes:
    run_migrations(context.config.attributes["connection"])
else:
    url = (context.get_x_argument(as_dictionary=True).get("url")
           or os.environ.get("ELASTIC_DATABASE_URL") or "sqlite:///elastic.db")
    with create_store_engine(url).begin() as opened:
        run_migrations(opened)
