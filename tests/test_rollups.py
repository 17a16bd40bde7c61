"""The rollups agree with the raw rows: for any period (whole days, partial days, inside one day) the
totals read from `client_days` plus the indexed edges equal a plain aggregate over the `requests` view,
and replaying stored lines (a crash before the caller saw the commit) counts nothing twice."""

from __future__ import annotations

import random
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from monitor.core.records import Checkpoint, Request
from monitor.store import Store, views
from monitor.store import audit_queries as aq
from monitor.store import rollup_queries as rq
from tests import services

T0 = datetime(2025, 3, 21, 22, 15, 0, tzinfo=UTC)
PATHS = [("POST", "/api/chat"), ("GET", "/api/tags"), ("POST", "/api/pull"), ("GET", "/.env"), (None, None)]


def _batch(n: int, seed: int) -> list[tuple[int, Request]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        method, path = PATHS[rng.randrange(len(PATHS))]
        out.append(
            (
                i * 90,
                Request(
                    T0 + timedelta(minutes=7 * i, microseconds=rng.randrange(1_000_000)),
                    rng.choice(["10.0.0.1", "10.0.0.2", "2001:db8::1"]),
                    method,
                    path,
                    rng.choice([101, 200, 204, 302, 401, 403, 404, 500, 503, None]),
                    None,
                    rng.choice([None, 10, 2000]),
                    rng.choice([None, "curl/8", "python/3"]),
                ),
            )
        )
    return out


def fill(store: Store) -> list[tuple[int, Request]]:
    fid = store.file_id("nginx", "fp", "/p")
    batch = _batch(900, 1)  # about 4.4 days of traffic
    for start in range(0, 600, 100):
        store.add_batch("nginx", fid, batch[start : start + 100], [], Checkpoint("nginx", "fp", start, "/p"))
    # Replays overlapping what is stored (partly old, partly new lines): nothing may be counted twice.
    assert store.add_batch("nginx", fid, batch[550:700], [], None).inserted == 100
    assert store.add_batch("nginx", fid, batch[650:900], [], None).inserted == 200
    assert store.add_batch("nginx", fid, batch[50:250], [], None).inserted == 0
    other = store.file_id("ollama", "fp2", "/q")
    store.add_batch("ollama", other, _batch(200, 2), [], None)
    return batch


def check(store: Store, raw: list[tuple[datetime, str, str, int | None]]) -> None:
    periods = [
        (T0 - timedelta(days=1), None),  # everything
        (T0 + timedelta(hours=5, minutes=3), None),  # a partial first day, open end
        (T0 + timedelta(hours=5), T0 + timedelta(days=3, hours=1, seconds=7)),  # partial both ends
        (T0 + timedelta(hours=30), T0 + timedelta(hours=31)),  # inside one day
        (datetime(2025, 3, 23, tzinfo=UTC), datetime(2025, 3, 25, tzinfo=UTC)),  # whole days only
    ]
    for since, until in periods:
        want: dict[tuple[str, str], list[int]] = {}
        for ts, ip, source, status in raw:
            if ts >= since and (until is None or ts < until):
                row = want.setdefault((ip, source), [0, 0, 0])
                row[0] += 1
                row[1] += status == 401
                row[2] += status is not None and 200 <= status < 300
        with store.engine.connect() as conn:
            totals = rq.period_totals(conn, since, until)
            ips = rq.names(conn, "client", (k[0] for k in totals))
            srcs = rq.names(conn, "source", (k[1] for k in totals))
        got = {(ips[c], srcs[s]): [t.requests, t.s401, t.ok] for (c, s), t in totals.items()}
        assert got == want, (since, until)
    clients = {c.client_ip: c.requests for c in aq.clients_since(store, periods[1][0])}
    assert clients == {
        ip: sum(n[0] for (i, _), n in want_all(raw, periods[1][0]).items() if i == ip) for ip in clients
    }


def want_all(
    raw: list[tuple[datetime, str, str, int | None]], since: datetime
) -> dict[tuple[str, str], list[int]]:
    out: dict[tuple[str, str], list[int]] = {}
    for ts, ip, source, _ in raw:
        if ts >= since:
            out.setdefault((ip, source), [0])[0] += 1
    return out


def _raw(store: Store) -> list[tuple[datetime, str, str, int | None]]:
    return [(r["ts"], r["client_ip"], r["source"], r["status"]) for r in store.iter_requests()]


def test_sqlite_rollups_match_the_rows(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    with Store.open(f"sqlite:///{db}") as store:
        batch = fill(store)
        assert store.count_requests() == 1100
        raw = _raw(store)
        check(store, raw)
        assert len([r for r in raw if r[2] == "nginx"]) == len(batch)
    with sqlite3.connect(db) as conn:  # the rollups total exactly the stored rows
        assert conn.execute("SELECT sum(requests) FROM client_days").fetchone() == (1100,)
        assert conn.execute("SELECT sum(requests) FROM source_hours").fetchone() == (1100,)


@pytest.mark.service
def test_postgresql_rollups_match_the_rows() -> None:
    with services.postgres() as url, Store.open(url) as store:
        fill(store)
        assert store.count_requests() == 1100
        check(store, _raw(store))
        assert_rollups_as_rebuilt(store)


def assert_rollups_as_rebuilt(store: Store, minimum: tuple[int, int] = (21, 101)) -> None:
    """Every column of the rollups the batches maintained (aggregated per batch while parsing, or in
    SQL for a replay) equals a rebuild from the stored rows in SQL (what the schema-1 migration does)."""
    days = "SELECT * FROM client_days ORDER BY day, client_id, source_id"
    hours = "SELECT * FROM source_hours ORDER BY hour, source_id"
    with store.engine.connect() as conn:
        kept = [conn.execute(text(days)).all(), conn.execute(text(hours)).all()]
        conn.execute(text("DELETE FROM client_days"))
        conn.execute(text("DELETE FROM source_hours"))
        views.rebuild_rollups(conn)
        rebuilt = [conn.execute(text(days)).all(), conn.execute(text(hours)).all()]
        conn.rollback()
    assert len(kept[0]) >= minimum[0] and len(kept[1]) >= minimum[1]
    assert kept == rebuilt


def test_batch_rollups_equal_the_sql_aggregate(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'm.db'}") as store:
        fill(store)
        assert_rollups_as_rebuilt(store)


def test_sources_list_counts_survive_raw_retention(tmp_path: Path) -> None:
    """Pruning raw rows keeps the per-client totals until [retention] rollup_days."""
    with Store.open(f"sqlite:///{tmp_path / 'm.db'}") as store:
        fill(store)
        before = {r["client_ip"]: r["requests"] for r in rq.client_totals(store)}
        # Part of a day pruned: the stored count (rollups after the oldest day plus its rows) stays exact.
        store.prune(T0 + timedelta(days=2, hours=3), T0, rollups_before=T0 - timedelta(days=1))
        assert store.count_requests() == len(list(store.iter_requests())) > 0
        store.prune(T0 + timedelta(days=30), T0, rollups_before=T0 - timedelta(days=1))
        assert store.count_requests() == 0
        assert {r["client_ip"]: r["requests"] for r in rq.client_totals(store)} == before
        store.prune(T0 + timedelta(days=30), T0, rollups_before=T0 + timedelta(days=30))
        assert rq.client_totals(store) == []


@pytest.mark.service
def test_postgresql_stores_nul_bytes_visibly_and_counts_them_once() -> None:
    """PostgreSQL text cannot hold NUL: it is stored as the four characters `\\x00`, so a path with a
    NUL and one already spelling it out share one endpoint, and the rollups count both rows."""
    with services.postgres() as url, Store.open(url) as store:
        fid = store.file_id("nginx", "fpn", "/n")
        lines = [
            (0, Request(T0, "10.0.0.9", "GET", "/a\x00b", 200, None, 5, "ag\x00ent")),
            (100, Request(T0, "10.0.0.9", "GET", "/a\\x00b", 200, None, 5, "ag\\x00ent")),
        ]
        assert store.add_batch("nginx", fid, lines, [], Checkpoint("nginx", "fpn", 200, "/n")).inserted == 2
        stored = [(r["path"], r["user_agent"]) for r in store.iter_requests()]
        assert stored == [("/a\\x00b", "ag\\x00ent")] * 2
        assert_rollups_as_rebuilt(store, minimum=(1, 1))
