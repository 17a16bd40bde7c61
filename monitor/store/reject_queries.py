"""Rejected lines for the rules: when a replay should hand each stored reject to the pipeline.

A reject has no time of its own (it could not be parsed); `seen_at` is when it was stored. In a
replay the clock is the lines' own, so a reject is placed at the time of the request stored just
before it in the same file (by line offset), or just after it when none precedes it; a file with no
request at all falls back to `seen_at`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select

from monitor.store import Store, as_utc
from monitor.store import schema as s

RejectLine = tuple[int, str, str]  # (line offset, reason, text), as Store.add_batch takes them


def rejects_by_slot(
    store: Store, step: timedelta, floor: Callable[[datetime, timedelta], datetime]
) -> dict[tuple[str, datetime], list[RejectLine]]:
    """Return the stored rejects grouped by (source, floor(estimated time, step)), in line order."""
    rj, r = s.rejects, s.requests
    out: dict[tuple[str, datetime], list[RejectLine]] = {}
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(
                rj.c.source, rj.c.file_id, rj.c.line_offset, rj.c.reason, rj.c.line, rj.c.seen_at
            ).order_by(rj.c.file_id, rj.c.line_offset)
        ).all()
        for source, file_id, offset, reason, line, seen_at in rows:
            key = s.line_key(file_id, offset)
            lo, hi = s.line_key(file_id, 0), s.line_key(file_id + 1, 0)
            ts = conn.execute(
                select(r.c.ts).where(r.c.id < key, r.c.id >= lo).order_by(r.c.id.desc()).limit(1)
            ).scalar()
            if ts is None:
                ts = conn.execute(
                    select(r.c.ts).where(r.c.id > key, r.c.id < hi).order_by(r.c.id).limit(1)
                ).scalar()
            when = as_utc(ts if ts is not None else seen_at)
            assert when is not None
            out.setdefault((str(source), floor(when, step)), []).append((int(offset), str(reason), str(line)))
    return out
