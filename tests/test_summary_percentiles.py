"""The summary's latency percentiles, taken in the database (`summary_queries.latency_percentiles`),
against pandas' exact quantiles of the same stored values: on real logs that carry a latency, and on
generated values with many ties, NULLs and every small count, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import random
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from monitor.core.records import Request
from monitor.ingest.backfill import ingest_file
from monitor.reports.summary import build as summary
from monitor.store import Store
from monitor.store import summary_queries as q
from tests import services
from tests.test_summary_week import settings_for

LOGS = Path(__file__).resolve().parent / "logs"
# Real samples whose lines carry a duration (Ollama's GIN lines, Traefik's and Caddy's JSON).
REAL = [
    ("ollama", LOGS / "ollama" / "gin.log"),
    ("ollama", LOGS / "ollama" / "wrapped.log"),
    ("traefik", LOGS / "traefik" / "json.log"),
    ("caddy", LOGS / "caddy" / "access.log"),
]


def _reference(db: Path) -> dict[str, tuple[float, float]]:
    """pandas' per-client 50th and 95th percentiles of the stored latencies, read through the view."""
    with sqlite3.connect(db) as conn:
        frame = pd.read_sql("SELECT client_ip, latency_ms FROM requests WHERE latency_ms IS NOT NULL", conn)
    grouped = frame.groupby("client_ip")["latency_ms"]
    p50, p95 = grouped.quantile(0.5), grouped.quantile(0.95)
    return {str(ip): (float(p50[ip]), float(p95[ip])) for ip in p50.index}


def test_percentiles_match_pandas_on_real_logs(tmp_path: Path) -> None:
    db = tmp_path / "monitor.db"
    url = f"sqlite:///{db}"
    with Store.open(url) as store:
        for source, path in REAL:
            report = ingest_file(store, path, source)
            assert report.inserted > 0, path
    expected = _reference(db)
    assert len(expected) >= 3 and sum(1 for ip in expected if expected[ip][0] != expected[ip][1]) >= 2

    with Store.open(url) as store, sqlite3.connect(db) as conn:
        first, last = conn.execute("SELECT min(ts), max(ts) FROM request_rows").fetchone()
        since = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=first)
        until = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=last + 1)
        result = summary.build(store, settings_for(url, tmp_path / "models"), since, until)
    got = {s.client_ip: (s.latency_p50_ms, s.latency_p95_ms) for s in result.sources}
    for ip, (p50, p95) in expected.items():
        assert got[ip] == (round(p50, 3), round(p95, 3)), ip
    for ip in set(got) - set(expected):  # clients whose lines logged no latency
        assert got[ip] == (None, None)


START = datetime(2026, 5, 4, tzinfo=UTC)


def _generated(store: Store) -> dict[str, list[float | None]]:
    """Store requests of 40 clients with 1 to 400 latencies each: rounded to whole milliseconds (ties),
    some NULL, one client with NULLs only; return client -> latencies as stored."""
    rng = random.Random(15)
    file_id = store.file_id("gen", "e" * 64, "/var/log/gen.log")
    values: dict[str, list[float | None]] = {}
    rows: list[tuple[int, Request]] = []
    sizes = [*range(1, 25), 37, 41, 99, 100, 101, 137, 201, 255, 256, 399, 400, 21, 20, 19]
    for c, n in enumerate(sizes):
        ip = f"10.9.{c}.7"
        for i in range(n):
            if c == 5:
                latency: float | None = None
            elif i % 11 == 3:
                latency = None
            else:
                latency = float(round(rng.lognormvariate(4, 1.5))) if c % 2 else rng.lognormvariate(4, 1.5)
            values.setdefault(ip, []).append(latency)
            ts = START + timedelta(seconds=len(rows) * 7)
            rows.append((len(rows), Request(ts, ip, "POST", "/api/chat", 200, latency, 10, "x")))
    store.add_batch("gen", file_id, rows)
    return values


def _check(store: Store, values: dict[str, list[float | None]]) -> None:
    got = q.latency_percentiles(store, START, START + timedelta(days=7))
    ids = {ip: cid for cid, ip in q.client_names(store, range(1, 1000)).items()}
    for ip, latencies in values.items():
        present = pd.Series([v for v in latencies if v is not None], dtype="float64")
        if present.empty:
            assert ids[ip] not in got
            continue
        want = (float(present.quantile(0.5)), float(present.quantile(0.95)))
        assert got[ids[ip]] == pytest.approx(want, rel=1e-12, abs=1e-12), (ip, len(present))
    # A period that holds none of the rows has no percentiles at all.
    assert q.latency_percentiles(store, START - timedelta(days=9), START - timedelta(days=2)) == {}


def test_percentiles_match_pandas_with_ties_and_nulls_sqlite(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'monitor.db'}") as store:
        _check(store, _generated(store))


def test_percentiles_match_pandas_with_ties_and_nulls_postgres() -> None:
    with services.postgres() as url, Store.open(url) as store:
        _check(store, _generated(store))


def test_grouping_reads_use_a_small_page_cache_and_restore_it(tmp_path: Path) -> None:
    """The summary's and the audit's grouping reads run with SQLite's default 2 MiB page cache (the
    sorter is slower with the writer's 64 MiB) and give the connection its own cache back."""
    with Store.open(f"sqlite:///{tmp_path / 'monitor.db'}") as store:
        _generated(store)
        with store.engine.connect() as conn:
            before = conn.exec_driver_sql("PRAGMA cache_size").scalar()
            with q.sort_cache(conn):
                assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -q.SORT_CACHE_KIB
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == before
        assert before != -q.SORT_CACHE_KIB
        assert list(q.endpoint_clients(store, START, START + timedelta(days=1)))
        with store.engine.connect() as conn:  # the pool's one connection, after a streamed read
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == before
