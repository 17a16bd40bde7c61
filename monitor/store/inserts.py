"""The insert of a batch's rows into `request_rows` and its rollups, inside the caller's transaction
(Store.add_batch, which commits them with the checkpoint that covers them).

The rows come as columns (monitor.store.rows): the batch's distinct texts are mapped to dictionary
ids, and the columns are zipped into the executemany in C. When none of the batch's lines was stored
before, the rollups the batch carries are exactly what the insert added; otherwise (a replay after a
crash) they are the aggregate of the file's id range after the insert minus before it, in SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from monitor.core.errors import StoreError
from monitor.core.records import Request
from monitor.store import schema, views
from monitor.store.dictionary import Dictionaries
from monitor.store.rows import SqliteRows, rollup_key, sqlite_rows

_MAX_OFFSET = 1 << schema.LINE_OFFSET_BITS


def insert_requests(
    conn: Connection,
    d: Dictionaries,
    source: str,
    file_id: int,
    parsed: Sequence[tuple[int, Request]] | SqliteRows,
) -> int:
    """Insert the rows not stored yet and add exactly those to the rollups.

    When the file's id range of the batch held no row before, every row is new and the batch's own
    rollups are added. Otherwise the rollups are the aggregate of this file's id range after the insert minus before it, taken
    while this transaction holds the writer's lock (SQLite's write lock, a per-file advisory lock on
    PostgreSQL), so a replayed line is neither stored nor counted twice.
    """
    if not parsed:
        return 0
    is_sqlite = conn.dialect.name == "sqlite"
    prepared = parsed if isinstance(parsed, SqliteRows) else sqlite_rows(source, file_id, parsed)
    _check_offset(prepared.max_offset)
    n = len(prepared)
    clients, endpoints, agents = prepared.clients, prepared.endpoints, prepared.agents
    fwd, peer = prepared.forwarded_for, prepared.peer_ip
    if not is_sqlite:  # PostgreSQL text cannot hold NUL; Go-unquoted paths can. Keep it visible.
        clients = [_no_nul(v) for v in clients]
        endpoints = [(_no_nul(m), _no_nul(p)) for m, p in endpoints]
        agents = [_no_nul(v) for v in agents]
        fwd, peer = [_no_nul(v) for v in fwd], [_no_nul(v) for v in peer]
    sid = d.ids(conn, "source", (source,))[source]
    # Global id of each of the batch's distinct values, then of each row (map() runs in C).
    found = d.ids(conn, "client", clients)
    client_ids = [found[v] for v in clients]
    found = d.ids(conn, "endpoint", endpoints)
    endpoint_ids = [found[v] for v in endpoints]
    found_agents: dict[str | None, int | None] = {None: None}
    found_agents.update(d.ids(conn, "agent", [v for v in agents if v is not None]))
    agent_ids = [found_agents[v] for v in agents]
    columns = (
        prepared.ids,
        prepared.ts,
        map(client_ids.__getitem__, prepared.client_ix),
        map(endpoint_ids.__getitem__, prepared.endpoint_ix),
        prepared.status,
        prepared.latency_ms,
        prepared.bytes_sent,
        map(agent_ids.__getitem__, prepared.agent_ix),
        fwd,
        peer,
        repeat(sid, n),
    )
    base = file_id << schema.LINE_OFFSET_BITS
    lo, hi = base | prepared.min_offset, base | prepared.max_offset
    if is_sqlite:
        # Take the write lock now (a no-op write), so nothing can change this range until commit.
        conn.exec_driver_sql("UPDATE meta SET value = value WHERE key = 'schema_version'")
    else:
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%(f)s)", {"f": file_id})
    r = schema.request_rows
    present = conn.execute(select(func.count()).select_from(r).where(r.c.id.between(lo, hi))).scalar_one()
    before = views.aggregate(conn, lo, hi) if present else ({}, {})
    if is_sqlite:
        # The hot path: the raw DBAPI cursor is ~2x faster than Core's insert() with dicts.
        raw = conn.connection.dbapi_connection
        assert raw is not None
        cur = raw.cursor()
        changes = raw.total_changes
        cur.executemany(_SQLITE_INSERT, zip(*columns, strict=True))  # type: ignore[arg-type]
        inserted = int(raw.total_changes - changes)
        cur.close()
    else:
        stmt = postgresql.insert(r).on_conflict_do_nothing(index_elements=["id"])
        names = [c.name for c in r.columns]
        result = conn.execute(
            stmt.returning(r.c.id), [dict(zip(names, v, strict=True)) for v in zip(*columns, strict=True)]
        )
        inserted = len(result.fetchall())
    if not inserted:
        return 0
    if not present and inserted == n and prepared.days is not None and prepared.hours is not None:
        # Every row of the batch is new: its own rollups are exactly what the insert added.
        merged = _global_rollups(prepared.days, client_ids, sid)
        if merged is not None:
            views.apply(conn, merged, {(h, sid): c for h, c in prepared.hours.items()})
            return inserted
    after = views.aggregate(conn, lo, hi)
    views.apply(conn, *(views.subtract(after, before) if present else after))
    return inserted


def _check_offset(top: int) -> None:
    if top >= _MAX_OFFSET:
        raise StoreError(f"a line offset beyond {_MAX_OFFSET:,} bytes: files over 1 TiB are not supported")


_SQLITE_INSERT = (
    "INSERT OR IGNORE INTO request_rows (id, ts, client_id, endpoint_id, status, latency_ms, bytes_sent, "
    "agent_id, forwarded_for, peer_ip, source_id) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)


def _no_nul(value: Any) -> Any:
    return value.replace("\x00", "\\x00") if isinstance(value, str) and "\x00" in value else value


def _global_rollups(
    days: dict[int, list[int]], client_ids: list[int], sid: int
) -> dict[tuple[int, ...], list[int]] | None:
    """A batch's rollups keyed by (day, client id, source id); None when two of its distinct client
    texts share an id (only when NUL bytes were made visible), left to the SQL aggregate."""
    if len(set(client_ids)) != len(client_ids):
        return None
    out: dict[tuple[int, ...], list[int]] = {}
    for key, values in days.items():
        day, c = rollup_key(key)
        out[(day, client_ids[c], sid)] = values
    return out
