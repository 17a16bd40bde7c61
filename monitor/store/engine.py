"""Engine creation for the store: SQLite with the PRAGMAs it needs, or any other SQLAlchemy URL,
and the error texts that name a database without its password."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError

from monitor.errors import StoreError


def make_engine(url: str, *, create: bool) -> Engine:
    if url.startswith("sqlite"):
        db_path = url.split(":///", 1)[1] if ":///" in url else ""
        if db_path and db_path != ":memory:":
            path = Path(db_path)
            if create:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StoreError(
                        f"cannot create the database directory {path.parent}: {exc.strerror}",
                        hint="set [database] url to a writable place, or run with --config",
                    ) from None
            if not os.access(path.parent, os.W_OK):
                raise StoreError(
                    f"the database directory {path.parent} is not writable",
                    hint="SQLite needs to write the database and its -wal file beside it; choose a writable [database] url",
                )
        # A small pool: the daemon's loop and its delivery thread each keep a warm connection (and its
        # page cache) instead of reconnecting and re-running the PRAGMAs for every batch.
        engine = create_engine(url, pool_size=4, max_overflow=4, pool_pre_ping=False)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    try:
        return create_engine(url, pool_pre_ping=True)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise StoreError(f"cannot use database URL {safe_url(url)}: {short_error(exc)}") from None


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # A plain cursor: the documented recipe toggles `autocommit`, which exists only on Python 3.12+.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA cache_size=-65536")  # 64 MiB: index inserts by client address are random writes
    cur.close()


def safe_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        userinfo, host = rest.split("@", 1)
        return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"
    return url


def short_error(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig or exc).splitlines()[0][:300]


def hint_for(url: str) -> str | None:
    if url.startswith("sqlite"):
        return "check that the database file and its directory are writable by this user"
    return "check the server address, credentials and that the database exists"
