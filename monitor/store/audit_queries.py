"""Read-only queries behind `ollama-monitor audit`: who reached Ollama since a given time, what the
proxies answered, and which management-looking calls were made.

SQLAlchemy Core on the tables of `monitor.store.schema`; the same statements run on SQLite and
PostgreSQL. Every function takes `since` (an aware datetime; a naive one is taken as UTC) and returns
plain dataclasses with aware UTC timestamps. Classification (loopback, known, management) is left to
the caller, which owns those rules; the SQL only narrows and aggregates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, case, func, or_, select

from monitor.store import Store, as_utc
from monitor.store.schema import requests

ROW_CAP = 10_000  # most aggregated rows any query returns (ordered so the busiest come first)


@dataclass(frozen=True)
class ClientActivity:
    """One client address's requests in the window."""

    client_ip: str
    requests: int
    success: int  # answered 2xx
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True)
class SourceStatuses:
    """Response statuses one source logged in the window."""

    source: str
    requests: int
    unauthorized: int  # 401
    forbidden: int  # 403
    success: int  # 2xx


@dataclass(frozen=True)
class Call:
    """Requests from one client with one method and path in the window."""

    client_ip: str
    method: str | None
    path: str | None
    requests: int
    last_seen: datetime


def _utc(since: datetime) -> datetime:
    # SQLite stores naive UTC text: bind UTC, or comparisons would be off by the offset.
    return since.replace(tzinfo=UTC) if since.tzinfo is None else since.astimezone(UTC)


def _count_where(cond: Any) -> Any:
    return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)


def _ok(column: Any) -> Any:
    return and_(column >= 200, column < 300)


def request_count(store: Store, since: datetime | None = None) -> int:
    """Return how many requests are stored (since `since`, when given)."""
    stmt = select(func.count()).select_from(requests)
    if since is not None:
        stmt = stmt.where(requests.c.ts >= _utc(since))
    with store.engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def clients_since(
    store: Store, since: datetime, *, sources: Sequence[str] | None = None, limit: int = ROW_CAP
) -> list[ClientActivity]:
    """Return each client address seen since `since` (only in `sources` when given), busiest first."""
    r = requests
    n = func.count().label("n")
    stmt = (
        select(
            r.c.client_ip,
            n,
            _count_where(_ok(r.c.status)).label("ok"),
            func.min(r.c.ts).label("first"),
            func.max(r.c.ts).label("last"),
        )
        .where(r.c.ts >= _utc(since))
        .group_by(r.c.client_ip)
        .order_by(n.desc(), r.c.client_ip)
        .limit(limit)
    )
    if sources is not None:
        if not sources:
            return []
        stmt = stmt.where(r.c.source.in_(list(sources)))
    with store.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return [
        ClientActivity(row.client_ip, int(row.n), int(row.ok), _ts(row.first), _ts(row.last)) for row in rows
    ]


def statuses_by_source(store: Store, since: datetime, sources: Sequence[str]) -> list[SourceStatuses]:
    """Return per-source counts of all, 401, 403 and 2xx responses since `since`."""
    if not sources:
        return []
    r = requests
    stmt = (
        select(
            r.c.source,
            func.count().label("n"),
            _count_where(r.c.status == 401).label("s401"),
            _count_where(r.c.status == 403).label("s403"),
            _count_where(_ok(r.c.status)).label("s2xx"),
        )
        .where(r.c.ts >= _utc(since), r.c.source.in_(list(sources)))
        .group_by(r.c.source)
        .order_by(r.c.source)
    )
    with store.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return [
        SourceStatuses(row.source, int(row.n), int(row.s401), int(row.s403), int(row.s2xx)) for row in rows
    ]


def calls_matching(
    store: Store, since: datetime, path_contains: Sequence[str], *, limit: int = ROW_CAP
) -> list[Call]:
    """Return (client, method, path) groups since `since` whose path contains any of `path_contains`
    (matched literally: `%` and `_` are escaped), busiest first."""
    if not path_contains:
        return []
    r = requests
    n = func.count().label("n")
    stmt = (
        select(r.c.client_ip, r.c.method, r.c.path, n, func.max(r.c.ts).label("last"))
        .where(r.c.ts >= _utc(since), or_(*(r.c.path.contains(p, autoescape=True) for p in path_contains)))
        .group_by(r.c.client_ip, r.c.method, r.c.path)
        .order_by(n.desc(), r.c.client_ip)
        .limit(limit)
    )
    with store.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return [Call(row.client_ip, row.method, row.path, int(row.n), _ts(row.last)) for row in rows]


def _ts(value: Any) -> datetime:
    ts = as_utc(value)
    assert ts is not None  # aggregated over non-null columns
    return ts
