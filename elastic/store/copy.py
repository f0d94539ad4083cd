"""``elastic db copy``: move a whole queue from one database to another (SQLite to PostgreSQL).

Every table of the schema is copied, row for row with its ids, from one consistent
snapshot of the source (one read transaction: on SQLite's WAL a running server may
go on writing, and what it writes after the snapshot is simply not copied) into an
empty target, in one write transaction, so a failure leaves the target empty. Then
PostgreSQL's id sequences are moved past the copied ids and the row counts are
compared table by table.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection, Engine

from elastic.errors import ElasticError
from elastic.store.dialects import READ_ONLY, create_store_engine, reset_sequences
from elastic.store.migrate import current_revision, head_revision, upgrade_to_head
from elastic.store.schema import metadata

BATCH_ROWS = 1000


class CopyRefused(ElasticError):
    """The copy cannot start: the source is not at the newest schema, or the target is not empty."""

    exit_code = 2


@dataclass(frozen=True)
class CopyReport:
    """Rows copied per table, in the order the tables were copied."""

    rows: dict[str, int]

    @property
    def total(self) -> int:
        """Rows copied in all."""
        return sum(self.rows.values())


def copy_database(source_url: str, target_url: str) -> CopyReport:
    """Copy every table from ``source_url`` into ``target_url``, which must be empty.

    The target's schema is created (or upgraded) first.

    Raises:
        CopyRefused: the source is behind the newest schema, or the target holds rows.
    """
    source, target = create_store_engine(source_url), create_store_engine(target_url)
    try:
        _check_source(source, source_url)
        upgrade_to_head(target)
        with source.connect() as reading, target.begin() as writing:
            snapshot = reading.execution_options(**{READ_ONLY: True})
            with snapshot.begin():
                _check_target_empty(writing, target_url)
                rows = {table.name: _copy_table(snapshot, writing, table.name)
                        for table in metadata.sorted_tables}
                reset_sequences(writing, metadata.sorted_tables)
                _check_counts(writing, rows)
        return CopyReport(rows)
    finally:
        source.dispose()
        target.dispose()


def _check_source(engine: Engine, url: str) -> None:
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise CopyRefused(f"the source database is at schema revision {current} and this "
                          f"elastic writes {head}: run `elastic db upgrade --db {url}` first")


def _check_target_empty(connection: Connection, url: str) -> None:
    for table in metadata.sorted_tables:
        count = connection.scalar(select(func.count()).select_from(table))
        if count:
            raise CopyRefused(f"the target database {url} already holds {count} row(s) in "
                              f"{table.name}: copy into an empty database")


def _copy_table(reading: Connection, writing: Connection, name: str) -> int:
    """Stream one table's rows, in primary-key order, into the target; returns how many."""
    table = metadata.tables[name]
    query = select(table).order_by(*table.primary_key.columns)
    copied = 0
    result = reading.execution_options(yield_per=BATCH_ROWS).execute(query).mappings()
    for batch in result.partitions():
        writing.execute(insert(table), [dict(row) for row in batch])
        copied += len(batch)
    return copied


def _check_counts(connection: Connection, rows: dict[str, int]) -> None:
    for name, expected in rows.items():
        found = connection.scalar(select(func.count()).select_from(metadata.tables[name]))
        if found != expected:
            raise ElasticError(f"copy check failed: {name} has {found} row(s) in the target "
                               f"but {expected} were copied; nothing was committed")
