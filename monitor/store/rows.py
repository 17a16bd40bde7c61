"""Rows of the requests table in SQLite's column order, built outside any transaction.

Kept apart from the Store so a parse worker process can build a batch's rows (the Python work of an
insert that is not binding) while the writer process inserts the previous batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from monitor.records import Request
from monitor.store.schema import LINE_OFFSET_BITS

SQLITE_INSERT = (
    "INSERT OR IGNORE INTO requests (id, ts, client_ip, method, path, status, latency_ms, bytes_sent, "
    "user_agent, forwarded_for, peer_ip, source, file_id, line_offset) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def sqlite_ts(ts: datetime) -> str:
    """Format an aware datetime the way SQLAlchemy stores DateTime on SQLite (sortable UTC text)."""
    if ts.tzinfo is not UTC and ts.tzinfo is not None and ts.utcoffset():
        ts = ts.astimezone(UTC)
    return ts.isoformat(" ", "microseconds")[:26]


@dataclass(frozen=True)
class SqliteRows:
    """Parsed lines already in the SQLite column order of `SQLITE_INSERT`, with what the checkpoint
    needs to know of them: what remains for the writer is binding and inserting."""

    rows: list[tuple[object, ...]]
    last_ts: datetime | None
    max_offset: int

    def __len__(self) -> int:
        return len(self.rows)


def sqlite_rows(source: str, file_id: int, parsed: Sequence[tuple[int, Request]]) -> SqliteRows:
    """Build the SQLite rows of parsed lines. Lines of a busy log share timestamps (parsers reuse the
    datetime object): each is formatted once."""
    base = file_id << LINE_OFFSET_BITS
    rows: list[tuple[object, ...]] = []
    append = rows.append
    last: datetime | None = None
    latest: datetime | None = None
    text = ""
    top = 0
    for off, r in parsed:
        ts = r.ts
        if ts is not last:
            text = sqlite_ts(ts)
            last = ts
            if latest is None or ts > latest:
                latest = ts
        if off > top:
            top = off
        append(
            (
                base | off,
                text,
                r.client_ip,
                r.method,
                r.path,
                r.status,
                r.latency_ms,
                r.bytes_sent,
                r.user_agent,
                r.forwarded_for,
                r.peer_ip,
                source,
                file_id,
                off,
            )
        )
    return SqliteRows(rows, latest, top)
