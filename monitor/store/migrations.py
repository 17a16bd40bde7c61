"""Schema migrations: STEPS[n] upgrades a database from version n to n + 1.

`Store.open` creates missing tables with `metadata.create_all` (new tables need no step) and runs the
steps between the stored version and `schema.SCHEMA_VERSION` for changes to existing tables.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import MetaData, inspect
from sqlalchemy.engine import Connection

from monitor.errors import StoreError

STEPS: dict[int, Callable[[Connection], None]] = {}


def migrate(conn: Connection, current: int) -> None:
    from monitor.store.schema import SCHEMA_VERSION

    for version in range(current, SCHEMA_VERSION):
        step = STEPS.get(version)
        if step is None:
            raise StoreError(f"no migration from schema version {version} to {version + 1}")
        step(conn)


# --- is this database ours, and at which version? (checked by Store.open before anything is created) ---


def parse_version(raw: object) -> int:
    """The stored schema version as an int; StoreError (exit 73) for what no ollama-monitor writes."""
    text = str(raw).strip()
    if not text.isdigit():
        raise StoreError(
            f"the database's schema version is {str(raw)!r}, not a whole number: the database is damaged "
            "or was not made by ollama-monitor",
            hint="point [database] url at ollama-monitor's own database (or a new file)",
        )
    return int(text)


def refuse_foreign(conn: Connection, table_names: set[str]) -> None:
    """Refuse a database that holds tables of our names but was not made by ollama-monitor (no schema
    version in a `meta` table of ours): `create_all` would skip them and the first insert would fail."""
    existing = set(inspect(conn).get_table_names())
    clash = sorted(existing & table_names)
    if not clash:
        return
    ours = False
    if "meta" in existing:
        columns = {c["name"] for c in inspect(conn).get_columns("meta")}
        if {"key", "value"} <= columns:
            ours = conn.exec_driver_sql("SELECT 1 FROM meta WHERE key = 'schema_version'").first() is not None
    if not ours:
        raise StoreError(
            f"the database already holds table(s) {', '.join(clash)} that ollama-monitor did not create",
            hint="give ollama-monitor a database of its own in [database] url",
        )


def check_columns(conn: Connection, metadata: MetaData) -> None:
    """At the current version every table of ours has every column of the schema; a table that lacks
    some was made by another program (and adopted before this check existed)."""
    found = inspect(conn)
    existing = set(found.get_table_names())
    for table in metadata.sorted_tables:
        if table.name not in existing:
            continue
        have = {c["name"] for c in found.get_columns(table.name)}
        missing = [c.name for c in table.columns if c.name not in have]
        if missing:
            raise StoreError(
                f"the database's table {table.name!r} lacks column(s) {', '.join(missing[:5])}: "
                "it was not made by ollama-monitor",
                hint="give ollama-monitor a database of its own in [database] url",
            )
