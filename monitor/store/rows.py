"""Rows of a batch in the order the writer maps them to `request_rows`, built outside any transaction.

Kept apart from the Store so a parse worker process can build a batch's rows (the Python work of an
insert that is not binding) while the writer process inserts the previous batch. The text fields stay
text here: only the writer knows the dictionary ids (monitor.store.dictionary).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from monitor.core.records import Request
from monitor.store.schema import LINE_OFFSET_BITS, ts_key

# (id, ts, client_ip, method, path, status, latency_ms, bytes_sent, user_agent, forwarded_for, peer_ip)
Row = tuple[
    int,
    int,
    str,
    str | None,
    str | None,
    int | None,
    float | None,
    int | None,
    str | None,
    str | None,
    str | None,
]


def sqlite_ts(ts: datetime) -> str:
    """Format an aware datetime the way SQLAlchemy stores DateTime on SQLite (sortable UTC text)."""
    if ts.tzinfo is not UTC and ts.tzinfo is not None and ts.utcoffset():
        ts = ts.astimezone(UTC)
    return ts.isoformat(" ", "microseconds")[:26]


@dataclass(frozen=True)
class SqliteRows:
    """Parsed lines as `Row`s, with what the checkpoint needs to know of them: what remains for the
    writer is the dictionary ids, binding and inserting. (The name predates PostgreSQL using it too.)"""

    rows: list[Row]
    last_ts: datetime | None
    max_offset: int
    min_offset: int = 0

    def __len__(self) -> int:
        return len(self.rows)


def sqlite_rows(source: str, file_id: int, parsed: Sequence[tuple[int, Request]]) -> SqliteRows:
    """Build the rows of parsed lines. Lines of a busy log share timestamps (the same second, often
    the same datetime object): each run of equal times is converted once."""
    del source  # the writer adds the source id
    base = file_id << LINE_OFFSET_BITS
    rows: list[Row] = []
    append = rows.append
    last: datetime | None = None
    latest: datetime | None = None
    key = 0
    top = 0
    bottom = parsed[0][0] if parsed else 0
    for off, r in parsed:
        ts = r.ts
        if ts is not last and ts != last:
            key = ts_key(ts)
            last = ts
            if latest is None or ts > latest:
                latest = ts
        if off > top:
            top = off
        elif off < bottom:
            bottom = off
        append(
            (
                base | off,
                key,
                r.client_ip,
                r.method,
                r.path,
                r.status,
                r.latency_ms,
                r.bytes_sent,
                r.user_agent,
                r.forwarded_for,
                r.peer_ip,
            )
        )
    return SqliteRows(rows, latest, top, bottom)
