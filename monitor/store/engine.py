"""Engine creation for the store: SQLite with the PRAGMAs it needs, or any other SQLAlchemy URL,
and the error texts that name a database without its password."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError

from monitor.core.errors import DatabaseReplaced, StoreError, ambiguous_userinfo, redact_database_url

# SQLite's page cache, per connection (PRAGMA cache_size, in KiB). A command is short-lived and its
# sorts and groupings over millions of rows use the cache (at 10M requests, `audit` took 1.73 s with
# 8 MiB against 1.18 s with 64 MiB). The daemon runs for months, and every page it ever read stays
# resident: its startup check of the trailing history alone touches ~50 MB of index pages. Its small
# cache cost nothing measurable (1M lines written into a 10M-request store: the same wall time at 8
# and 64 MiB, within noise) and took its idle RSS from 137 MB to 88 MB (bench/scale.py).
COMMAND_CACHE_KIB = 65536
DAEMON_CACHE_KIB = 8192


def make_engine(url: str, *, create: bool, cache_kib: int = COMMAND_CACHE_KIB) -> Engine:
    ambiguous = ambiguous_userinfo(url)
    if ambiguous:  # never connect: part of the password would be taken for the host name
        raise StoreError(f"cannot use database URL {safe_url(url)}: {ambiguous}")
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
            _check_writable_file(path)
        # A small pool: the daemon's loop and its delivery thread each keep a warm connection (and its
        # page cache) instead of reconnecting and re-running the PRAGMAs for every batch.
        engine = create_engine(url, pool_size=4, max_overflow=4, pool_pre_ping=False)
        event.listen(engine, "connect", _sqlite_pragmas(cache_kib))
        return engine
    try:
        return create_engine(url, pool_pre_ping=True)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise StoreError(f"cannot use database URL {safe_url(url)}: {short_error(exc, url)}") from None


def _check_writable_file(path: Path) -> None:
    """Refuse a database file this process cannot write (mode 0444, an immutable file, a read-only
    mount) with one clear line, before SQLite fails somewhere in the middle of a command."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return
    except IsADirectoryError:
        raise StoreError(f"the database path {path} is a directory, not a database file") from None
    except OSError as exc:
        raise StoreError(
            f"the database file {path} is not writable: {exc.strerror}",
            hint="the daemon and every command write to it: fix its owner or mode, or choose another [database] url",
        ) from None
    os.close(fd)


def _sqlite_pragmas(cache_kib: int) -> Callable[[Any, Any], None]:
    """The `connect` listener setting each new SQLite connection's PRAGMAs."""

    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        # A plain cursor: the documented recipe toggles `autocommit`, which exists only on Python 3.12+.
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
        cur.close()

    return on_connect


def safe_url(url: str) -> str:
    """The URL as messages may print it: password (even one holding `@` or `/`) masked."""
    return redact_database_url(url)


def short_error(exc: BaseException, url: str | None = None) -> str:
    """The first line of a driver's error; with `url`, that URL and its password never appear in it
    (SQLAlchemy's "Could not parse SQLAlchemy URL from string '...'" quotes the whole URL)."""
    orig = getattr(exc, "orig", None)
    text = str(orig or exc).splitlines()[0][:300] if str(orig or exc) else type(exc).__name__
    if url:
        text = text.replace(url, safe_url(url))
        for secret in _secrets(url):
            text = text.replace(secret, "***")
    return text


def _secrets(url: str) -> list[str]:
    """The password of a URL (by the last `@` rule), raw and as SQLAlchemy decodes it."""
    from urllib.parse import unquote

    rest = url.partition("://")[2].partition("?")[0]
    at = rest.rfind("@")
    if at < 0 or url.startswith("sqlite"):
        return []
    password = rest[:at].partition(":")[2]
    if len(password) < 3:  # too short to search for without mangling the message
        return []
    return sorted({password, unquote(password)}, key=len, reverse=True)


def hint_for(url: str) -> str | None:
    if url.startswith("sqlite"):
        return "check that the database file and its directory are writable by this user"
    return "check the server address, credentials and that the database exists"


# --- one daemon per database, and the database it started with -------------------------------------


def sqlite_file(engine: Engine) -> Path | None:
    """The SQLite database file of an engine (None for PostgreSQL or an in-memory database)."""
    if engine.dialect.name != "sqlite":
        return None
    db = engine.url.database
    return Path(db).absolute() if db and db != ":memory:" else None


def file_identity(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


class DaemonLock:
    """Held by `run` for its whole life: an exclusive `flock` on `<db>.lock` beside a SQLite database
    (released by the kernel when the process dies, however it dies), or a session-level
    `pg_advisory_lock` on PostgreSQL (released when its connection closes). A second daemon on the same
    database is refused: both would read the same logs and race on the same rows.

    On SQLite it also remembers the database file's identity (device and inode) and `check()` compares
    it: a database deleted or replaced under the daemon would otherwise take every later commit into an
    unlinked file, lost at the next start. Detection writes a note into the lock file, and the next
    start refuses a fresh, checkpoint-less database while the note is there (see `refuse_if_replaced`)."""

    PG_KEY = 0x6F6C6C616D61  # "ollama": one advisory lock key for every ollama-monitor daemon

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.path = sqlite_file(engine)
        self.lock_path = None if self.path is None else self.path.with_name(self.path.name + ".lock")
        self._fd: int | None = None
        self._pg: Any = None
        self.identity: tuple[int, int] | None = None
        self.replaced_note: str | None = None

    def acquire(self) -> DaemonLock:
        if self.lock_path is not None:
            self._acquire_file()
        elif self.engine.dialect.name == "postgresql":
            self._acquire_pg()
        return self

    def _acquire_file(self) -> None:
        import fcntl

        assert self.lock_path is not None and self.path is not None
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o640)
        except OSError as exc:
            raise StoreError(f"cannot create the daemon lock {self.lock_path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd).get("pid", "?")
            os.close(fd)
            raise StoreError(
                f"another ollama-monitor daemon (pid {holder}) is running on {self.path}; not starting a second",
                hint="stop the other one first (systemctl stop ollama-monitor), or give this one another [database] url",
            ) from None
        self._fd = fd
        state = _read(fd)
        self.replaced_note = state.get("replaced")
        self.identity = file_identity(self.path)
        self._write({"pid": os.getpid(), **({"replaced": self.replaced_note} if self.replaced_note else {})})

    def _acquire_pg(self) -> None:
        from sqlalchemy import text

        conn = self.engine.connect()
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.PG_KEY}).scalar()
        conn.commit()
        if not got:
            conn.close()
            raise StoreError(
                "another ollama-monitor daemon holds this PostgreSQL database's lock; not starting a second",
                hint="one daemon per database: stop the other one, or give this one another database",
            )
        self._pg = conn

    def refuse_if_replaced(self, has_checkpoints: bool) -> None:
        """After the database was found replaced: a database with checkpoints (a restored backup) is
        followed from them, and the note is cleared; a fresh one is refused, since it would start at
        the end of every log and silently skip what was written meanwhile."""
        if not self.replaced_note:
            return
        if has_checkpoints:
            self.replaced_note = None
            self._write({"pid": os.getpid()})
            return
        raise StoreError(
            f"{self.replaced_note}; this database has no checkpoints, so following would skip the lines "
            "logged since",
            hint=f"put the database back (it is followed on from its checkpoints), or `ollama-monitor ingest` each "
            f"source's log into this one, then start again; or delete {self.lock_path} to start at the end of every log",
        )

    def check(self) -> None:
        """Raise DatabaseReplaced when the SQLite file is no longer the one the daemon opened."""
        if self.path is None or self.identity is None:
            return
        now = file_identity(self.path)
        if now == self.identity:
            return
        what = "deleted" if now is None else "replaced"
        note = f"the database {self.path} was {what} while the daemon ran (pid {os.getpid()})"
        if self._fd is not None:
            self._write({"pid": os.getpid(), "replaced": note})
        self.identity = None  # report once
        raise DatabaseReplaced(
            note, hint="restart the daemon; it follows on from the checkpoints of the database it finds"
        )

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None
        if self._pg is not None:
            from sqlalchemy import text

            # Unlock explicitly: close() only returns the connection to the pool, which keeps a
            # session-level advisory lock held.
            try:
                self._pg.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.PG_KEY})
                self._pg.commit()
            finally:
                self._pg.invalidate()
                self._pg.close()
                self._pg = None

    def _write(self, data: dict[str, Any]) -> None:
        import json

        assert self._fd is not None
        payload = json.dumps(data).encode()
        os.lseek(self._fd, 0, os.SEEK_SET)
        os.ftruncate(self._fd, 0)
        os.write(self._fd, payload)
        os.fsync(self._fd)


def _read(fd: int) -> dict[str, Any]:
    import json

    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 65536)
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
