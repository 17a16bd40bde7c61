"""Read-only queries behind `ollama-monitor status`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from monitor.store import Store, schema


def requests_since_by_source(store: Store, since: datetime) -> dict[str, int]:
    """Requests per source since `since`: whole days from the rollups, the rest through the ts index."""
    from monitor.store.rollup_queries import by_source

    return by_source(store, since)


def outbox_counts(store: Store) -> dict[str, int]:
    o = schema.outbox
    with store.engine.connect() as conn:
        return {
            str(state): int(n)
            for state, n in conn.execute(select(o.c.state, func.count()).group_by(o.c.state))
        }


def alerts_since(store: Store, since: datetime) -> int:
    a = schema.alerts
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(a).where(a.c.ts >= since)).scalar_one())


def rejects_since_by_source(store: Store, since: datetime) -> dict[str, dict[str, int]]:
    """Rejected lines stored at or after `since`: source -> reason -> count (most first)."""
    rj = schema.rejects
    stmt = (
        select(rj.c.source, rj.c.reason, func.count())
        .where(rj.c.seen_at >= since)
        .group_by(rj.c.source, rj.c.reason)
        .order_by(func.count().desc())
    )
    out: dict[str, dict[str, int]] = {}
    with store.engine.connect() as conn:
        for source, reason, n in conn.execute(stmt):
            out.setdefault(str(source), {})[str(reason)] = int(n)
    return out
