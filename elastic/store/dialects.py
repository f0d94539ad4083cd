"""The ONLY database-specific code: engine setup, write transactions and wake-ups per dialect.

SQLite: WAL, a busy timeout, foreign keys, and ``BEGIN IMMEDIATE`` for write
transactions so that the lease statement runs single-writer (pysqlite's own
transaction handling is switched off, as SQLAlchemy's SQLite docs recommend).
Long polls re-check every half second for other processes' writes.
PostgreSQL: psycopg 3, READ COMMITTED; the lease uses ``FOR UPDATE SKIP LOCKED``;
long polls wake on LISTEN/NOTIFY (``notify.PostgresNotifier``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import Table, create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError

from elastic.errors import ConfigError
from elastic.store.notify import Notifier, PostgresNotifier

SQLITE_BUSY_TIMEOUT_MS = 30_000
READ_ONLY = "elastic_read_only"
SCHEMA_LOCK_KEY = 0x656C6173  # "elas": the advisory lock that serialises migrations
# PostgreSQL's deadlock_detected and serialization_failure: the transaction may run again.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


def create_store_engine(url: str) -> Engine:
    """An engine for ``url`` with elastic's per-dialect settings applied.

    Raises:
        ConfigError: the URL is not a SQLite or PostgreSQL URL.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError("database_url", "flag or config",
                          "a URL such as sqlite:///elastic.db or postgresql://host/db", url) from None
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)
    raise ConfigError("database_url", "flag or config", "a sqlite:// or postgresql:// URL", url)


def shown_url(url: str) -> str:
    """A database URL as it may be shown: without its password."""
    return make_url(url).render_as_string(hide_password=True)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite database URL; None for an in-memory one or another database."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).resolve()


def create_notifier(engine: Engine) -> Notifier:
    """The wake-ups for long polls on ``engine``: LISTEN/NOTIFY on PostgreSQL, else polling."""
    if engine.dialect.name == "postgresql":
        conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        return PostgresNotifier(conninfo)
    return Notifier()


class GroupCommit:
    """Makes SQLite commits durable with one fsync shared by every commit waiting for it.

    Connections run ``synchronous=NORMAL`` (a commit writes the WAL, no fsync), and
    each write transaction calls ``flush`` after its commit and before anyone is told
    it happened: a commit's pages are in the WAL file once it returns, so an
    ``fdatasync`` of the WAL started after that makes it durable. One caller syncs;
    those that commit meanwhile wait for the next sync, which covers them all (group
    commit): under load one fsync (2-3 ms here) serves many transactions instead of
    each paying its own, and nothing is acknowledged before it is on disk. A database
    without a WAL file (in memory) needs no flush.
    """

    def __init__(self, wal_path: Path | None) -> None:
        self.wal_path = wal_path
        self._changed = threading.Condition()
        self._committed = 0  # commits registered
        self._synced = 0  # commits known durable
        self._syncing = False

    def flush(self) -> None:
        """Return once every commit made before this call is on disk."""
        if self.wal_path is None:
            return
        with self._changed:
            self._committed += 1
            mine = self._committed
            while self._synced < mine:
                if self._syncing:
                    self._changed.wait()
                    continue
                self._syncing, target = True, self._committed
                try:
                    self._changed.release()
                    try:
                        self._sync_wal()
                    finally:
                        self._changed.acquire()
                finally:
                    self._syncing = False
                    self._changed.notify_all()
                self._synced = max(self._synced, target)

    def _sync_wal(self) -> None:
        """fdatasync the WAL (opened each time: SQLite may delete and recreate it)."""
        try:
            descriptor = os.open(str(self.wal_path), os.O_RDONLY)
        except FileNotFoundError:  # checkpointed and removed: the database file holds all
            return
        try:
            os.fdatasync(descriptor)
        finally:
            os.close(descriptor)


class WriteTurns:
    """SQLite's one writer at a time, taken in turn by this process's threads (first come,
    first served).

    Without it, threads that find the database locked poll for it in SQLite's busy
    handler, sleeping 1, 2, 5... ms between tries, while the thread that just wrote
    takes the lock again at once: under load one thread could lease every task while
    the others sleep. Waiting here, each is woken the moment its turn comes. Other
    processes (``elastic ingest --db``) still meet the busy timeout.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._next_ticket = 0
        self._serving = 0

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the write turn for the ``with`` block."""
        with self._changed:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._changed.wait_for(lambda: self._serving == ticket)
        try:
            yield
        finally:
            with self._changed:
                self._serving += 1
                self._changed.notify_all()


def create_write_turns(engine: Engine) -> Callable[[], AbstractContextManager[None]]:
    """What a write transaction holds: a turn on SQLite (one writer anyway, see
    ``WriteTurns``); nothing on PostgreSQL, whose row locks let writers run together."""
    return WriteTurns().turn if engine.dialect.name == "sqlite" else nullcontext


def create_group_commit(engine: Engine) -> GroupCommit:
    """The commit flush for ``engine``: group fsync of a SQLite file's WAL; nothing on
    PostgreSQL, whose commit is durable by itself."""
    if engine.dialect.name != "sqlite":
        return GroupCommit(None)
    path = sqlite_path(engine.url.render_as_string(hide_password=False))
    return GroupCommit(None if path is None else Path(f"{path}-wal"))


def is_lock_conflict(error: Exception) -> bool:
    """Whether a transaction failed only for losing a lock race, so that it may run again:
    SQLite's "database is locked", PostgreSQL's deadlock or serialization failure (which
    replicas meet when their transactions cross)."""
    return ("locked" in str(error).lower()
            or getattr(getattr(error, "orig", None), "sqlstate", None) in RETRYABLE_SQLSTATES)


def lock_schema(connection: Connection) -> None:
    """Hold the schema for the rest of the transaction, so that two processes never migrate
    at once (SQLite's ``BEGIN IMMEDIATE`` already makes a write transaction the only one)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})


def reset_sequences(connection: Connection, tables: Sequence[Table]) -> None:
    """After rows were inserted with their ids, make new ids start past them.

    PostgreSQL's serial columns draw from a sequence that explicit ids do not move;
    SQLite takes the largest id plus one by itself.
    """
    if connection.dialect.name != "postgresql":
        return
    for table in tables:
        column = table.autoincrement_column
        if column is not None:
            connection.execute(text(
                f"SELECT setval(pg_get_serial_sequence(:table, :column), "
                f"coalesce(max({column.name}), 1), max({column.name}) IS NOT NULL) "
                f"FROM {table.name}"), {"table": table.name, "column": column.name})


def _sqlite_engine(url: str) -> Engine:
    database = sqlite_path(url)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        pool_size=8,
        max_overflow=24,
    )

    @event.listens_for(engine, "connect")
    def configure_connection(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable through GroupCommit.flush
        cursor.close()

    @event.listens_for(engine, "begin")
    def begin_transaction(connection: Any) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine
