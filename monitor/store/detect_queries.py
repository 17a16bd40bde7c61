"""Queries of the detection side: the alerts table, per-window feature rows, indexed request ranges.

Uses the tables of monitor.store.schema through `store.engine`; SQLAlchemy stays inside monitor.store.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, cast, func, select
from sqlalchemy.dialects import postgresql, sqlite

from monitor.core.records import Request
from monitor.store import Store, as_utc
from monitor.store import schema as s


def last_alerts(store: Store, since: datetime) -> dict[str, tuple[datetime, dict[str, Any]]]:
    """Return dedup key -> (time, details) of the latest alert per key at or after `since` (cooldown seeding)."""
    a = s.alerts
    latest = select(a.c.key, func.max(a.c.id).label("id")).where(a.c.ts >= since).group_by(a.c.key).subquery()
    stmt = select(a.c.key, a.c.ts, a.c.details).join(latest, a.c.id == latest.c.id)
    out: dict[str, tuple[datetime, dict[str, Any]]] = {}
    with store.engine.connect() as conn:
        for key, ts, details in conn.execute(stmt):
            try:
                parsed = json.loads(details or "{}")
            except ValueError:
                parsed = {}
            when = as_utc(ts)
            assert when is not None
            out[str(key)] = (when, parsed if isinstance(parsed, dict) else {})
    return out


def count_alerts(store: Store, rule: str | None = None) -> int:
    stmt = select(func.count()).select_from(s.alerts)
    if rule is not None:
        stmt = stmt.where(s.alerts.c.rule == rule)
    with store.engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def save_windows(
    store: Store,
    rows: Iterable[dict[str, Any]],
    states: dict[datetime, int] | None = None,
    now: datetime | None = None,
) -> int:
    """Upsert window rows: client_ip, window_start, features (dict), score, anomalous, explanation; and,
    in the same transaction, the `window_state` of the windows computed (start -> stored requests)."""
    values = [
        {
            "client_ip": r["client_ip"],
            "window_start": r["window_start"],
            "features": json.dumps(r["features"]),
            "score": r.get("score"),
            "anomalous": r.get("anomalous"),
            "explanation": r.get("explanation"),
        }
        for r in rows
    ]
    if not values and not states:
        return 0
    dialect = sqlite if store.is_sqlite else postgresql
    stmt = dialect.insert(s.windows)
    stmt = stmt.on_conflict_do_update(
        index_elements=["client_ip", "window_start"],
        set_={
            "features": stmt.excluded.features,
            "score": stmt.excluded.score,
            "anomalous": stmt.excluded.anomalous,
            "explanation": stmt.excluded.explanation,
        },
    )
    with store.engine.begin() as conn:
        if values:
            conn.execute(stmt, values)
        if states:
            _mark(conn, store, states, now)
    return len(values)


def load_windows(
    store: Store,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    limit: int | None = None,
    newest_first: bool = False,
) -> list[dict[str, Any]]:
    """Return window rows in [since, until) with features decoded, oldest first (or newest first)."""
    w = s.windows
    stmt = select(w)
    if since is not None:
        stmt = stmt.where(w.c.window_start >= since)
    if until is not None:
        stmt = stmt.where(w.c.window_start < until)
    order = w.c.window_start.desc() if newest_first else w.c.window_start
    stmt = stmt.order_by(order, w.c.client_ip)
    if limit is not None:
        stmt = stmt.limit(limit)
    out = []
    with store.engine.connect() as conn:
        for row in conn.execute(stmt):
            d = dict(row._mapping)
            d["window_start"] = as_utc(d["window_start"])
            try:
                d["features"] = json.loads(d["features"])
            except ValueError:
                continue  # a damaged row is skipped, not fatal
            out.append(d)
    return out


def window_activity(store: Store, since: datetime) -> tuple[list[tuple[str, datetime]], dict[str, datetime]]:
    """Return (client_ip, window_start) pairs since `since` and the first window of every client ever."""
    w = s.windows
    with store.engine.connect() as conn:
        pairs = [
            (str(ip), as_utc(ts))
            for ip, ts in conn.execute(
                select(w.c.client_ip, w.c.window_start).where(w.c.window_start >= since)
            )
        ]
        first = {
            str(ip): as_utc(ts)
            for ip, ts in conn.execute(
                select(w.c.client_ip, func.min(w.c.window_start)).group_by(w.c.client_ip)
            )
        }
    return [(ip, ts) for ip, ts in pairs if ts is not None], {
        ip: ts for ip, ts in first.items() if ts is not None
    }


def latest_window_start(store: Store) -> datetime | None:
    with store.engine.connect() as conn:
        return as_utc(conn.execute(select(func.max(s.windows.c.window_start))).scalar())


def request_span(store: Store) -> tuple[datetime | None, datetime | None]:
    """Return the earliest and latest request time stored (the ends of the ts index)."""
    r = s.request_rows
    with store.engine.connect() as conn:
        lo = conn.execute(select(func.min(r.c.ts))).scalar()
        hi = conn.execute(select(func.max(r.c.ts))).scalar()
    return (None if lo is None else s.from_ts_key(int(lo)), None if hi is None else s.from_ts_key(int(hi)))


def iter_stored_requests(store: Store, chunk: int = 20_000) -> Iterator[tuple[str, Request]]:
    """Yield (source, Request) for every stored request in time order (replay's read path).

    Reads the base tables in ts-index order through the raw cursor on SQLite (a few times faster than
    SQLAlchemy's rows, which matters for replaying weeks of logs); time is the stored integer."""
    from monitor.store import request_select

    full = request_select().subquery()
    stmt = select(
        full.c.ts,
        full.c.client_ip,
        full.c.method,
        full.c.path,
        full.c.status,
        full.c.latency_ms,
        full.c.bytes_sent,
        full.c.user_agent,
        full.c.forwarded_for,
        full.c.peer_ip,
        full.c.source,
    ).order_by(full.c.ts, full.c.id)
    parts = _sqlite_stream(store, stmt, chunk) if store.is_sqlite else _pg_stream(store, stmt, chunk)
    when: dict[int, datetime] = {}
    for rows in parts:
        for ts, *fields, source in rows:
            at = when.get(ts)
            if at is None:
                if len(when) > 100_000:
                    when.clear()
                at = when[ts] = s.from_ts_key(int(ts))
            yield source, Request(at, *fields)


def _pg_stream(store: Store, stmt: Any, chunk: int) -> Iterator[list[tuple[Any, ...]]]:
    with store.engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=chunk).execute(stmt)
        for rows in result.partitions(chunk):
            yield [tuple(row) for row in rows]


# --- windows at scale: indexed time ranges, streamed rows, the window_state table ---------------------
def iter_window_rows(
    store: Store, since: datetime, until: datetime, sources: Iterable[str] | None = None, chunk: int = 50_000
) -> Iterator[list[tuple[Any, ...]]]:
    """Yield the requests in [since, until) in time order, in lists of at most `chunk` rows of
    (ts, client_ip, path, status, latency_ms, bytes_sent, user_agent), optionally of some sources only;
    `ts` is the stored integer time (microseconds since the epoch, see schema.ts_key).

    Reads the base tables on the ts index (not the `requests` view, whose text time no index covers),
    streamed (a server-side cursor on PostgreSQL), so a flooded window never sits in memory whole."""
    r = s.request_rows
    stmt = (
        select(r.c.ts, s.clients.c.ip, s.endpoints.c.path, r.c.status, r.c.latency_ms, r.c.bytes_sent)
        .add_columns(s.agents.c.user_agent)
        .select_from(
            r.join(s.clients, s.clients.c.id == r.c.client_id)
            .join(s.endpoints, s.endpoints.c.id == r.c.endpoint_id)
            .outerjoin(s.agents, s.agents.c.id == r.c.agent_id)
        )
        .where(*_ts_range(since, until))
        .order_by(r.c.ts)
    )
    if sources is not None:
        stmt = stmt.where(r.c.source_id.in_(_source_ids(store, sources)))
    yield from _sqlite_stream(store, stmt, chunk) if store.is_sqlite else _pg_stream(store, stmt, chunk)


def _ts_range(since: datetime | None, until: datetime | None) -> list[Any]:
    r = s.request_rows
    out = []
    if since is not None:
        out.append(r.c.ts >= s.ts_key(since))
    if until is not None:
        out.append(r.c.ts < s.ts_key(until))
    return out


def _source_ids(store: Store, names: Iterable[str]) -> list[int]:
    sn = s.source_names
    wanted = sorted(names)
    if not wanted:
        return []
    with store.engine.connect() as conn:
        return [int(i) for (i,) in conn.execute(select(sn.c.id).where(sn.c.name.in_(wanted)))]


def _sqlite_stream(store: Store, stmt: Any, chunk: int) -> Iterator[list[tuple[Any, ...]]]:
    """Run a SELECT through the raw sqlite3 cursor (bind values converted by their column types):
    a few times faster than SQLAlchemy's rows for the hundreds of thousands a window scan reads.
    Values come back as stored (timestamps as ISO text)."""
    compiled = stmt.compile(dialect=store.engine.dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    procs = compiled._bind_processors
    args = tuple(procs[k](params[k]) if k in procs else params[k] for k in compiled.positiontup or ())
    with store.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        cur = raw.cursor()
        try:
            cur.execute(compiled.string, args)
            while rows := cur.fetchmany(chunk):
                yield list(rows)
        finally:
            cur.close()


def count_in(store: Store, since: datetime, until: datetime) -> int:
    """Stored requests (every source) in [since, until): an index range count."""
    stmt = select(func.count()).select_from(s.request_rows).where(*_ts_range(since, until))
    with store.engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def counts_by_source(store: Store, since: datetime, until: datetime) -> dict[str, int]:
    r, sn = s.request_rows, s.source_names
    stmt = (
        select(sn.c.name, func.count())
        .select_from(r.join(sn, sn.c.id == r.c.source_id))
        .where(*_ts_range(since, until))
        .group_by(sn.c.name)
    )
    with store.engine.connect() as conn:
        return {str(src): int(n) for src, n in conn.execute(stmt)}


def window_states(store: Store, since: datetime, until: datetime) -> dict[datetime, int]:
    """Return window start -> requests stored when it was computed, for windows in [since, until)."""
    w = s.window_state
    stmt = select(w.c.window_start, w.c.requests).where(w.c.window_start >= since, w.c.window_start < until)
    with store.engine.connect() as conn:
        out = {as_utc(ts): int(n) for ts, n in conn.execute(stmt)}
    return {k: v for k, v in out.items() if k is not None}


def window_starts(store: Store, since: datetime, until: datetime) -> set[datetime]:
    """Window starts in [since, until) that have feature rows."""
    w = s.windows
    stmt = select(w.c.window_start).where(w.c.window_start >= since, w.c.window_start < until).distinct()
    with store.engine.connect() as conn:
        return {t for (ts,) in conn.execute(stmt) if (t := as_utc(ts)) is not None}


def mark_windows(store: Store, states: dict[datetime, int], now: datetime) -> None:
    """Record windows as computed from `states[start]` stored requests."""
    if not states:
        return
    with store.engine.begin() as conn:
        _mark(conn, store, states, now)


def _mark(conn: Any, store: Store, states: dict[datetime, int], now: datetime | None) -> None:
    from monitor.store import utcnow

    window_state = s.window_state
    dialect = sqlite if store.is_sqlite else postgresql
    stmt = dialect.insert(window_state)
    stmt = stmt.on_conflict_do_update(
        index_elements=["window_start"],
        set_={"requests": stmt.excluded.requests, "computed_at": stmt.excluded.computed_at},
    )
    when = now or utcnow()
    conn.execute(stmt, [{"window_start": k, "requests": v, "computed_at": when} for k, v in states.items()])


def window_clients(store: Store, start: datetime) -> set[str]:
    w = s.windows
    with store.engine.connect() as conn:
        return {str(ip) for (ip,) in conn.execute(select(w.c.client_ip).where(w.c.window_start == start))}


def delete_windows(store: Store, since: datetime, until: datetime) -> int:
    """Delete the feature rows and window states of [since, until) (`train --rebuild-windows`)."""
    window_state = s.window_state
    w = s.windows
    with store.engine.begin() as conn:
        n = conn.execute(w.delete().where(w.c.window_start >= since, w.c.window_start < until)).rowcount
        conn.execute(
            window_state.delete().where(
                window_state.c.window_start >= since, window_state.c.window_start < until
            )
        )
    return int(n)


def iter_activity(
    store: Store, since: datetime, until: datetime | None = None
) -> Iterator[tuple[str, datetime]]:
    """Yield (client_ip, window_start) of the feature rows since `since` (streamed: a profile's input)."""
    w = s.windows
    stmt = select(w.c.client_ip, w.c.window_start).where(w.c.window_start >= since)
    if until is not None:
        stmt = stmt.where(w.c.window_start < until)
    with store.engine.connect() as conn:
        for ip, ts in conn.execution_options(stream_results=True, yield_per=20_000).execute(stmt):
            when = as_utc(ts)
            if when is not None:
                yield str(ip), when


def hour_activity(store: Store, since: datetime, until: datetime | None = None) -> list[tuple[str, int, int]]:
    """(client_ip, UTC hour of day, windows) of the feature rows in [since, until), counted in SQL: the
    hour profile's input without reading every window row."""
    w = s.windows
    if store.is_sqlite:  # stored as `2025-03-21 08:52:32.000000` (UTC)
        hour = cast(func.substr(w.c.window_start, 12, 2), Integer)
    else:
        hour = cast(func.extract("hour", func.timezone("UTC", w.c.window_start)), Integer)
    stmt = select(w.c.client_ip, hour, func.count()).where(w.c.window_start >= since)
    if until is not None:
        stmt = stmt.where(w.c.window_start < until)
    with store.engine.connect() as conn:
        return [(str(ip), int(h), int(n)) for ip, h, n in conn.execute(stmt.group_by(w.c.client_ip, hour))]


def first_windows(store: Store) -> dict[str, datetime]:
    """The first window of every client with feature rows."""
    w = s.windows
    with store.engine.connect() as conn:
        rows = conn.execute(select(w.c.client_ip, func.min(w.c.window_start)).group_by(w.c.client_ip))
        return {str(ip): t for ip, ts in rows if (t := as_utc(ts)) is not None}


def first_requests(store: Store, since: datetime, until: datetime) -> dict[str, datetime]:
    """The first request of every client in [since, until) (first-seen times before any window exists)."""
    r, c = s.request_rows, s.clients
    stmt = (
        select(c.c.ip, func.min(r.c.ts))
        .select_from(r.join(c, c.c.id == r.c.client_id))
        .where(*_ts_range(since, until))
        .group_by(c.c.ip)
    )
    with store.engine.connect() as conn:
        return {str(ip): s.from_ts_key(int(ts)) for ip, ts in conn.execute(stmt) if ts is not None}


def iter_training_windows(
    store: Store, since: datetime, until: datetime, chunk: int = 20_000
) -> Iterator[list[tuple[str, datetime, str, bool | None]]]:
    """Yield (client_ip, window_start, features JSON, anomalous) of the windows in [since, until), in
    time order, in lists of at most `chunk` (the features are decoded by the caller, a chunk at a time)."""
    w = s.windows
    stmt = (
        select(w.c.client_ip, w.c.window_start, w.c.features, w.c.anomalous)
        .where(w.c.window_start >= since, w.c.window_start < until)
        .order_by(w.c.window_start, w.c.client_ip)
    )
    times: dict[Any, datetime | None] = {}

    def when(ts: Any) -> datetime | None:
        if ts not in times:
            if len(times) > 10_000:
                times.clear()
            times[ts] = as_utc(ts)
        return times[ts]

    if store.is_sqlite:
        for part in _sqlite_stream(store, stmt, chunk):
            yield [(str(ip), when(ts), feats, None if a is None else bool(a)) for ip, ts, feats, a in part]  # type: ignore[misc]
        return
    with store.engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=chunk).execute(stmt)
        for rows in result.partitions(chunk):
            yield [(str(ip), when(ts), feats, anomalous) for ip, ts, feats, anomalous in rows]  # type: ignore[misc]
