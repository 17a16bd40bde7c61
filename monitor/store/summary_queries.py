"""The SQL behind the weekly summary (`monitor.summary`), kept in the store package with the schema.

Every function takes the Store and a half-open UTC period [since, until). The big read, the requests
of the period, is handed over as a SQLAlchemy select for `pandas.read_sql`; the small ones (the
previous period's totals, who was seen before, the alerts, the anomalous windows) are aggregated by
the database and returned as plain Python values, so the summary never loads two weeks of rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, case, func, select, text
from sqlalchemy.dialects import sqlite

from monitor.store import as_utc, schema
from monitor.store.rows import sqlite_ts

if TYPE_CHECKING:
    from monitor.store import Store

_UNION_CHUNK = 200

# Columns the summary needs from each request; user agents and forwarded-for stay in the database.
REQUEST_COLUMNS = ("ts", "client_ip", "method", "path", "status", "latency_ms", "bytes_sent")


def requests_select(since: datetime, until: datetime) -> Select[Any]:
    """Return the select of REQUEST_COLUMNS for the requests with since <= ts < until (unordered).

    No ORDER BY: the summary aggregates, and sorting a million rows would cost the database a temp B-tree.
    """
    r = schema.requests
    return select(*(r.c[name] for name in REQUEST_COLUMNS)).where(r.c.ts >= since, r.c.ts < until)


@contextmanager
def requests_source(store: Store, since: datetime, until: datetime) -> Iterator[tuple[Any, Any, Any]]:
    """Yield (connection, query, params) for `pandas.read_sql(query, connection, params=params)`.

    On SQLite the query is the compiled text of `requests_select` run on the raw sqlite3 connection
    (which pandas reads natively), with the bounds in the stored text form. That skips SQLAlchemy's
    per-row result processing, the largest cost of reading a million rows (measured by
    bench/summary.py: about 1.6x less CPU). Other databases get the select on a SQLAlchemy connection.
    """
    stmt = requests_select(since, until)
    with store.engine.connect() as conn:
        if store.is_sqlite:
            compiled = stmt.compile(dialect=sqlite.dialect())
            params = [sqlite_ts(compiled.params[name]) for name in compiled.positiontup or ()]
            yield conn.connection.dbapi_connection, str(compiled), params
        else:
            yield conn, stmt, None


def path_totals(
    store: Store, since: datetime, until: datetime
) -> list[tuple[str | None, str | None, int, int, int]]:
    """Return (method, path, requests, errors, bytes) per distinct (method, path) in the period.

    Used for the previous period's totals: the categories are decided in Python (monitor.endpoints),
    so the database only groups; errors are responses with status >= 400; bytes treat NULL as 0.
    """
    r = schema.requests
    stmt = (
        select(
            r.c.method,
            r.c.path,
            func.count(),
            func.sum(case((r.c.status >= 400, 1), else_=0)),
            func.coalesce(func.sum(r.c.bytes_sent), 0),
        )
        .where(r.c.ts >= since, r.c.ts < until)
        .group_by(r.c.method, r.c.path)
    )
    with store.engine.connect() as conn:
        return [(m, p, int(n), int(e or 0), int(b or 0)) for m, p, n, e, b in conn.execute(stmt)]


def distinct_clients(store: Store, since: datetime, until: datetime) -> int:
    """Return how many distinct client addresses made requests in the period."""
    r = schema.requests
    stmt = select(func.count(func.distinct(r.c.client_ip))).where(r.c.ts >= since, r.c.ts < until)
    with store.engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def first_seen(store: Store, client_ips: Iterable[str]) -> dict[str, datetime]:
    """Return the time of the first request ever stored from each of `client_ips` (absent: never seen).

    One `SELECT MIN(ts) ... WHERE client_ip = ?` per address, which the (client_ip, ts) index answers
    with a single seek however long the history is; batched as UNION ALL of _UNION_CHUNK scalar
    subqueries (SQLite allows 500 terms in a compound select).
    """
    ips = sorted(set(client_ips))
    out: dict[str, datetime] = {}
    with store.engine.connect() as conn:
        for start in range(0, len(ips), _UNION_CHUNK):
            chunk = ips[start : start + _UNION_CHUNK]
            # Plain text: building the equivalent Core statement costs more than running it.
            stmt = text(
                " UNION ALL ".join(
                    f"SELECT CAST(:ip{i} AS VARCHAR(64)) AS ip, (SELECT MIN(ts) FROM requests WHERE client_ip = :ip{i}) AS first"
                    for i in range(len(chunk))
                )
            )
            for ip, ts in conn.execute(stmt, {f"ip{i}": ip for i, ip in enumerate(chunk)}):
                when = as_utc(ts)
                if when is not None:
                    out[str(ip)] = when
    return out


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
