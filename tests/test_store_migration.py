"""Schema 1 -> 2 in place: a database made by the previous release's schema (tests/fixtures/schema_v1.py,
verbatim) keeps every request, alert, approval, checkpoint and window, and then works as a new one.
Run on a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import importlib.util
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import create_engine, insert, text

from monitor.core.records import Checkpoint, Request
from monitor.store import Store, as_utc
from monitor.store import audit_queries as aq
from monitor.store.schema import SCHEMA_VERSION
from tests import services

T0 = datetime(2025, 3, 21, 8, 52, 32, 123456, tzinfo=UTC)


def _v1() -> ModuleType:
    path = Path(__file__).parent / "fixtures" / "schema_v1.py"
    spec = importlib.util.spec_from_file_location("schema_v1_fixture", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _v1_rows(v1: ModuleType) -> list[dict[str, Any]]:
    rows = []
    for i in range(40):
        rows.append(
            {
                "id": v1.line_key(1 + i % 2, i * 120),
                "ts": T0 + timedelta(minutes=37 * i),
                "client_ip": ["10.0.0.1", "2001:db8::7", "203.0.113.9"][i % 3],
                "method": [None, "POST", "GET", "POST"][i % 4],
                "path": [None, "/api/chat", "/api/tags", "/api/pull"][i % 4],
                "status": [None, 200, 401, 403, 500][i % 5],
                "latency_ms": None if i % 3 else 1356.0275,
                "bytes_sent": None if i % 4 == 3 else 100 + i,
                "user_agent": None if i % 5 == 0 else f"agent/{i % 3}",
                "forwarded_for": "198.51.100.7" if i % 7 == 0 else None,
                "peer_ip": "127.0.0.1" if i % 7 == 0 else None,
                "source": ["nginx", "ollama"][i % 2],
                "file_id": 1 + i % 2,
                "line_offset": i * 120,
            }
        )
    return rows


def make_v1(url: str) -> list[dict[str, Any]]:
    """Build a version-1 database at url as the previous release did, and return its requests."""
    v1 = _v1()
    engine = create_engine(url)
    rows = _v1_rows(v1)
    with engine.begin() as conn:
        v1.metadata.create_all(conn)
        conn.execute(insert(v1.meta).values(key="schema_version", value="1"))
        for fid, source in ((1, "nginx"), (2, "ollama")):
            conn.execute(
                insert(v1.files).values(
                    id=fid, source=source, fingerprint=f"fp{fid}", path=f"/log/{fid}", first_seen=T0
                )
            )
            conn.execute(
                insert(v1.checkpoints).values(
                    source=source,
                    fingerprint=f"fp{fid}",
                    path=f"/log/{fid}",
                    position=5000 + fid,
                    cursor=None,
                    lines=20,
                    rejected=1,
                    skipped=0,
                    last_line_ts=T0,
                    updated_at=T0,
                )
            )
        conn.execute(insert(v1.requests), rows)
        conn.execute(
            insert(v1.rejects).values(
                source="nginx", file_id=1, line_offset=99, reason="bad", line="x", seen_at=T0
            )
        )
        conn.execute(insert(v1.approvals).values(network="192.0.2.0/24", note="lab", created_at=T0))
        conn.execute(
            insert(v1.alerts).values(
                ts=T0,
                rule="unknown_source",
                severity="warning",
                key="k1",
                client_ips='["203.0.113.9"]',
                title="t",
                message="m",
                details="{}",
                created_at=T0,
            )
        )
        conn.execute(
            insert(v1.windows).values(
                client_ip="10.0.0.1", window_start=T0, features='{"requests": 3}', score=0.1, anomalous=False
            )
        )
    engine.dispose()
    return rows


REQUEST_COLUMNS = (
    "id",
    "ts",
    "client_ip",
    "method",
    "path",
    "status",
    "latency_ms",
    "bytes_sent",
    "user_agent",
    "forwarded_for",
    "peer_ip",
    "source",
    "file_id",
    "line_offset",
)


def check_migrated(url: str, rows: list[dict[str, Any]]) -> None:
    with Store.open(url) as store:
        assert store.get_meta("schema_version") == str(SCHEMA_VERSION) == "2"
        with store.engine.connect() as conn:
            got = [
                dict(r._mapping)
                for r in conn.execute(text(f"SELECT {', '.join(REQUEST_COLUMNS)} FROM requests ORDER BY id"))
            ]
            tables = {
                name: conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one()
                for name in (
                    "files",
                    "checkpoints",
                    "rejects",
                    "approvals",
                    "alerts",
                    "windows",
                    "window_state",
                )
            }
            rollup = conn.execute(
                text("SELECT sum(requests), sum(errors_4xx), sum(ok) FROM client_days")
            ).one()
        for g in got:
            g["ts"] = as_utc(g["ts"])
        want = sorted(rows, key=lambda r: r["id"])
        assert got == want  # every request, every column, ts to the microsecond
        assert tables == {
            "files": 2,
            "checkpoints": 2,
            "rejects": 1,
            "approvals": 1,
            "alerts": 1,
            "windows": 1,
            "window_state": 0,  # created by the migration, empty: schema 1 kept no window states
        }
        assert tuple(rollup) == (
            len(rows),
            sum(1 for r in rows if r["status"] in (401, 403)),
            sum(1 for r in rows if r["status"] == 200),
        )
        cp = store.checkpoint("nginx", "fp1")
        assert cp is not None and cp.position == 5001
        # Exactly-once still holds across the migration: re-reading a migrated line adds nothing.
        again = store.add_batch(
            "nginx",
            1,
            [(0, Request(rows[0]["ts"], "10.0.0.1", None, None, None))],
            [],
            Checkpoint("nginx", "fp1", 5001, "/log/1"),
        )
        assert (again.inserted, again.duplicates) == (0, 1)
        new = store.add_batch("nginx", 1, [(7, Request(T0, "10.0.0.1", "GET", "/", 200, None, 5, "agent/0"))])
        assert new.inserted == 1 and store.count_requests() == len(rows) + 1
        clients = {c.client_ip: c.requests for c in aq.clients_since(store, T0 - timedelta(days=1))}
        assert clients["10.0.0.1"] == sum(1 for r in rows if r["client_ip"] == "10.0.0.1") + 1
        # The schema-1 window (feature rows, no state) is adopted as it is, not computed again, and its
        # state is the count of requests stored in it; a request stored in it later makes it due again.
        from monitor.detect.scoring import missing_windows
        from monitor.store import detect_queries as dq

        hour = timedelta(hours=1)
        assert missing_windows(store, T0, T0 + hour, hour) == ([], {})
        assert dq.window_states(store, T0, T0 + hour) == {T0: dq.count_in(store, T0, T0 + hour)} == {T0: 3}
        assert dq.load_windows(store, T0, T0 + hour)[0]["features"] == {"requests": 3}
        store.add_batch("nginx", 1, [(8, Request(T0 + timedelta(minutes=5), "10.0.0.1", "GET", "/", 200))])
        assert missing_windows(store, T0, T0 + hour, hour) == ([T0], {T0: 4})


def test_sqlite_v1_database_migrates_in_place(tmp_path: Path) -> None:
    db = tmp_path / "monitor.db"
    rows = make_v1(f"sqlite:///{db}")
    with sqlite3.connect(db) as conn:  # really the old layout: a requests table with text timestamps
        assert conn.execute(
            "SELECT type, min(ts) FROM sqlite_master, requests WHERE name = 'requests'"
        ).fetchone() == (
            "table",
            "2025-03-21 08:52:32.123456",
        )
    check_migrated(f"sqlite:///{db}", rows)
    with sqlite3.connect(db) as conn:  # the README's queries still work on the view
        assert conn.execute("SELECT type FROM sqlite_master WHERE name = 'requests'").fetchone() == ("view",)
        assert conn.execute("SELECT min(ts) FROM requests").fetchone() == ("2025-03-21 08:52:32.123456",)


@pytest.mark.service
def test_postgresql_v1_database_migrates_in_place() -> None:
    with services.postgres() as url:
        rows = make_v1(url)
        check_migrated(url, rows)


def test_failed_migration_changes_nothing(tmp_path: Path) -> None:
    """A migration that does not copy every request refuses, and its transaction leaves the version-1
    database as it was (a trigger stands in for whatever could lose rows)."""
    db = tmp_path / "monitor.db"
    make_v1(f"sqlite:///{db}")
    from monitor.store.schema import metadata

    engine = create_engine(f"sqlite:///{db}")
    metadata.create_all(engine)  # the new tables, so a trigger can lose every other copied row
    engine.dispose()
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TRIGGER lose BEFORE INSERT ON request_rows WHEN NEW.id % 2 = 0 BEGIN SELECT RAISE(IGNORE); END"
        )
    from monitor.core.errors import StoreError

    with pytest.raises(StoreError, match="copied"):
        Store.open(f"sqlite:///{db}")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("1",)
        assert conn.execute("SELECT count(*) FROM requests").fetchone() == (40,)
        assert conn.execute("SELECT count(*) FROM request_rows").fetchone() == (0,)
