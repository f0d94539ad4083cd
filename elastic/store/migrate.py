"""Schema migrations through Alembic's API, from the migrations/ folder installed as elastic.migrations."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from elastic.store.dialects import lock_schema

MIGRATIONS_PATH = str(resources.files("elastic.migrations"))


def alembic_config() -> AlembicConfig:
    """An Alembic config pointing at the packaged migrations folder."""
    config = AlembicConfig()
    config.set_main_option("script_location", MIGRATIONS_PATH)
    return config


def upgrade_to_head(engine: Engine) -> None:
    """Create or upgrade the schema to the newest revision.

    Replicas starting together on one PostgreSQL database take turns (the first
    migrates, the others then find it done); on SQLite the write transaction does it.
    """
    config = alembic_config()
    with engine.begin() as connection:
        lock_schema(connection)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None for an empty database)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """The newest revision shipped with this version of elastic."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()
