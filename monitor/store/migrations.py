"""Schema migrations: STEPS[n] upgrades a database from version n to n + 1.

`Store.open` creates missing tables with `metadata.create_all` (new tables need no step) and runs the
steps between the stored version and `schema.SCHEMA_VERSION` for changes to existing tables, in the
same transaction as the version update: a migration that fails leaves the database as it was.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Connection

from monitor.core.endpoints import classify
from monitor.core.errors import StoreError
from monitor.store.views import ENDPOINT_KEY_SQL, endpoint_key, rebuild_rollups


def _v1_to_v2(conn: Connection) -> None:
    """The compact store: copy the `requests` table into the dictionaries and `request_rows` (integer
    time), build the rollups from them, then drop the table (the `requests` view replaces it).

    Every row keeps its id (the line key), so checkpoints, rejects and exactly-once are untouched; the
    other tables (files, checkpoints, alerts, approvals, windows, outbox) do not change. `window_state`
    is new and starts empty (`create_all` makes it): the windows of schema 1 have feature rows and no
    state, and the detector adopts them as computed from the requests stored in them then. On SQLite the
    file keeps its size until `VACUUM` (the pages freed are reused by new rows).
    """
    sqlite = conn.dialect.name == "sqlite"
    conn.execute(text("INSERT INTO source_names (name) SELECT DISTINCT source FROM requests"))
    conn.execute(text("INSERT INTO clients (ip) SELECT DISTINCT client_ip FROM requests"))
    conn.execute(
        text(
            "INSERT INTO agents (user_agent) SELECT DISTINCT user_agent FROM requests WHERE user_agent IS NOT NULL"
        )
    )
    pairs = conn.execute(text("SELECT DISTINCT method, path FROM requests")).all()
    if pairs:
        conn.execute(
            text("INSERT INTO endpoints (key, method, path, category) VALUES (:k, :m, :p, :c)"),
            [{"k": endpoint_key(m, p), "m": m, "p": p, "c": classify(m, p).value} for m, p in pairs],
        )
    if sqlite:
        # Stored as `2025-03-21 08:52:32.000000` (UTC): whole seconds, then the microseconds.
        ts = (
            "CAST(strftime('%s', substr(q.ts, 1, 19)) AS INTEGER) * 1000000"
            " + CAST(substr(q.ts || '.000000', 21, 6) AS INTEGER)"
        )
    else:
        ts = "CAST(EXTRACT(EPOCH FROM q.ts) * 1000000 AS BIGINT)"
    conn.execute(
        text(
            "INSERT INTO request_rows (id, ts, client_id, endpoint_id, status, latency_ms, bytes_sent, agent_id, "
            f"forwarded_for, peer_ip, source_id) SELECT q.id, {ts}, c.id, e.id, q.status, q.latency_ms, q.bytes_sent, "
            "a.id, q.forwarded_for, q.peer_ip, s.id FROM requests q "
            "JOIN clients c ON c.ip = q.client_ip "
            f"JOIN endpoints e ON e.key = {ENDPOINT_KEY_SQL.format(m='q.method', p='q.path')} "
            "LEFT JOIN agents a ON a.user_agent = q.user_agent "
            "JOIN source_names s ON s.name = q.source"
        )
    )
    moved = conn.execute(text("SELECT count(*) FROM request_rows")).scalar_one()
    before = conn.execute(text("SELECT count(*) FROM requests")).scalar_one()
    if moved != before:
        raise StoreError(f"migration to schema 2 copied {moved} of {before} requests; nothing was changed")
    rebuild_rollups(conn)
    conn.execute(text("DROP TABLE requests"))


STEPS: dict[int, Callable[[Connection], None]] = {1: _v1_to_v2}


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
