"""Durable task and worker state: open a Store on SQLite or PostgreSQL."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from elastic.errors import ConfigError, ElasticError
from elastic.store.dialects import create_store_engine, sqlite_path
from elastic.store.migrate import current_revision, upgrade_to_head
from elastic.store.store import (
    BudgetReservation,
    BudgetUsage,
    CountedRequest,
    ExpiryReport,
    FinishedSummary,
    NewAlert,
    QueueCount,
    QueuedAlert,
    QueueMetrics,
    ReportedResult,
    Store,
    UnservableWork,
)
from elastic.tasks import RetryPolicy, SubmitOutcome


def open_store(url: str, *, max_retries: int = 3, lease_seconds: float = 90.0,
               worker_timeout_seconds: float = 60.0, task_timeout_seconds: float = 3600.0,
               retry: RetryPolicy | None = None, load_balancing: str = "priority",
               upgrade: bool = True,
               create: bool = True) -> Store:
    """Open the database at ``url``, upgrading its schema to the newest migration.

    Args:
        create: make the database (a SQLite file, elastic's tables) if there is none;
            only ``serve`` and ``run`` do, other commands never create one by accident.

    Raises:
        ConfigError: ``create`` is False and there is no elastic database at ``url``.
    """
    if not create:
        _check_exists(url)
    engine = create_store_engine(url)
    if not create and current_revision(engine) is None:
        engine.dispose()
        raise ConfigError("database_url", "flag or config", "an elastic database (this one "
                          "has no elastic tables; elastic serve creates them)", url)
    if upgrade:
        try:
            upgrade_to_head(engine)
        except OperationalError as exc:
            shown = engine.url.render_as_string(hide_password=True)
            raise ElasticError(f"cannot open the database {shown}: "
                               f"{str(exc.orig).strip().splitlines()[0]}") from None
    return Store(engine, max_retries=max_retries, lease_seconds=lease_seconds,
                 worker_timeout_seconds=worker_timeout_seconds,
                 task_timeout_seconds=task_timeout_seconds, retry=retry,
                 load_balancing=load_balancing)


def _check_exists(url: str) -> None:
    path = sqlite_path(url)
    if path is not None and not path.exists():
        raise ConfigError("database_url", "flag or config",
                          f"an existing database (no file at {path}; elastic serve "
                          "creates it)", url)


__all__ = ["BudgetReservation", "BudgetUsage", "CountedRequest", "ExpiryReport", "FinishedSummary",
           "NewAlert", "QueueCount", "QueueMetrics", "QueuedAlert", "ReportedResult", "Store",
           "SubmitOutcome", "UnservableWork", "open_store"]
