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
    Column("content_hash", String(64)),
    Column("description", Text),
    Column("source", String(500)),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("worker_deaths", Integer, nullable=False, server_default="0"),
    Column("max_retries", Integer, nullable=False),
    Column("held_reason", String(32)),
    Column("timeout_seconds", Float(precision=53)),  # None: the server's task_timeout_seconds
    # Retries wait until not_before; the worker that failed it last until avoid_until.
    Column("not_before", Timestamp, nullable=False, server_default="0"),
    Column("avoid_worker_id", String(200)),
    Column("avoid_until", Timestamp),
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
    # A replica writing the task to a results file holds it until then (a claim that a
    # crash lets run out), so that replicas never write a task twice.
    Column("export_claimed_until", Timestamp),
    # The batch id written into the results file: after a crash between writing the file
    # and marking its tasks exported, the file itself says whether they are in it.
    Column("export_batch", String(32)),
    Index("ix_tasks_queue", "status", "priority", "seq"),
    Index("ix_tasks_worker", "worker_id", "status"),
    Index("ix_tasks_finished", "exported", "finished_at"),
    Index("ix_tasks_status_type", "status", "type"),  # /metrics: tasks by state and type
)

# The poll: one index lookup, in the order it takes tasks (urgent first, then oldest).
Index("ix_tasks_lease", tasks.c.status, tasks.c.type, tasks.c.priority.desc(), tasks.c.seq)

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
    Index("ix_attempts_outcome", "outcome", "attempt"),  # /metrics: expiries and retries
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
    # SHA-256 of the secret register gave it (None: registered without asking for one).
    Column("secret_hash", String(64)),
)

# Each worker's measured speed per task type and kernel ('' for a task naming none):
# a moving average of the seconds its completed attempts took, read by the `fastest`
# load balancing. Deleted with the worker.
worker_speeds = Table(
    "worker_speeds",
    metadata,
    Column("worker_id", String(200), ForeignKey("workers.worker_id", ondelete="CASCADE"),
           primary_key=True),
    Column("task_type", String(64), primary_key=True),
    Column("algorithm", String(64), primary_key=True),
    Column("seconds_per_task", Float(precision=53), nullable=False),
    Column("samples", Integer, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

# One row: when an orchestrator last ran the expiry pass. A starting orchestrator shifts
# worker and lease clocks by the time since then (its downtime), and by nothing while
# another replica keeps it fresh.
orchestrator_clock = Table(
    "orchestrator_clock",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("last_expiry_at", Timestamp, nullable=False),
)

# Provider budgets shared by every worker and replica: one row per provider and API key
# (``key_id`` is the key's fingerprint, never the key; '' is the provider used without a
# key, whose cooldown also rests every key of it), and one row per request counted.
provider_budgets = Table(
    "provider_budgets",
    metadata,
    Column("provider", String(64), primary_key=True),
    Column("key_id", String(64), primary_key=True),
    Column("cooldown_until", Timestamp),
)

provider_requests = Table(
    "provider_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("reservation_id", String(64), nullable=False, unique=True),
    Column("provider", String(64), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("worker_id", String(200), nullable=False),
    Column("requested_at", Timestamp, nullable=False),
    Column("tokens", Integer, nullable=False),
    Index("ix_provider_requests_budget", "provider", "key_id", "requested_at"),
)

# Alerts waiting to be sent (webhook or email), written where the event is seen and sent
# by a background thread of `elastic serve`: they survive a restart, are retried with
# backoff (due_at), and a replica claims rows before sending them (claimed_by,
# claimed_until: a claim a dead sender leaves runs out), so each is sent once.
alert_outbox = Table(
    "alert_outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event", String(32), nullable=False),  # task.failed, worker.dead, ...
    Column("subject", String(200), nullable=False),  # the task, worker or provider it is about
    Column("channel", String(16), nullable=False),  # webhook or email
    Column("target", String(500), nullable=False),  # the URL or the addresses
    Column("text", Text, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("due_at", Timestamp, nullable=False),
    Column("tries", Integer, nullable=False, server_default="0"),
    Column("claimed_by", String(200)),
    Column("claimed_until", Timestamp),
    Column("sent_at", Timestamp),
    Column("last_error", Text),
    Index("ix_alert_outbox_due", "sent_at", "due_at"),
    Index("ix_alert_outbox_subject", "event", "subject", "created_at"),
)
