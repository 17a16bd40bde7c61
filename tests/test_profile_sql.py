"""The hour profile counted in SQL equals the one built from every stored window row (SQLite and a
real PostgreSQL server): `build_profile` no longer reads the history's window rows one by one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.detect import scoring
from monitor.detect.features import Profile
from monitor.store import Store
from monitor.store import detect_queries as q
from tests import services

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def _check(url: str) -> None:
    with Store.open(url) as store:
        rows: list[dict[str, Any]] = []
        for k in range(24 * 5):  # five days of hourly windows, clients active at their own hours
            start = T0 + timedelta(hours=k)
            for c in range(6):
                if (k * (c + 1)) % (c + 2) == 0:
                    rows.append(
                        {"client_ip": f"10.0.0.{c}", "window_start": start, "features": {"requests": 1}}
                    )
        rows.append({"client_ip": "2001:db8::1", "window_start": T0 - timedelta(days=9), "features": {}})
        q.save_windows(store, rows)
        since, until = T0 + timedelta(hours=7), T0 + timedelta(days=4, hours=3)
        expected = Profile.from_windows(q.iter_activity(store, since, until), q.first_windows(store))
        got = scoring.build_profile(store, since, until)
        assert got.hours == expected.hours and got.first_seen == expected.first_seen
        assert sum(map(sum, got.hours.values())) == sum(1 for r in rows if since <= r["window_start"] < until)
        assert got.first_seen["2001:db8::1"] == T0 - timedelta(days=9)  # first seen outside the range


def test_sql_hour_profile_equals_the_row_by_row_one_on_sqlite(tmp_path: Path) -> None:
    _check(f"sqlite:///{tmp_path / 'm.db'}")


@pytest.mark.service
def test_sql_hour_profile_equals_the_row_by_row_one_on_postgresql() -> None:
    with services.postgres() as url:
        _check(url)
