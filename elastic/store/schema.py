"""The database schema: the single source for Alembic migrations and the store's queries.

Times are seconds since the epoch (UTC) stored as double precision floats, so both
SQLite and PostgreSQL compare them the same way.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Timestamp = Float(precision=53)

tasks = Table(
    "tasks",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("task_id", String(200), nullable=False, unique=True),
    Column("type", String(64), nullable=False),
    Column("data", JSON, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("algorithm", String(64)),
    Column("model", String(200)),
    Column("estimated_tokens", Integer, nullable=False, server_default="0"),
    Column("description", Text),
    Column("source", String(500)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("max_retries", Integer, nullable=False),
    Column("worker_id", String(200)),
    Column("lease_token", Integer, nullable=False, server_default="0"),
    Column("lease_expires_at", Timestamp),
    Column("progress", Float(precision=53)),
    Column("checkpoint", JSON),
    Column("result", JSON),
    Column("error", Text),
    Column("created_at", Timestamp, nullable=False),
    Column("started_at", Timestamp),
    Column("finished_at", Timestamp),
    Column("exported", Integer, nullable=False, server_default="0"),
    Index("ix_tasks_queue", "status", "priority", "seq"),
    Index("ix_tasks_worker", "worker_id", "status"),
    Index("ix_tasks_finished", "exported", "finished_at"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", String(200), ForeignKey("tasks.task_id", ondelete="CASCADE"),
           nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("worker_id", String(200), nullable=False),
    Column("lease_token", Integer, nullable=False),
    Column("started_at", Timestamp, nullable=False),
    Column("ended_at", Timestamp),
    Column("outcome", String(16), nullable=False),
    Column("error", Text),
)

workers = Table(
    "workers",
    metadata,
    Column("worker_id", String(200), primary_key=True),
    Column("worker_type", String(64), nullable=False),
    Column("capabilities", JSON, nullable=False),
    Column("task_types", JSON, nullable=False),
    Column("algorithms", JSON, nullable=False),
    Column("models", JSON, nullable=False),
    Column("capacity", Integer, nullable=False, server_default="1"),
    Column("status", String(16), nullable=False),
    Column("registered_at", Timestamp, nullable=False),
    Column("last_heartbeat_at", Timestamp, nullable=False),
    Column("tasks_completed", Integer, nullable=False, server_default="0"),
    Column("tasks_failed", Integer, nullable=False, server_default="0"),
    Column("info", JSON, nullable=False),
)
