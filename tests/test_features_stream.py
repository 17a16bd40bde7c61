"""The chunked window accumulator gives the same features as `features.compute` on the same requests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from monitor.core.records import Request
from monitor.detect import features as feat
from monitor.detect.features_stream import WindowAccumulator
from monitor.detect.windows import floor_time
from monitor.service import simulate

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def _rows(reqs: list[Request]) -> list[tuple[object, ...]]:
    return [(r.ts, r.client_ip, r.path, r.status, r.latency_ms, r.bytes_sent, r.user_agent) for r in reqs]


def test_chunked_windows_equal_pandas_compute() -> None:
    events = simulate.simulate(T0, days=2, seed=3, scenarios={"hostile-night": timedelta(days=1, hours=2)})
    reqs = [
        Request(e.ts, e.client_ip, e.method, e.path, e.status, e.latency_ms, e.bytes_sent, e.user_agent)
        for e in events
    ]
    reqs.append(Request(T0 + timedelta(hours=5, minutes=1), "10.9.9.9", "GET", None, None, None, None, None))
    expected_profile, profile = feat.Profile(), feat.Profile()
    expected = feat.compute(feat.requests_frame(reqs), 60, expected_profile)
    window = timedelta(hours=1)
    by_window: dict[datetime, list[Request]] = {}
    for r in reqs:
        by_window.setdefault(floor_time(r.ts, window), []).append(r)
    parts = []
    for start in sorted(by_window):
        acc = WindowAccumulator(start, 60)
        rows = _rows(by_window[start])
        for i in range(0, len(rows), 7):  # small chunks: clients span chunk boundaries
            acc.add(rows[i : i + 7])
        parts.append(acc.result(profile))
    got = pd.concat([p.to_pandas() for p in parts])
    assert list(got.index) == list(expected.index)
    # 1e-6: compute() takes gaps of epoch seconds as floats (rounding ~1e-7 s); this takes integer micros.
    np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-6, atol=1e-6)
    assert profile.hours == expected_profile.hours


def test_a_flood_keeps_bounded_latency_values_and_exact_counts() -> None:
    start = datetime(2026, 3, 2, 10, tzinfo=UTC)
    acc = WindowAccumulator(start, 60, value_budget=1_000)
    rng = np.random.default_rng(1)
    lat = rng.lognormal(5, 1, 20_000)
    for i in range(0, 20_000, 2_000):
        acc.add(
            [
                (
                    start + timedelta(microseconds=k * 100),
                    "203.0.113.9",
                    f"/x{k}",
                    404,
                    float(lat[k]),
                    10,
                    "ua",
                )
                for k in range(i, i + 2_000)
            ]
        )
        assert acc.kept <= 1_000
    out = acc.result().to_pandas().iloc[0]
    assert out["requests"] == 20_000 and out["distinct_paths"] == 20_000 and out["error_4xx_ratio"] == 1
    assert out["latency_max_ms"] == lat.max()
    assert abs(out["latency_p50_ms"] / np.quantile(lat, 0.5) - 1) < 0.05
