"""Record every task status change the database sees, with a trigger on the tasks table.

The recording is done by the database itself (SQLite or PostgreSQL), so it sees every
UPDATE the store runs, whichever method ran it. Used to check the store against the
state machine in ``elastic.tasks``.
"""

from __future__ import annotations

from sqlalchemy import text

from elastic.store import Store

SQLITE_TRIGGER = (
    "CREATE TABLE status_transitions (id INTEGER PRIMARY KEY, old TEXT, new TEXT)",
    "CREATE TRIGGER record_status_transitions AFTER UPDATE OF status ON tasks "
    "WHEN OLD.status <> NEW.status BEGIN "
    "INSERT INTO status_transitions (old, new) VALUES (OLD.status, NEW.status); END",
)
POSTGRES_TRIGGER = (
    "CREATE TABLE status_transitions (id SERIAL PRIMARY KEY, old TEXT, new TEXT)",
    "CREATE FUNCTION record_status_transition() RETURNS trigger AS $$ BEGIN "
    "INSERT INTO status_transitions (old, new) VALUES (OLD.status, NEW.status); "
    "RETURN NEW; END $$ LANGUAGE plpgsql",
    "CREATE TRIGGER record_status_transitions AFTER UPDATE OF status ON tasks FOR EACH ROW "
    "WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION record_status_transition()",
)


def start_recording(store: Store) -> None:
    """From now on, note every (old, new) status pair written to ``store``'s tasks table."""
    statements = SQLITE_TRIGGER if store.engine.dialect.name == "sqlite" else POSTGRES_TRIGGER
    with store.engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))


def recorded_transitions(store: Store) -> list[tuple[str, str]]:
    """The (old, new) status pairs written since ``start_recording``, in order."""
    with store.engine.connect() as connection:
        rows = connection.execute(text("SELECT old, new FROM status_transitions ORDER BY id"))
        return [(row.old, row.new) for row in rows]
