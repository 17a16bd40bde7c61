"""The store on a real SQLite file and on a real PostgreSQL server: same code, same results."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.core.errors import StoreError
from monitor.core.records import Checkpoint, Request
from monitor.store import Store
from monitor.store.schema import SCHEMA_VERSION
from tests import services

T0 = datetime(2025, 3, 21, 8, 52, 32, tzinfo=UTC)


def _requests(n: int) -> list[tuple[int, Request]]:
    return [
        (
            i * 100,
            Request(
                T0 + timedelta(seconds=i),
                f"10.0.0.{i % 5}",
                "POST",
                f"/api/chat?i={i}",
                200,
                12.5,
                100,
                "ua",
                None if i % 2 else "198.51.100.7",
            ),
        )
        for i in range(n)
    ]


def exercise(store: Store) -> None:
    fid = store.file_id("nginx", "fp1", "/var/log/nginx/access.log")
    assert store.file_id("nginx", "fp1", "/var/log/nginx/access.log.1") == fid  # same content, same file
    batch = _requests(50)
    result = store.add_batch(
        "nginx", fid, batch, [(9999, "bad line", "x" * 5000)], Checkpoint("nginx", "fp1", 5000, "/p")
    )
    assert (result.inserted, result.duplicates) == (50, 0)
    # Replaying the same batch (a crash before the caller saw the commit) adds nothing.
    again = store.add_batch("nginx", fid, batch[:30], [], Checkpoint("nginx", "fp1", 3000, "/p"))
    assert (again.inserted, again.duplicates) == (0, 30)
    assert store.count_requests() == 50
    cp = store.checkpoint("nginx", "fp1")
    assert cp is not None and cp.position == 3000
    row = next(store.iter_requests(since=T0 + timedelta(seconds=10), until=T0 + timedelta(seconds=11)))
    assert row["ts"] == T0 + timedelta(seconds=10) and row["path"] == "/api/chat?i=10"
    assert row["forwarded_for"] == "198.51.100.7" and row["latency_ms"] == 12.5
    assert store.checkpoints("nginx")[0]["last_line_ts"] == T0 + timedelta(seconds=49)
    rejects = store.recent_rejects()
    assert len(rejects) == 1 and len(rejects[0]["line"]) == 2000
    assert store.approve("192.0.2.0/24", "lab") is True and store.approve("192.0.2.0/24", "lab2") is False
    assert [a["note"] for a in store.approvals()] == ["lab2"]
    assert store.revoke("192.0.2.0/24") and not store.approvals()
    store.set_meta("heartbeat", "1")
    store.set_meta("heartbeat", "2")
    assert store.get_meta("heartbeat") == "2"
    assert store.get_meta("schema_version") == str(SCHEMA_VERSION)


def test_sqlite_store(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "monitor.db"
    with Store.open(f"sqlite:///{db}") as store:
        exercise(store)
        assert store.database_size()
    with sqlite3.connect(db) as conn:  # users can query it with plain sqlite3
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT min(ts) FROM requests").fetchone() == ("2025-03-21 08:52:32.000000",)
        indexes = {r[1] for r in conn.execute("SELECT * FROM sqlite_master WHERE type = 'index'")}
        assert "ix_request_rows_ts" in indexes


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    Store.open(url).close()
    with sqlite3.connect(tmp_path / "m.db") as conn:
        conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="newer"):
        Store.open(url)


@pytest.mark.service
def test_postgresql_store() -> None:
    with services.postgres() as url, Store.open(url) as store:
        exercise(store)
        assert store.database_size()


def _sqlite_memory_used() -> int:
    """Bytes SQLite's allocator holds in this process (its page caches above all): `sqlite3_memory_used`,
    looked up through the loaded `_sqlite3` module, whether it links libsqlite3 or embeds it."""
    import _sqlite3
    import ctypes

    fn = ctypes.CDLL(_sqlite3.__file__).sqlite3_memory_used
    fn.restype = ctypes.c_int64
    return int(fn())


def test_the_daemon_keeps_a_small_page_cache_and_commands_a_large_one(tmp_path: Path) -> None:
    """The daemon runs for months and every page it reads stays resident up to its cache size: at 10M
    requests its startup check of the history alone held ~50 MB with a command's 64 MiB cache. Read
    48 MB of pages through the store `run` opens, then through a command's: SQLite's own allocation
    count shows what each connection kept."""
    from monitor.cli.common import Env
    from monitor.store.engine import COMMAND_CACHE_KIB

    db = tmp_path / "m.db"
    config = tmp_path / "monitor.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{db}"\n', encoding="utf-8")
    with sqlite3.connect(db) as conn:  # 12,000 pages of 4 KiB, one row each
        conn.execute("CREATE TABLE filler (b BLOB)")
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 12000) "
            "INSERT INTO filler SELECT randomblob(3500) FROM n"
        )
    conn.close()

    def kept_after_a_scan(store: Store) -> int:
        with store.engine.connect() as c:
            before = _sqlite_memory_used()
            assert c.exec_driver_sql("SELECT sum(length(b)) FROM filler").scalar() == 12000 * 3500
            return _sqlite_memory_used() - before

    daemon = Env(config_path=str(config)).open_store(daemon=True)
    try:
        kept = kept_after_a_scan(daemon)
        assert kept < 12 * 2**20, kept  # its 8 MiB cache and a little more
    finally:
        daemon.close()
    command = Env(config_path=str(config)).open_store()
    try:
        assert kept_after_a_scan(command) > 40 * 2**20  # all 48 MB fit in COMMAND_CACHE_KIB
    finally:
        command.close()
    assert COMMAND_CACHE_KIB * 1024 > 48 * 2**20
