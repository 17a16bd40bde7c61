"""The Store: SQLAlchemy Core over SQLite (WAL) or PostgreSQL.

The one write path that matters is `add_batch`: a batch of parsed lines, their rejects and the
checkpoint that covers them commit in ONE transaction, and a unique (file_id, line_offset) key makes
re-reading a line after a crash add nothing. That is what makes ingestion exactly-once.

SQLAlchemy is imported here and in this package only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from monitor.core.errors import StoreError
from monitor.core.records import Checkpoint, Request
from monitor.store import schema
from monitor.store.dictionary import Dictionaries
from monitor.store.engine import COMMAND_CACHE_KIB, hint_for, make_engine, safe_url, short_error
from monitor.store.inserts import insert_requests
from monitor.store.reads import request_select  # noqa: F401 - re-exported for the query modules
from monitor.store.rows import SqliteRows
from monitor.store.schema import SCHEMA_VERSION, metadata

REJECT_LINE_CAP = 2000
REJECTS_PER_FILE_CAP = 10_000  # beyond this, rejects are counted but their text is not kept


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | str | None) -> datetime | None:
    """Return an aware UTC datetime from what the database returned (SQLite gives naive or text)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@dataclass(frozen=True)
class BatchResult:
    inserted: int
    duplicates: int
    rejects: int


class Store:
    """A handle on the monitor's database. Cheap to open; call `close()` (or use `with`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._dicts = Dictionaries()

    # --- lifecycle -------------------------------------------------------------------------
    @classmethod
    def open(cls, url: str, *, create: bool = True, cache_kib: int = COMMAND_CACHE_KIB) -> Store:
        """Open (and create or migrate) the database at `url`; raise StoreError with a clear message.
        `cache_kib`: SQLite's page cache per connection (the daemon's is DAEMON_CACHE_KIB)."""
        engine = make_engine(url, create=create, cache_kib=cache_kib)
        store = cls(engine)
        try:
            store._create_or_migrate()
        except OperationalError as exc:
            engine.dispose()
            raise StoreError(
                f"cannot open database {safe_url(url)}: {short_error(exc, url)}", hint=hint_for(url)
            ) from None
        except SQLAlchemyError as exc:
            engine.dispose()
            raise StoreError(f"database error on {safe_url(url)}: {short_error(exc, url)}") from None
        return store

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _create_or_migrate(self) -> None:
        from monitor.store.migrations import check_columns, migrate, parse_version, refuse_foreign
        from monitor.store.views import create_view

        with self.engine.begin() as conn:
            # `requests` is a view from schema 2 on (a table before): another program's table of that name
            # is refused as well.
            refuse_foreign(conn, set(metadata.tables) | {"requests"})
            metadata.create_all(conn)
            current = conn.execute(
                select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")
            ).scalar()
            if current is not None:
                current = parse_version(current)
            if current is None or current == SCHEMA_VERSION:
                check_columns(conn, metadata)
            if current is None:
                conn.execute(insert(schema.meta).values(key="schema_version", value=str(SCHEMA_VERSION)))
                create_view(conn)
            elif current < SCHEMA_VERSION:
                migrate(conn, current)
                conn.execute(
                    update(schema.meta)
                    .where(schema.meta.c.key == "schema_version")
                    .values(value=str(SCHEMA_VERSION))
                )
                create_view(conn)
            elif current > SCHEMA_VERSION:
                raise StoreError(
                    f"the database has schema version {current}, newer than this ollama-monitor ({SCHEMA_VERSION})",
                    hint="upgrade ollama-monitor",
                )

    # --- files and checkpoints -----------------------------------------------------------------
    def file_id(self, source: str, fingerprint: str, path: str) -> int:
        """Return the id of the file (source, fingerprint), creating it on first sight."""
        f = schema.files
        with self.engine.begin() as conn:
            found = conn.execute(
                select(f.c.id).where(f.c.source == source, f.c.fingerprint == fingerprint)
            ).scalar()
            if found is not None:
                return int(found)
            result = conn.execute(
                insert(f).values(source=source, fingerprint=fingerprint, path=path, first_seen=utcnow())
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def checkpoint(self, source: str, fingerprint: str) -> Checkpoint | None:
        c = schema.checkpoints
        with self.engine.connect() as conn:
            row = conn.execute(select(c).where(c.c.source == source, c.c.fingerprint == fingerprint)).first()
        if row is None:
            return None
        return Checkpoint(row.source, row.fingerprint, int(row.position), row.path, row.cursor)

    def checkpoints(self, source: str | None = None) -> list[dict[str, Any]]:
        """Return every checkpoint row (as dicts, newest first), optionally for one source."""
        c = schema.checkpoints
        stmt = select(c).order_by(c.c.updated_at.desc())
        if source is not None:
            stmt = stmt.where(c.c.source == source)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(stmt)]
        for r in rows:
            r["updated_at"] = as_utc(r["updated_at"])
            r["last_line_ts"] = as_utc(r["last_line_ts"])
        return rows

    # --- the write path --------------------------------------------------------------------------
    def add_batch(
        self,
        source: str,
        file_id: int,
        parsed: Sequence[tuple[int, Request]] | SqliteRows,
        rejects: Sequence[tuple[int, str, str]] = (),
        checkpoint: Checkpoint | None = None,
        skipped: int = 0,
    ) -> BatchResult:
        """Store parsed lines, rejects and the checkpoint covering them in one transaction.

        `parsed` holds (line offset, Request), or on SQLite the same lines as `sqlite_rows` built them
        (a parse worker does that work in its own process); `rejects` holds (line offset, reason, text).
        A line already stored (same file and offset) is ignored, so replaying a batch is harmless.
        """
        try:
            with self.engine.begin() as conn:
                inserted = insert_requests(conn, self._dicts, source, file_id, parsed)
                kept = self._insert_rejects(conn, source, file_id, rejects) if rejects else 0
                if checkpoint is not None:
                    if isinstance(parsed, SqliteRows):
                        last_ts = parsed.last_ts
                    else:
                        last_ts = max((r.ts for _, r in parsed), default=None)
                    self._save_checkpoint(conn, checkpoint, len(parsed), len(rejects), skipped, last_ts)
        except OperationalError as exc:
            self._dicts.discard()
            raise StoreError(
                f"cannot write to the database: {short_error(exc)}", hint=hint_for(str(self.engine.url))
            ) from None
        except BaseException:
            self._dicts.discard()
            raise
        self._dicts.commit()
        return BatchResult(inserted, len(parsed) - inserted, kept)

    def _insert_rejects(
        self, conn: Connection, source: str, file_id: int, rejects: Sequence[tuple[int, str, str]]
    ) -> int:
        kept_so_far = conn.execute(
            select(func.count()).select_from(schema.rejects).where(schema.rejects.c.file_id == file_id)
        ).scalar_one()
        room = max(0, REJECTS_PER_FILE_CAP - int(kept_so_far))
        if room == 0:
            return 0
        now = utcnow()
        values = [
            {
                "source": source,
                "file_id": file_id,
                "line_offset": off,
                "reason": reason[:200],
                "line": line[:REJECT_LINE_CAP],
                "seen_at": now,
            }
            for off, reason, line in rejects[:room]
        ]
        dialect = sqlite if self.is_sqlite else postgresql
        stmt = dialect.insert(schema.rejects).on_conflict_do_nothing(
            index_elements=["file_id", "line_offset"]
        )
        conn.execute(stmt, values)
        return len(values)

    def _save_checkpoint(
        self,
        conn: Connection,
        cp: Checkpoint,
        lines: int,
        rejected: int,
        skipped: int,
        last_ts: datetime | None,
    ) -> None:
        c = schema.checkpoints
        now = utcnow()
        values: dict[str, Any] = {
            "path": cp.path,
            "position": cp.position,
            "cursor": cp.cursor,
            "updated_at": now,
            "lines": c.c.lines + lines,
            "rejected": c.c.rejected + rejected,
            "skipped": c.c.skipped + skipped,
        }
        if last_ts is not None:
            values["last_line_ts"] = (
                func.coalesce(func.max(c.c.last_line_ts, last_ts), last_ts)
                if self.is_sqlite
                else func.greatest(c.c.last_line_ts, last_ts)
            )
        result = conn.execute(
            update(c).where(c.c.source == cp.source, c.c.fingerprint == cp.fingerprint).values(**values)
        )
        if result.rowcount == 0:
            conn.execute(
                insert(c).values(
                    source=cp.source,
                    fingerprint=cp.fingerprint,
                    path=cp.path,
                    position=cp.position,
                    cursor=cp.cursor,
                    lines=lines,
                    rejected=rejected,
                    skipped=skipped,
                    last_line_ts=last_ts,
                    updated_at=now,
                )
            )

    # --- small key/value facts ---------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            value = conn.execute(select(schema.meta.c.value).where(schema.meta.c.key == key)).scalar()
        return None if value is None else str(value)

    def set_meta(self, key: str, value: str) -> None:
        m = schema.meta
        with self.engine.begin() as conn:
            if conn.execute(update(m).where(m.c.key == key).values(value=value)).rowcount == 0:
                conn.execute(insert(m).values(key=key, value=value))

    # --- reads -------------------------------------------------------------------------------------
    def count_requests(self, source: str | None = None) -> int:
        """Return how many requests are stored (from one source, when given).

        Without a source: the rows of the oldest stored day through the ts index, plus the rollups of
        the days after it (which count exactly the rows stored on them), so the cost does not grow
        with the store. Falls back to counting rows when the rollups do not reach back that far."""
        r, cd = schema.request_rows, schema.client_days
        if source is None:
            with self.engine.connect() as conn:
                oldest = conn.execute(select(func.min(r.c.ts))).scalar()
                if oldest is None:
                    return 0
                day = int(oldest) // schema.US_PER_DAY
                first_rollup = conn.execute(select(func.min(cd.c.day))).scalar()
                if first_rollup is not None and int(first_rollup) <= day:
                    head = conn.execute(
                        select(func.count()).where(r.c.ts < (day + 1) * schema.US_PER_DAY)
                    ).scalar_one()
                    tail = conn.execute(select(func.sum(cd.c.requests)).where(cd.c.day > day)).scalar()
                    return int(head) + int(tail or 0)
        stmt = select(func.count()).select_from(r)
        if source is not None:
            sid = (
                select(schema.source_names.c.id).where(schema.source_names.c.name == source).scalar_subquery()
            )
            stmt = stmt.where(r.c.source_id == sid)
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def iter_requests(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        limit: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Yield stored requests as dicts (ts as aware UTC), oldest first, optionally within [since, until).

        Reads the base tables with integer time bounds (the ts index), not the `requests` view."""
        r = schema.request_rows
        stmt = request_select().order_by(r.c.ts, r.c.id)
        if since is not None:
            stmt = stmt.where(r.c.ts >= schema.ts_key(since))
        if until is not None:
            stmt = stmt.where(r.c.ts < schema.ts_key(until))
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.engine.connect() as conn:
            for row in conn.execute(stmt):
                d = dict(row._mapping)
                d["ts"] = schema.from_ts_key(d["ts"])
                yield d

    def recent_rejects(self, limit: int = 20) -> list[dict[str, Any]]:
        rj = schema.rejects
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(rj).order_by(rj.c.id.desc()).limit(limit))]

    def database_size(self) -> int | None:
        """Return the database size in bytes (SQLite file plus WAL, or pg_database_size), or None."""
        if self.is_sqlite:
            db = self.engine.url.database
            if not db or db == ":memory:":
                return None
            return sum(os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p))
        with self.engine.connect() as conn:
            return int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one())

    # --- retention ------------------------------------------------------------------------------------
    def prune(
        self,
        requests_before: datetime,
        windows_before: datetime,
        chunk: int = 50_000,
        rollups_before: datetime | None = None,
    ) -> dict[str, int]:
        """Delete raw requests and rejects older than `requests_before`, windows, alerts and
        delivered or abandoned outbox rows older than `windows_before`, and the per-day rollups of
        the days before `rollups_before` (kept when None). Deletes in chunks so a large first prune
        never holds the write lock for long. Return the rows deleted per table."""
        r, rj, w, a, o = schema.request_rows, schema.rejects, schema.windows, schema.alerts, schema.outbox
        counts = {"requests": 0, "rejects": 0, "windows": 0, "alerts": 0, "outbox": 0, "rollups": 0}
        cutoff = schema.ts_key(requests_before)
        while True:
            with self.engine.begin() as conn:
                ids = select(r.c.id).where(r.c.ts < cutoff).limit(chunk).scalar_subquery()
                n = conn.execute(r.delete().where(r.c.id.in_(ids))).rowcount
            counts["requests"] += n
            if n < chunk:
                break
        with self.engine.begin() as conn:
            counts["rejects"] = conn.execute(rj.delete().where(rj.c.seen_at < requests_before)).rowcount
            counts["windows"] = conn.execute(w.delete().where(w.c.window_start < windows_before)).rowcount
            counts["alerts"] = conn.execute(a.delete().where(a.c.ts < windows_before)).rowcount
            counts["outbox"] = conn.execute(
                o.delete().where(o.c.state.in_(("sent", "failed")), o.c.created_at < windows_before)
            ).rowcount
            if rollups_before is not None:
                # Whole UTC days only: a day's totals go when all of that day is past the cutoff.
                day = schema.ts_key(rollups_before) // schema.US_PER_DAY
                cd, sh = schema.client_days, schema.source_hours
                counts["rollups"] = conn.execute(cd.delete().where(cd.c.day < day)).rowcount
                conn.execute(sh.delete().where(sh.c.hour < day * 24))
        return counts

    # --- approvals (known sources kept in the database) -------------------------------------------------
    def approvals(self) -> list[dict[str, Any]]:
        a = schema.approvals
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(a).order_by(a.c.created_at))]

    def approve(self, network: str, note: str = "") -> bool:
        """Record an approval; return False when it already existed (its note is updated)."""
        a = schema.approvals
        with self.engine.begin() as conn:
            if conn.execute(update(a).where(a.c.network == network).values(note=note)).rowcount:
                return False
            conn.execute(insert(a).values(network=network, note=note, created_at=utcnow()))
            return True

    def revoke(self, network: str) -> bool:
        a = schema.approvals
        with self.engine.begin() as conn:
            return bool(conn.execute(a.delete().where(a.c.network == network)).rowcount)
