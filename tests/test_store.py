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
