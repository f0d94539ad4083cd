"""Durable task and worker state: open a Store on SQLite or PostgreSQL."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from elastic.errors import ElasticError
from elastic.store.dialects import create_store_engine
from elastic.store.migrate import upgrade_to_head
from elastic.store.store import (
    BudgetReservation,
    BudgetUsage,
    CountedRequest,
    ExpiryReport,
    Store,
    SubmitOutcome,
    UnservableWork,
)
from elastic.tasks import RetryPolicy


def open_store(url: str, *, max_retries: int = 3, lease_seconds: float = 90.0,
               worker_timeout_seconds: float = 60.0, task_timeout_seconds: float = 3600.0,
               retry: RetryPolicy | None = None, upgrade: bool = True) -> Store:
    """Open the database at ``url``, upgrading its schema to the newest migration."""
    engine = create_store_engine(url)
    if upgrade:
        try:
            upgrade_to_head(engine)
        except OperationalError as exc:
            shown = engine.url.render_as_string(hide_password=True)
            raise ElasticError(f"cannot open the database {shown}: "
                               f"{str(exc.orig).strip().splitlines()[0]}") from None
    return Store(engine, max_retries=max_retries, lease_seconds=lease_seconds,
                 worker_timeout_seconds=worker_timeout_seconds,
                 task_timeout_seconds=task_timeout_seconds, retry=retry)


__all__ = ["BudgetReservation", "BudgetUsage", "CountedRequest", "ExpiryReport", "Store",
           "SubmitOutcome", "UnservableWork", "open_store"]
