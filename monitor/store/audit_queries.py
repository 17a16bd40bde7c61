"""Read-only queries behind `ollama-monitor audit`: who reached Ollama since a given time, what the
proxies answered, and which management-looking calls were made.

Counts come from the per-day rollups plus the partial days at the edges (monitor.store.rollup_queries);
the management-call search reads only the matching endpoints' requests through the ts index. The same
statements run on SQLite and PostgreSQL. Every function takes `since` (an aware datetime; a naive one is taken as UTC) and returns
plain dataclasses with aware UTC timestamps. Classification (loopback, known, management) is left to
the caller, which owns those rules; the SQL only narrows and aggregates.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Connection

from monitor.store import Store, schema
from monitor.store.rollup_queries import Totals, names, period_totals, source_ids
from monitor.store.schema import from_ts_key, ts_key
from monitor.store.summary_queries import sort_cache

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


# Store id -> since -> period_totals, while a `shared_totals` block is open for that store.
_SHARED: dict[int, dict[datetime, dict[tuple[int, int], Totals]]] = {}


@contextmanager
def shared_totals(store: Store) -> Iterator[None]:
    """Within the block, the totals since a given time are read once and shared by `request_count`,
    `clients_since` and `statuses_by_source`: the audit asks about the same window four or five
    times, and each read groups the rows of the partial day at its start. Outside a block (or for
    another store) every call reads afresh."""
    _SHARED[id(store)] = {}
    try:
        yield
    finally:
        _SHARED.pop(id(store), None)


def _totals(conn: Connection, store: Store, since: datetime) -> dict[tuple[int, int], Totals]:
    memo = _SHARED.get(id(store))
    if memo is None:
        return period_totals(conn, since)
    if since not in memo:
        memo[since] = period_totals(conn, since)
    return memo[since]


def has_requests(store: Store) -> bool:
    """Return whether any request is stored (one row read, whatever the size of the store)."""
    r = schema.request_rows
    with store.engine.connect() as conn, sort_cache(conn):
        return conn.execute(select(r.c.id).limit(1)).first() is not None


def request_count(store: Store, since: datetime | None = None) -> int:
    """Return how many requests are stored (since `since`, when given: from the rollups and edges)."""
    if since is None:
        return store.count_requests()
    with store.engine.connect() as conn, sort_cache(conn):
        return sum(t.requests for t in _totals(conn, store, _utc(since)).values())


def clients_since(
    store: Store, since: datetime, *, sources: Sequence[str] | None = None, limit: int = ROW_CAP
) -> list[ClientActivity]:
    """Return each client address seen since `since` (only in `sources` when given), busiest first."""
    if sources is not None and not sources:
        return []
    with store.engine.connect() as conn, sort_cache(conn):
        totals = _totals(conn, store, _utc(since))
        if sources is not None:
            wanted = set(source_ids(conn, sources).values())
            totals = {k: t for k, t in totals.items() if k[1] in wanted}
        per_client: dict[int, Totals] = {}
        for (cid, _), t in totals.items():
            if cid in per_client:
                per_client[cid].add(t)
            else:
                per_client[cid] = Totals(list(t.values), t.first_ts, t.last_ts)
        ips = names(conn, "client", per_client)
    rows = [
        ClientActivity(ips[cid], t.requests, t.ok, from_ts_key(t.first_ts), from_ts_key(t.last_ts))
        for cid, t in per_client.items()
    ]
    rows.sort(key=lambda c: (-c.requests, c.client_ip))
    return rows[:limit]


def statuses_by_source(store: Store, since: datetime, sources: Sequence[str]) -> list[SourceStatuses]:
    """Return per-source counts of all, 401, 403 and 2xx responses since `since`."""
    if not sources:
        return []
    with store.engine.connect() as conn, sort_cache(conn):
        ids = source_ids(conn, sources)
        totals = _totals(conn, store, _utc(since))
    by_id = {sid: name for name, sid in ids.items()}
    acc: dict[str, list[int]] = {}
    for (_, sid), t in totals.items():
        if sid in by_id:
            row = acc.setdefault(by_id[sid], [0, 0, 0, 0])
            row[0] += t.requests
            row[1] += t.s401
            row[2] += t.s403
            row[3] += t.ok
    return [SourceStatuses(name, *acc[name]) for name in sorted(acc)]


def calls_matching(
    store: Store, since: datetime, path_contains: Sequence[str], *, limit: int = ROW_CAP
) -> list[Call]:
    """Return (client, method, path) groups since `since` whose path contains any of `path_contains`
    (matched literally: `%` and `_` are escaped), busiest first.

    The match runs on the endpoints dictionary (one row per distinct method and path); the requests
    are then read through the ts index, only those of the matching endpoints."""
    if not path_contains:
        return []
    r, e, c = schema.request_rows, schema.endpoints, schema.clients
    with store.engine.connect() as conn, sort_cache(conn):
        endpoint_ids = [
            int(i)
            for (i,) in conn.execute(
                select(e.c.id).where(or_(*(e.c.path.contains(p, autoescape=True) for p in path_contains)))
            )
        ]
        if not endpoint_ids:
            return []
        n = func.count().label("n")
        grouped = (
            select(r.c.client_id, r.c.endpoint_id, n, func.max(r.c.ts).label("last"))
            .where(r.c.ts >= ts_key(_utc(since)), r.c.endpoint_id.in_(endpoint_ids))
            .group_by(r.c.client_id, r.c.endpoint_id)
            .subquery()
        )
        stmt = (
            select(c.c.ip, e.c.method, e.c.path, grouped.c.n, grouped.c.last)
            .join(c, c.c.id == grouped.c.client_id)
            .join(e, e.c.id == grouped.c.endpoint_id)
            .order_by(grouped.c.n.desc(), c.c.ip)
            .limit(limit)
        )
        rows = conn.execute(stmt).all()
    return [
        Call(ip, method, path, int(count), from_ts_key(int(last))) for ip, method, path, count, last in rows
    ]
