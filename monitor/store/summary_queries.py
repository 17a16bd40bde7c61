"""The SQL behind the weekly summary (`monitor.reports.summary.build`), kept in the store package with the schema.

Every function takes the Store and a half-open UTC period [since, until) and returns aggregates, never
the period's rows: per (UTC day, client) counts from the `client_days` rollups for the days the period
covers whole and from the ts index for its partial edge days (`client_activity`); requests per hour
(`source_hours`, plus the edges); (endpoint, client) pairs with their request and error counts
(`endpoint_clients`); and the exact latency percentiles per client, ranked by the database (a sorted
temporary table on SQLite, window functions elsewhere) with only the values at the needed ranks read
back (`latency_percentiles`), so memory does not grow with the period's rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Select, case, func, select, text

from monitor.store import as_utc, schema
from monitor.store.schema import US_PER_DAY, US_PER_HOUR, ts_key
from monitor.store.views import (
    CATEGORY_COLUMNS,
    COUNT_COLUMNS,
    ROLLUP_SUMS_SQL,  # the rollups' own definition of each count
    Counts,
)

_IN_CHUNK = 500
_YIELD = 10_000

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from monitor.store import Store

# Columns of the period's requests, as `requests_select` gives them (bench/summary.py's baseline read):
# ts in microseconds since the epoch, the client and endpoint as dictionary ids.
REQUEST_COLUMNS = ("ts", "client_id", "endpoint_id", "status", "latency_ms", "bytes_sent")


def requests_select(since: datetime, until: datetime) -> Select[Any]:
    """Return the select of REQUEST_COLUMNS for the requests with since <= ts < until (unordered)."""
    r = schema.request_rows
    return select(*(r.c[name] for name in REQUEST_COLUMNS)).where(
        r.c.ts >= schema.ts_key(since), r.c.ts < schema.ts_key(until)
    )


# The page cache of a read that groups a period's rows on SQLite. The store's connections keep 64 MiB
# for the writer's random index inserts; with it, SQLite's sorter sorts in runs that large, which
# costs more CPU than merging small runs (grouping a week of 1,000,000 rows: 2.1 s of CPU with 64 MiB,
# 1.3 s with 2 MiB) and keeps up to 64 MiB of pages resident afterwards. 2 MiB is SQLite's default.
SORT_CACHE_KIB = 2000


@contextmanager
def sort_cache(conn: Connection) -> Iterator[Connection]:
    """Run the block's statements on `conn` with the small page cache (SQLite only), then restore it."""
    if conn.dialect.name != "sqlite":
        yield conn
        return
    before = conn.exec_driver_sql("PRAGMA cache_size").scalar()
    conn.exec_driver_sql(f"PRAGMA cache_size=-{SORT_CACHE_KIB}")
    try:
        yield conn
    finally:
        conn.exec_driver_sql(f"PRAGMA cache_size={int(before or -SORT_CACHE_KIB)}")


@contextmanager
def _connect(store: Store) -> Iterator[Connection]:
    with store.engine.connect() as conn, sort_cache(conn):
        yield conn


@dataclass
class ClientDay(Counts):
    """One client's requests on one UTC day within the period: `values` in COUNT_COLUMNS order, times
    as stored integers, `hours` the bit mask of the UTC hours of day with requests."""

    hours: int

    def add(self, other: ClientDay) -> None:
        self.add_counts(other)
        self.hours |= other.hours


def client_activity(
    store: Store, since: datetime, until: datetime
) -> tuple[dict[tuple[int, int], ClientDay], dict[int, int]]:
    """Return ({(day, client_id): ClientDay}, {hour: requests}) for the requests with since <= ts < until.

    Days and hours count from the epoch (UTC). Whole days come from the rollups (`client_days` summed over
    sources with the hour masks OR-ed, `source_hours`), the partial days at the edges from the rows of
    those hours only, so the work is bounded by clients x days, not by the period's rows."""
    lo, hi = ts_key(since), ts_key(until)
    d0 = -(-lo // US_PER_DAY)  # first whole day
    d1 = hi // US_PER_DAY  # first day not whole
    edges = [(lo, hi)] if d1 <= d0 else [(lo, d0 * US_PER_DAY), (d1 * US_PER_DAY, hi)]
    days: dict[tuple[int, int], ClientDay] = {}
    hours: dict[int, int] = {}
    n = len(COUNT_COLUMNS)

    def merge(key: tuple[int, int], item: ClientDay) -> None:
        if key in days:
            days[key].add(item)
        else:
            days[key] = item

    cd = schema.client_days
    with _connect(store) as conn:
        if d1 > d0:
            whole = select(
                cd.c.day,
                cd.c.client_id,
                *(cd.c[c] for c in COUNT_COLUMNS),
                cd.c.first_ts,
                cd.c.last_ts,
                cd.c.hours,
            ).where(cd.c.day >= d0, cd.c.day < d1)
            for row in conn.execution_options(yield_per=_YIELD).execute(whole):
                vals = [int(v or 0) for v in row[2 : 2 + n]]
                merge(
                    (int(row[0]), int(row[1])),
                    ClientDay(vals, int(row[2 + n]), int(row[3 + n]), int(row[4 + n] or 0)),
                )
            sh = schema.source_hours
            per_hour = (
                select(sh.c.hour, func.sum(sh.c.requests))
                .where(sh.c.hour >= d0 * 24, sh.c.hour < d1 * 24)
                .group_by(sh.c.hour)
            )
            hours.update({int(h): int(c or 0) for h, c in conn.execute(per_hour)})
        sql = text(
            f"SELECT r.client_id, r.ts / {US_PER_HOUR}, {ROLLUP_SUMS_SQL} "
            "FROM request_rows r JOIN endpoints e ON e.id = r.endpoint_id WHERE r.ts >= :a AND r.ts < :b "
            "GROUP BY 1, 2"
        )
        for a, b in edges:
            if a >= b:
                continue
            for row in conn.execution_options(yield_per=_YIELD).execute(sql, {"a": a, "b": b}):
                hour = int(row[1])
                vals = [int(v or 0) for v in row[2 : 2 + n]]
                merge(
                    (hour // 24, int(row[0])),
                    ClientDay(vals, int(row[2 + n]), int(row[3 + n]), 1 << (hour % 24)),
                )
                hours[hour] = hours.get(hour, 0) + vals[0]
    return days, hours


def endpoint_clients(store: Store, since: datetime, until: datetime) -> Iterator[tuple[int, int, int, int]]:
    """Yield (endpoint_id, client_id, requests, errors) for every pair seen with since <= ts < until;
    errors are the requests with status >= 400. The database groups; the pairs stream out."""
    r = schema.request_rows
    stmt = (
        select(
            r.c.endpoint_id,
            r.c.client_id,
            func.count(),
            func.coalesce(func.sum(case((r.c.status >= 400, 1), else_=0)), 0),
        )
        .where(r.c.ts >= ts_key(since), r.c.ts < ts_key(until))
        .group_by(r.c.endpoint_id, r.c.client_id)
    )
    with _connect(store) as conn:
        for e, c, n, errors in conn.execution_options(yield_per=_YIELD).execute(stmt):
            yield int(e), int(c), int(n), int(errors)


def latency_percentiles(
    store: Store, since: datetime, until: datetime, percents: Sequence[int] = (50, 95)
) -> dict[int, tuple[float, ...]]:
    """Return client_id -> the latency percentiles (one per entry of `percents`) of its requests with
    since <= ts < until that logged a latency; clients without any are absent.

    Exact, and the same numbers as numpy's and pandas' default ("linear") quantile: for n values sorted,
    q = p / 100, the value at rank i = int(q * (n - 1)) plus the fraction q * (n - 1) % 1 of the step to
    rank i + 1. Only the values around those ranks are read back (the integer rank p * (n - 1) // 100
    and its neighbours, which cover the float rounding of q * (n - 1)):

    - on SQLite, the period's (client, latency) pairs are sorted once into a temporary table, whose
      rowids are then the ranks (sorting costs the same as SQLite's window functions' first step,
      which then take twice as long again);
    - elsewhere, the database counts each distinct (client, latency) and runs the cumulative counts
      per client with window functions.
    """
    lo, hi = ts_key(since), ts_key(until)
    with _connect(store) as conn:
        if conn.dialect.name == "sqlite":
            spans = _sqlite_spans(conn, lo, hi, percents)
        else:
            spans = _window_spans(conn, lo, hi, percents)
    return {client: _percentiles(rows, n, percents) for client, (n, rows) in spans.items()}


Spans = dict[int, tuple[int, list[tuple[int, int, float]]]]  # client -> (n, [(first rank, end, value)])


def _near(p: int, n: int) -> range:
    # The ranks a percentile may need: int(q * (n - 1)) is p * (n - 1) // 100 or one less, plus the next.
    low = p * (n - 1) // 100
    return range(max(low - 1, 0), min(low + 2, n))


def _sqlite_spans(conn: Connection, lo: int, hi: int, percents: Sequence[int]) -> Spans:
    conn.exec_driver_sql("DROP TABLE IF EXISTS temp.summary_latency")
    try:
        # INSERT ... SELECT ... ORDER BY stores the rows in that order: rowid - first rowid = rank.
        conn.exec_driver_sql(
            "CREATE TEMP TABLE summary_latency AS SELECT client_id AS c, latency_ms AS v FROM request_rows "
            "WHERE ts >= ? AND ts < ? AND latency_ms IS NOT NULL ORDER BY client_id, latency_ms",
            (lo, hi),
        )
        firsts = conn.exec_driver_sql("SELECT c, min(rowid), count(*) FROM summary_latency GROUP BY c").all()
        wanted: dict[int, tuple[int, int, int]] = {}  # rowid -> (client, first rowid, n)
        for client, first, n in firsts:
            for p in percents:
                for rank in _near(p, int(n)):
                    wanted[int(first) + rank] = (int(client), int(first), int(n))
        out: Spans = {}
        ids = sorted(wanted)
        for start in range(0, len(ids), _IN_CHUNK):
            marks = ", ".join(str(i) for i in ids[start : start + _IN_CHUNK])
            for rowid, value in conn.exec_driver_sql(
                f"SELECT rowid, v FROM summary_latency WHERE rowid IN ({marks})"
            ):
                client, first, n = wanted[int(rowid)]
                rank = int(rowid) - first
                out.setdefault(client, (n, []))[1].append((rank, rank + 1, float(value)))
        return out
    finally:
        conn.exec_driver_sql("DROP TABLE IF EXISTS temp.summary_latency")


def _window_spans(conn: Connection, lo: int, hi: int, percents: Sequence[int]) -> Spans:
    near = " OR ".join(
        f"(upto >= {p} * (n - 1) / 100 AND upto - k <= {p} * (n - 1) / 100 + 1)" for p in percents
    )
    sql = text(
        "WITH g AS (SELECT client_id AS c, latency_ms AS v, count(*) AS k FROM request_rows "
        "WHERE ts >= :a AND ts < :b AND latency_ms IS NOT NULL GROUP BY client_id, latency_ms), "
        "r AS (SELECT c, v, k, "
        "CAST(sum(k) OVER (PARTITION BY c ORDER BY v ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) "
        "AS BIGINT) AS upto, CAST(sum(k) OVER (PARTITION BY c) AS BIGINT) AS n FROM g) "
        f"SELECT c, v, upto - k, upto, n FROM r WHERE {near} ORDER BY c, v"
    )
    out: Spans = {}
    for c, v, start, end, n in conn.execution_options(yield_per=_YIELD).execute(sql, {"a": lo, "b": hi}):
        out.setdefault(int(c), (int(n), []))[1].append((int(start), int(end), float(v)))
    return out


def _percentiles(spans: list[tuple[int, int, float]], n: int, percents: Sequence[int]) -> tuple[float, ...]:
    """The linear-interpolation percentiles of n sorted values, given the values at the needed ranks as
    (first rank, rank after the last, value) spans."""

    def at(rank: int) -> float:
        for start, end, value in spans:
            if start <= rank < end:
                return value
        raise LookupError(rank)  # cannot happen: the query returns every rank it is asked about

    out = []
    for p in percents:
        index = p / 100 * (n - 1)
        lower = int(index)
        frac = index % 1
        value = at(lower)
        out.append(value if frac == 0 else value + (at(lower + 1) - value) * frac)
    return tuple(out)


def client_names(store: Store, ids: Iterable[int]) -> dict[int, str]:
    """Return client id -> address for `ids`."""
    c = schema.clients
    wanted = sorted({int(i) for i in ids})
    out: dict[int, str] = {}
    with _connect(store) as conn:
        for start in range(0, len(wanted), _IN_CHUNK):
            chunk = wanted[start : start + _IN_CHUNK]
            out.update(
                {int(i): str(ip) for i, ip in conn.execute(select(c.c.id, c.c.ip).where(c.c.id.in_(chunk)))}
            )
    return out


def endpoint_names(store: Store, ids: Iterable[int]) -> dict[int, tuple[str | None, str | None]]:
    """Return endpoint id -> (method, path) for `ids`."""
    e = schema.endpoints
    wanted = sorted({int(i) for i in ids})
    out: dict[int, tuple[str | None, str | None]] = {}
    with _connect(store) as conn:
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

    with _connect(store) as conn:
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


def first_seen(store: Store) -> dict[int, int]:
    """Return client id -> the time (a stored integer) of the first request ever counted from it, from
    the rollups (kept [retention] rollup_days)."""
    d = schema.client_days
    stmt = select(d.c.client_id, func.min(d.c.first_ts)).group_by(d.c.client_id)
    with _connect(store) as conn:
        return {int(c): int(ts) for c, ts in conn.execute(stmt)}


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
    with _connect(store) as conn:
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
    with _connect(store) as conn:
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
