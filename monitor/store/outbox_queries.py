"""SQL for the alert outbox and the alerts log (tables `outbox` and `alerts` of monitor.store.schema).

An outbox row is one notification for one service. Its life:

    pending --claim--> sending --finish(ok)--> sent
       ^                  |
       +--finish(failed)--+          (attempts + 1, next_attempt_at = backoff)
    pending/sending --give_up--> failed   (too old, or its service is no longer configured)

`claim` is a conditional UPDATE (`... WHERE state = 'pending'`): of two senders racing for a row (the
daemon and `alerts retry`), exactly one wins, so nothing is sent twice by concurrent processes. A
claimed row holds a lease (`next_attempt_at` = lease end); if the sender dies mid-send, the row is
claimable again once the lease has run out. See monitor.alerts.delivery for why that is the right trade.

All times are aware UTC datetimes; they are normalised to UTC before they reach SQLite, which stores
DateTime as text and would otherwise compare mixed offsets wrongly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from monitor.core.errors import StoreError
from monitor.core.records import Alert
from monitor.store import Store, as_utc, utcnow
from monitor.store.schema import alerts as alerts_table
from monitor.store.schema import outbox

PENDING, SENDING, SENT, FAILED = "pending", "sending", "sent", "failed"
TEXT_CAP = 4000  # an alert's title/message embed log text: keep one hostile line from bloating the log


def _utc(ts: datetime) -> datetime:
    if ts.tzinfo is None:
        raise ValueError("naive datetime: pass an aware UTC datetime")
    return ts.astimezone(UTC)


def _row(row: Any) -> dict[str, Any]:
    d = dict(row._mapping)
    for key in ("next_attempt_at", "created_at", "sent_at", "ts"):
        if key in d:
            d[key] = as_utc(d[key])
    return d


@contextmanager
def _guard(what: str) -> Iterator[None]:
    """Turn a database failure into a StoreError with a one-line message."""
    try:
        yield
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None) or exc
        raise StoreError(f"cannot {what}: {str(orig).splitlines()[0][:200]}") from None


def enqueue(store: Store, rows: Sequence[dict[str, Any]]) -> int:
    """Insert outbox rows (dicts with notification_id, service, title, body, severity, created_at,
    next_attempt_at); a (notification_id, service) already present is left alone. Return rows added."""
    if not rows:
        return 0
    values = [
        {
            **r,
            "state": PENDING,
            "attempts": 0,
            "created_at": _utc(r["created_at"]),
            "next_attempt_at": _utc(r["next_attempt_at"]),
        }
        for r in rows
    ]
    dialect = sqlite if store.is_sqlite else postgresql
    stmt = dialect.insert(outbox).on_conflict_do_nothing(index_elements=["notification_id", "service"])
    added = 0
    with _guard("store notifications"), store.engine.begin() as conn:
        for value in values:  # one statement per row: rowcount then says whether it was new
            added += max(0, conn.execute(stmt, value).rowcount)
    return added


def due(store: Store, now: datetime, *, force: bool = False, limit: int = 500) -> list[dict[str, Any]]:
    """Return rows to attempt now, oldest first: pending rows whose backoff has passed (every pending
    row with `force`) and rows whose sending lease ran out (their sender died)."""
    now = _utc(now)
    pending = outbox.c.state == PENDING
    if not force:
        pending = and_(pending, outbox.c.next_attempt_at <= now)
    stale = and_(outbox.c.state == SENDING, outbox.c.next_attempt_at <= now)
    stmt = select(outbox).where(or_(pending, stale)).order_by(outbox.c.id).limit(limit)
    with _guard("read the outbox"), store.engine.connect() as conn:
        return [_row(r) for r in conn.execute(stmt)]


def claim(store: Store, row_id: int, now: datetime, lease_until: datetime, *, force: bool = False) -> bool:
    """Atomically take a row for sending: count the attempt and hold it until `lease_until`.

    Return False when another sender has it (or it is no longer due). The UPDATE's WHERE repeats the
    due condition, so the check and the take are one statement: no two senders can both win.
    """
    now = _utc(now)
    pending = outbox.c.state == PENDING
    if not force:
        pending = and_(pending, outbox.c.next_attempt_at <= now)
    stale = and_(outbox.c.state == SENDING, outbox.c.next_attempt_at <= now)
    stmt = (
        update(outbox)
        .where(outbox.c.id == row_id, or_(pending, stale))
        .values(state=SENDING, attempts=outbox.c.attempts + 1, next_attempt_at=_utc(lease_until))
    )
    with _guard("claim a notification"), store.engine.begin() as conn:
        return bool(conn.execute(stmt).rowcount == 1)


def finish(
    store: Store,
    row_id: int,
    *,
    sent: bool,
    now: datetime,
    next_attempt_at: datetime | None = None,
    error: str | None = None,
    give_up: bool = False,
) -> bool:
    """Record the outcome of a claimed row: `sent`, else pending again at `next_attempt_at` (or failed
    for good with `give_up`). Only a row still in `sending` changes; return whether it did."""
    if sent:
        values: dict[str, Any] = {"state": SENT, "sent_at": _utc(now), "last_error": None}
    elif give_up:
        values = {"state": FAILED, "last_error": error}
    else:
        if next_attempt_at is None:
            raise ValueError("a failed attempt needs next_attempt_at")
        values = {"state": PENDING, "next_attempt_at": _utc(next_attempt_at), "last_error": error}
    stmt = update(outbox).where(outbox.c.id == row_id, outbox.c.state == SENDING).values(**values)
    with _guard("record a delivery"), store.engine.begin() as conn:
        return bool(conn.execute(stmt).rowcount == 1)


def defer(store: Store, service: str, until: datetime) -> int:
    """Push every pending row of `service` due before `until` back to `until` (the service is down:
    its queue waits with it instead of costing one failed attempt per row). Return rows moved."""
    stmt = (
        update(outbox)
        .where(outbox.c.service == service, outbox.c.state == PENDING, outbox.c.next_attempt_at < _utc(until))
        .values(next_attempt_at=_utc(until))
    )
    with _guard("record a delivery"), store.engine.begin() as conn:
        return int(conn.execute(stmt).rowcount)


def give_up(store: Store, row_id: int, error: str) -> bool:
    """Mark a pending (or stale sending) row failed for good without an attempt."""
    stmt = (
        update(outbox)
        .where(outbox.c.id == row_id, outbox.c.state.in_((PENDING, SENDING)))
        .values(state=FAILED, last_error=error)
    )
    with _guard("record a delivery"), store.engine.begin() as conn:
        return bool(conn.execute(stmt).rowcount == 1)


def rows(
    store: Store,
    *,
    states: Iterable[str] | None = None,
    since: datetime | None = None,
    notification_id: str | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Return outbox rows, newest first, optionally filtered by state, creation time or notification."""
    stmt = select(outbox).order_by(outbox.c.id.desc()).limit(limit)
    if states is not None:
        stmt = stmt.where(outbox.c.state.in_(list(states)))
    if since is not None:
        stmt = stmt.where(outbox.c.created_at >= _utc(since))
    if notification_id is not None:
        stmt = stmt.where(outbox.c.notification_id == notification_id)
    with _guard("read the outbox"), store.engine.connect() as conn:
        return [_row(r) for r in conn.execute(stmt)]


def state_counts(store: Store) -> dict[str, int]:
    """Return the number of outbox rows per state."""
    stmt = select(outbox.c.state, func.count()).group_by(outbox.c.state)
    with _guard("read the outbox"), store.engine.connect() as conn:
        return {str(state): int(n) for state, n in conn.execute(stmt)}


def record_alerts(store: Store, alerts: Sequence[Alert], now: datetime | None = None) -> int:
    """Append alerts to the `alerts` log (for `alerts list` and summaries). Return how many."""
    if not alerts:
        return 0
    created = _utc(now or utcnow())
    values = [
        {
            "ts": _utc(a.ts),
            "rule": a.rule[:64],
            "severity": a.severity.value,
            "key": a.key[:300],
            "client_ips": json.dumps(list(a.client_ips)),
            "title": a.title[:TEXT_CAP],
            "message": a.message[:TEXT_CAP],
            "details": json.dumps(a.details, sort_keys=True, default=str),
            "created_at": created,
        }
        for a in alerts
    ]
    with _guard("store alerts"), store.engine.begin() as conn:
        conn.execute(alerts_table.insert(), values)
    return len(values)


def list_alerts(store: Store, *, since: datetime | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Return logged alerts, newest first (by log time), with client_ips and details decoded."""
    stmt = select(alerts_table).order_by(alerts_table.c.ts.desc(), alerts_table.c.id.desc()).limit(limit)
    if since is not None:
        stmt = stmt.where(alerts_table.c.ts >= _utc(since))
    out = []
    with _guard("read alerts"), store.engine.connect() as conn:
        for r in conn.execute(stmt):
            d = _row(r)
            d["created_at"] = as_utc(d["created_at"])
            d["client_ips"] = _loads(d["client_ips"], [])
            d["details"] = _loads(d["details"], {})
            out.append(d)
    return out


def _loads(text: str, default: Any) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return default
