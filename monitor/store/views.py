"""The SQL of the compact store that is not a table: the `requests` view with the documented columns,
and the per-batch aggregate that maintains the rollups (`client_days`, `source_hours`).

The same text runs on SQLite and PostgreSQL except where a function differs (time formatting,
min/max of two values), which `dialect` selects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection

from monitor.store.schema import LINE_OFFSET_BITS, LINE_OFFSET_MASK, US_PER_DAY, US_PER_HOUR

CATEGORY_COLUMNS = ("inference", "enumeration", "management", "account", "other")

# Counts add up; first_ts/last_ts/hours merge with min, max and OR (those are idempotent).
COUNT_COLUMNS = (
    "requests",
    *CATEGORY_COLUMNS,
    "ok",
    "s401",
    "s403",
    "errors_4xx",
    "errors_5xx",
    "bytes_sent",
    "sized",
)
ROLLUP_COLUMNS = (*COUNT_COLUMNS, "first_ts", "last_ts", "hours")


@dataclass
class Counts:
    """Rollup counters summed over some rows: `values` in COUNT_COLUMNS order (each readable as an
    attribute, e.g. `.requests`), first and last request time as stored integers."""

    values: list[int]
    first_ts: int
    last_ts: int

    def __getattr__(self, name: str) -> int:
        try:
            return self.values[COUNT_COLUMNS.index(name)]
        except ValueError:
            raise AttributeError(name) from None

    def add_counts(self, other: Counts) -> None:
        """Add `other`'s counters and widen the time span to cover both."""
        self.values = [a + b for a, b in zip(self.values, other.values, strict=True)]
        self.first_ts = min(self.first_ts, other.first_ts)
        self.last_ts = max(self.last_ts, other.last_ts)


def _ts_text(dialect: str) -> str:
    if dialect == "sqlite":
        # The text SQLAlchemy's DateTime uses on SQLite: sortable, and what the README's queries compare.
        return (
            "strftime('%Y-%m-%d %H:%M:%S', r.ts / 1000000, 'unixepoch') || '.' || "
            "substr('00000' || (r.ts % 1000000), -6)"
        )
    return "TIMESTAMPTZ 'epoch' + r.ts * INTERVAL '1 microsecond'"


def view_ddl(dialect: str) -> str:
    create = "CREATE VIEW IF NOT EXISTS" if dialect == "sqlite" else "CREATE OR REPLACE VIEW"
    file_id = (
        f"r.id >> {LINE_OFFSET_BITS}"
        if dialect == "sqlite"
        else f"CAST(r.id >> {LINE_OFFSET_BITS} AS INTEGER)"
    )
    return (
        f"{create} requests AS SELECT r.id AS id, {_ts_text(dialect)} AS ts, c.ip AS client_ip, "
        "e.method AS method, e.path AS path, r.status AS status, r.latency_ms AS latency_ms, "
        "r.bytes_sent AS bytes_sent, a.user_agent AS user_agent, r.forwarded_for AS forwarded_for, "
        f"r.peer_ip AS peer_ip, s.name AS source, {file_id} AS file_id, r.id & {LINE_OFFSET_MASK} AS line_offset "
        "FROM request_rows r JOIN clients c ON c.id = r.client_id JOIN endpoints e ON e.id = r.endpoint_id "
        "LEFT JOIN agents a ON a.id = r.agent_id JOIN source_names s ON s.id = r.source_id"
    )


def create_view(conn: Connection) -> None:
    conn.execute(text(view_ddl(conn.dialect.name)))


def endpoint_key(method: str | None, path: str | None) -> str:
    """The unique key of a (method, path) pair in the endpoints dictionary (NULLs included)."""
    return ("-" if method is None else "+" + method) + " " + ("-" if path is None else "+" + path)


ENDPOINT_KEY_SQL = "(CASE WHEN {m} IS NULL THEN '-' ELSE '+' || {m} END) || ' ' || (CASE WHEN {p} IS NULL THEN '-' ELSE '+' || {p} END)"

# The rollup counters of a group of raw rows (`r` request_rows joined to `e` endpoints), in the order
# of COUNT_COLUMNS: requests, one per endpoint category, 2xx, 401, 403, 4xx, 5xx, bytes, rows with
# bytes, then first and last ts. The one SQL definition, used to maintain and to read the rollups.
ROLLUP_SUMS_SQL = (
    "count(*), "
    + ", ".join(f"sum(CASE WHEN e.category = '{c}' THEN 1 ELSE 0 END)" for c in CATEGORY_COLUMNS)
    + ", sum(CASE WHEN r.status >= 200 AND r.status < 300 THEN 1 ELSE 0 END)"
    ", sum(CASE WHEN r.status = 401 THEN 1 ELSE 0 END), sum(CASE WHEN r.status = 403 THEN 1 ELSE 0 END)"
    ", sum(CASE WHEN r.status >= 400 AND r.status < 500 THEN 1 ELSE 0 END)"
    ", sum(CASE WHEN r.status >= 500 THEN 1 ELSE 0 END)"
    ", coalesce(sum(r.bytes_sent), 0), count(r.bytes_sent), min(r.ts), max(r.ts)"
)

_AGGREGATE = (
    f"SELECT r.ts / {US_PER_DAY} AS day, r.client_id, r.source_id, {ROLLUP_SUMS_SQL}"
    f", sum(DISTINCT 1 << CAST((r.ts / {US_PER_HOUR}) % 24 AS INTEGER))"
    " FROM request_rows r JOIN endpoints e ON e.id = r.endpoint_id"
    " WHERE r.id BETWEEN :lo AND :hi GROUP BY 1, 2, 3"
)
_HOURS = (
    f"SELECT r.ts / {US_PER_HOUR} AS hour, r.source_id, count(*) FROM request_rows r"
    " WHERE r.id BETWEEN :lo AND :hi GROUP BY 1, 2"
)

Key = tuple[int, ...]


def aggregate(conn: Connection, lo: int, hi: int) -> tuple[dict[Key, list[int]], dict[Key, int]]:
    """Return the rollup values of the stored rows with lo <= id <= hi: (day, client, source) -> the
    ROLLUP_COLUMNS, and (hour, source) -> requests."""
    days = {
        tuple(int(v) for v in row[:3]): [int(v) for v in row[3:]]
        for row in conn.execute(text(_AGGREGATE), {"lo": lo, "hi": hi})
    }
    hours: dict[Key, int] = {
        (int(h), int(s)): int(n) for h, s, n in conn.execute(text(_HOURS), {"lo": lo, "hi": hi})
    }
    return days, hours


def subtract(
    after: tuple[dict[Key, list[int]], dict[Key, int]], before: tuple[dict[Key, list[int]], dict[Key, int]]
) -> tuple[dict[Key, list[int]], dict[Key, int]]:
    """What the rows added between `before` and `after` contribute (counts subtract; min, max and the
    hour mask are taken from `after`, merging them again is harmless)."""
    n = len(COUNT_COLUMNS)
    days: dict[Key, list[int]] = {}
    for key, values in after[0].items():
        old = before[0].get(key)
        if old is not None:
            values = [a - b for a, b in zip(values[:n], old[:n], strict=True)] + values[n:]
        if values[0] > 0:
            days[key] = values
    hours = {k: v - before[1].get(k, 0) for k, v in after[1].items() if v - before[1].get(k, 0) > 0}
    return days, hours


def apply(conn: Connection, days: dict[Key, list[int]], hours: dict[Key, int]) -> None:
    """Add aggregated values to the rollup tables (an upsert per key)."""
    dialect = conn.dialect.name
    least, greatest = ("min", "max") if dialect == "sqlite" else ("LEAST", "GREATEST")
    if days:
        cols = ("day", "client_id", "source_id", *ROLLUP_COLUMNS)
        sets = [f"{c} = client_days.{c} + excluded.{c}" for c in COUNT_COLUMNS] + [
            f"first_ts = {least}(client_days.first_ts, excluded.first_ts)",
            f"last_ts = {greatest}(client_days.last_ts, excluded.last_ts)",
            "hours = client_days.hours | excluded.hours",
        ]
        sql = (
            f"INSERT INTO client_days ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)}) "
            f"ON CONFLICT (day, client_id, source_id) DO UPDATE SET {', '.join(sets)}"
        )
        _executemany(conn, sql, [(*k, *v) for k, v in days.items()], cols)
    if hours:
        _executemany(
            conn,
            "INSERT INTO source_hours (hour, source_id, requests) VALUES (:h, :s, :n) "
            "ON CONFLICT (hour, source_id) DO UPDATE SET requests = source_hours.requests + excluded.requests",
            [(h, s, n) for (h, s), n in hours.items()],
            ("h", "s", "n"),
        )


def _executemany(conn: Connection, sql: str, rows: list[tuple[int, ...]], names: Sequence[str]) -> None:
    if conn.dialect.name == "sqlite":
        # The raw cursor: SQLAlchemy's per-row parameter processing costs more than these upserts.
        raw = conn.connection.dbapi_connection
        assert raw is not None
        cur = raw.cursor()
        cur.executemany(sql, [dict(zip(names, r, strict=True)) for r in rows])
        cur.close()
        return
    conn.execute(text(sql), [dict(zip(names, r, strict=True)) for r in rows])


def rebuild_rollups(conn: Connection, chunk_ids: Sequence[tuple[int, int]] | None = None) -> None:
    """Recompute the rollups of every stored row (the migration from schema 1), file by file."""
    if chunk_ids is None:
        files = [int(f) for (f,) in conn.execute(text("SELECT DISTINCT id FROM files"))]
        chunk_ids = [(f << LINE_OFFSET_BITS, ((f + 1) << LINE_OFFSET_BITS) - 1) for f in files]
    for lo, hi in chunk_ids:
        days, hours = aggregate(conn, lo, hi)
        apply(conn, days, hours)
