"""Per-client and per-source totals of a period, read from the rollups plus indexed edges.

A period [since, until) is answered from `client_days` for the UTC days it covers whole, and from
`request_rows` (through the ts index) for the partial days at its edges, so no query reads more raw
rows than two days hold, however long the history. Results are keyed by the dictionary ids and are
as small as the number of (client, source) pairs active in the period.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.engine import Connection

from monitor.store import Store, schema
from monitor.store.schema import US_PER_DAY, US_PER_HOUR, from_ts_key, ts_key
from monitor.store.views import COUNT_COLUMNS, ROLLUP_SUMS_SQL, Counts

_IN_CHUNK = 500


@dataclass
class Totals(Counts):
    """The rollup columns summed over a period for one (client, source) pair (times as stored ints)."""

    days: int = 0  # UTC days with requests (from the rollups; edge days count once)
    hours: int = 0  # active (day, hour) slots: the popcount of each day's hour mask

    def add(self, other: Totals) -> None:
        self.add_counts(other)
        self.days += other.days
        self.hours += other.hours


_SUMS = ", ".join(f"sum({c})" for c in COUNT_COLUMNS)


def _popcount_sql(dialect: str) -> str:
    # Hours with requests in a day: the bits of the 24-bit mask, summed without a popcount function.
    return " + ".join(f"((hours >> {b}) & 1)" for b in range(24))


def period_totals(
    conn: Connection, since: datetime | None, until: datetime | None = None
) -> dict[tuple[int, int], Totals]:
    """Return (client_id, source_id) -> Totals of the requests with since <= ts < until (None: open)."""
    lo = None if since is None else ts_key(since)
    hi = None if until is None else ts_key(until)
    d0 = None if lo is None else -(-lo // US_PER_DAY)  # first whole day
    d1 = None if hi is None else hi // US_PER_DAY  # first day not whole
    out: dict[tuple[int, int], Totals] = {}

    def merge(key: tuple[int, int], t: Totals) -> None:
        if key in out:
            out[key].add(t)
        else:
            out[key] = t

    if d0 is not None and d1 is not None and d1 <= d0:
        edges = [(lo, hi)]  # within one day: raw rows only
        day_where = None
    else:
        edges = []
        conds = []
        if d0 is not None:
            edges.append((lo, d0 * US_PER_DAY))
            conds.append(f"day >= {int(d0)}")
        if d1 is not None:
            edges.append((d1 * US_PER_DAY, hi))
            conds.append(f"day < {int(d1)}")
        day_where = " AND ".join(conds) or "1 = 1"
    if day_where is not None:
        sql = (
            f"SELECT client_id, source_id, {_SUMS}, min(first_ts), max(last_ts), count(*), "
            f"sum({_popcount_sql(conn.dialect.name)}) FROM client_days WHERE {day_where} GROUP BY 1, 2"
        )
        for row in conn.execute(text(sql)):
            n = len(COUNT_COLUMNS)
            vals = [int(v or 0) for v in row[2 : 2 + n]]
            merge(
                (int(row[0]), int(row[1])),
                Totals(vals, int(row[2 + n]), int(row[3 + n]), int(row[4 + n]), int(row[5 + n] or 0)),
            )
    for a, b in edges:
        if a is not None and b is not None and a >= b:
            continue
        sql = (
            f"SELECT r.client_id, r.source_id, {ROLLUP_SUMS_SQL}, count(DISTINCT r.ts / {US_PER_HOUR}) "
            "FROM request_rows r JOIN endpoints e ON e.id = r.endpoint_id WHERE r.ts >= :a AND r.ts < :b "
            "GROUP BY 1, 2"
        )
        params = {"a": a if a is not None else -(1 << 62), "b": b if b is not None else 1 << 62}
        for row in conn.execute(text(sql), params):
            n = len(COUNT_COLUMNS)
            vals = [int(v or 0) for v in row[2 : 2 + n]]
            merge(
                (int(row[0]), int(row[1])), Totals(vals, int(row[2 + n]), int(row[3 + n]), 1, int(row[4 + n]))
            )
    return out


def names(conn: Connection, kind: str, ids: Iterable[int]) -> dict[int, str]:
    """Return id -> text for client ("client") or source ("source") ids."""
    table, column = {"client": ("clients", "ip"), "source": ("source_names", "name")}[kind]
    wanted = sorted(set(ids))
    out: dict[int, str] = {}
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start : start + _IN_CHUNK]
        marks = ", ".join(str(int(i)) for i in chunk)
        out.update(
            {
                int(i): str(v)
                for i, v in conn.execute(text(f"SELECT id, {column} FROM {table} WHERE id IN ({marks})"))
            }
        )
    return out


def source_ids(conn: Connection, sources: Iterable[str]) -> dict[str, int]:
    wanted = list(set(sources))
    out: dict[str, int] = {}
    s = schema.source_names
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start : start + _IN_CHUNK]
        out.update(
            {str(n): int(i) for n, i in conn.execute(select(s.c.name, s.c.id).where(s.c.name.in_(chunk)))}
        )
    return out


def client_totals(store: Store) -> list[dict[str, Any]]:
    """Every client in the rollups: client_ip, requests, first_seen, last_seen (aware UTC), sources,
    busiest first. Counts cover the rollups' retention ([retention] rollup_days), which may be longer
    than the raw rows'."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT client_id, sum(requests), min(first_ts), max(last_ts), count(DISTINCT source_id) "
                "FROM client_days GROUP BY client_id"
            )
        ).all()
        ips = names(conn, "client", (r[0] for r in rows))
    out: list[dict[str, Any]] = [
        {
            "client_ip": ips[int(cid)],
            "requests": int(n),
            "first_seen": from_ts_key(int(first)),
            "last_seen": from_ts_key(int(last)),
            "sources": int(srcs),
        }
        for cid, n, first, last, srcs in rows
    ]
    out.sort(key=lambda r: (-r["requests"], r["client_ip"]))
    return out


def by_source(store: Store, since: datetime, until: datetime | None = None) -> dict[str, int]:
    """Return source name -> requests with since <= ts < until."""
    with store.engine.connect() as conn:
        totals = period_totals(conn, since, until)
        src = names(conn, "source", (k[1] for k in totals))
    out: dict[str, int] = {}
    for (_, sid), t in totals.items():
        out[src[sid]] = out.get(src[sid], 0) + t.requests
    return out
