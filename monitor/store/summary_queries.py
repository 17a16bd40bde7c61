"""The SQL behind the weekly summary (`monitor.reports.summary.build`), kept in the store package with the schema.

Every function takes the Store and a half-open UTC period [since, until). The big read, the requests
of the period, is handed over as a select of integer columns (time, dictionary ids) for
`pandas.read_sql`; the small ones (the previous period's totals and who was seen before, from the
rollups; the alerts, the anomalous windows) are aggregated by the database and returned as plain
Python values, so the summary never loads two weeks of rows nor any text per row.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, case, func, select
from sqlalchemy.dialects import sqlite

from monitor.store import as_utc, schema
from monitor.store.views import CATEGORY_COLUMNS

_IN_CHUNK = 500

if TYPE_CHECKING:
    from monitor.store import Store

# Columns the summary needs from each request, as `requests_source` gives them: ts in microseconds since
# the epoch, the client and endpoint as dictionary ids (decoded with `client_names`, `endpoint_names`).
REQUEST_COLUMNS = ("ts", "client_id", "endpoint_id", "status", "latency_ms", "bytes_sent")


def requests_select(since: datetime, until: datetime) -> Select[Any]:
    """Return the select of REQUEST_COLUMNS for the requests with since <= ts < until (unordered).

    No ORDER BY: the summary aggregates, and sorting a million rows would cost the database a temp B-tree.
    The bounds are integers on the ts index; no text is read per row.
    """
    r = schema.request_rows
    return select(*(r.c[name] for name in REQUEST_COLUMNS)).where(
        r.c.ts >= schema.ts_key(since), r.c.ts < schema.ts_key(until)
    )


@contextmanager
def requests_source(store: Store, since: datetime, until: datetime) -> Iterator[tuple[Any, Any, Any]]:
    """Yield (connection, query, params) for `pandas.read_sql(query, connection, params=params)`.

    On SQLite the query is the compiled text of `requests_select` run on the raw sqlite3 connection
    (which pandas reads natively). That skips SQLAlchemy's per-row result processing, the largest cost
    of reading a million rows (bench/summary.py). Other databases get the select on a SQLAlchemy connection.
    """
    stmt = requests_select(since, until)
    with store.engine.connect() as conn:
        if store.is_sqlite:
            compiled = stmt.compile(dialect=sqlite.dialect())
            params = [compiled.params[name] for name in compiled.positiontup or ()]
            yield conn.connection.dbapi_connection, str(compiled), params
        else:
            yield conn, stmt, None


def client_names(store: Store) -> dict[int, str]:
    """Return client id -> address for every client in the dictionary."""
    c = schema.clients
    with store.engine.connect() as conn:
        return {int(i): str(ip) for i, ip in conn.execute(select(c.c.id, c.c.ip))}


def endpoint_names(store: Store, ids: Iterable[int]) -> dict[int, tuple[str | None, str | None]]:
    """Return endpoint id -> (method, path) for `ids`."""
    e = schema.endpoints
    wanted = sorted({int(i) for i in ids})
    out: dict[int, tuple[str | None, str | None]] = {}
    with store.engine.connect() as conn:
        for start in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[start : start + _IN_CHUNK]
            out.update(
                {
                    int(i): (m, p)
                    for i, m, p in conn.execute(select(e.c.id, e.c.method, e.c.path).where(e.c.id.in_(chunk)))
                }
            )
    return out


def period_counts(store: Store, since: datetime, until: datetime) -> dict[str, int]:
    """Return the period's totals from the rollups (whole days) and the ts index (partial days):
    requests, sources (distinct clients), the five categories, errors (status >= 400) and bytes_sent."""
    from monitor.store.rollup_queries import period_totals

    with store.engine.connect() as conn:
        totals = period_totals(conn, since, until)
    out = dict.fromkeys(("requests", *CATEGORY_COLUMNS, "errors", "bytes_sent"), 0)
    for t in totals.values():
        out["requests"] += t.requests
        for c in CATEGORY_COLUMNS:
            out[c] += getattr(t, c)
        out["errors"] += t.errors_4xx + t.errors_5xx
        out["bytes_sent"] += t.bytes_sent
    out["sources"] = len({cid for cid, _ in totals})
    return out


def first_seen(store: Store, client_ips: Iterable[str]) -> dict[str, datetime]:
    """Return the time of the first request ever counted from each of `client_ips` (absent: never seen),
    from the rollups (kept [retention] rollup_days)."""
    wanted = set(client_ips)
    c, d = schema.clients, schema.client_days
    stmt = select(c.c.ip, func.min(d.c.first_ts)).join(c, c.c.id == d.c.client_id).group_by(c.c.ip)
    with store.engine.connect() as conn:
        return {str(ip): schema.from_ts_key(int(ts)) for ip, ts in conn.execute(stmt) if ip in wanted}


def period_alerts(store: Store, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Return the alerts raised in the period, oldest first, with `client_ips` and `details` decoded.

    A corrupt JSON column yields an empty list / dict rather than an error: one bad row must not
    stop the weekly report.
    """
    a = schema.alerts
    stmt = (
        select(a.c.ts, a.c.rule, a.c.severity, a.c.key, a.c.client_ips, a.c.title, a.c.message, a.c.details)
        .where(a.c.ts >= since, a.c.ts < until)
        .order_by(a.c.ts, a.c.id)
    )
    out: list[dict[str, Any]] = []
    with store.engine.connect() as conn:
        for row in conn.execute(stmt):
            item = dict(row._mapping)
            item["ts"] = as_utc(item["ts"])
            item["client_ips"] = _json_list(item["client_ips"])
            item["details"] = _json_dict(item["details"])
            out.append(item)
    return out


def anomalous_windows(store: Store, since: datetime, until: datetime) -> tuple[int, int]:
    """Return (windows scored, windows flagged anomalous) whose start lies in the period."""
    w = schema.windows
    stmt = select(
        func.count(w.c.score),
        func.coalesce(func.sum(case((w.c.anomalous.is_(True), 1), else_=0)), 0),
    ).where(w.c.window_start >= since, w.c.window_start < until)
    with store.engine.connect() as conn:
        scored, flagged = conn.execute(stmt).one()
    return int(scored or 0), int(flagged or 0)


def approved_networks(store: Store) -> list[str]:
    """Return the networks approved with `sources approve`."""
    return [str(row["network"]) for row in store.approvals()]


def _json_list(text: str | None) -> list[str]:
    try:
        value = json.loads(text or "[]")
    except (TypeError, ValueError):
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def _json_dict(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
