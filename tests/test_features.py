"""Per-(IP, window) features, checked against values worked out by hand and against pandas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from monitor.core.records import Request
from monitor.detect import features as feat

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def r(
    ip: str,
    minute: float,
    path: str = "/api/chat",
    status: int = 200,
    latency: float | None = 100.0,
    size: int | None = 10,
    ua: str | None = "ua",
    method: str = "POST",
) -> Request:
    return Request(T0 + timedelta(minutes=minute), ip, method, path, status, latency, size, ua)


def test_counts_ratios_and_paths_by_hand() -> None:
    reqs = [
        r("10.0.0.1", 1, "/api/chat"),
        r("10.0.0.1", 2, "/api/chat?x=1"),
        r("10.0.0.1", 3, "/api/tags", method="GET"),
        r("10.0.0.1", 4, "/api/pull", status=403),
        r("10.0.0.1", 5, "/.env", status=404, ua="scan"),
        r("10.0.0.1", 6, "/api/generate", status=500, ua=None, size=None),
        r("10.0.0.2", 70, "/api/embed"),  # the next hour, another source
    ]
    out = feat.compute(feat.requests_frame(reqs), 60)
    assert list(out.columns) == list(feat.FEATURE_NAMES)
    assert list(out.index) == [
        ("10.0.0.1", pd.Timestamp(T0)),
        ("10.0.0.2", pd.Timestamp(T0 + timedelta(hours=1))),
    ]
    a = out.iloc[0]
    assert (a.requests, a.inference, a.enumeration, a.management, a.other) == (6, 3, 1, 1, 1)
    assert a.distinct_paths == 5  # /api/chat?x=1 is /api/chat
    assert a.error_4xx_ratio == pytest.approx(2 / 6)
    assert a.error_5xx_ratio == pytest.approx(1 / 6)
    assert a.bytes_sent == 50
    assert a.user_agents == 2  # "ua" and "scan"; a missing agent is not one
    assert a.burstiness == pytest.approx(-1.0)  # one request a minute: perfectly regular


def test_latency_statistics_match_pandas() -> None:
    rng = np.random.default_rng(3)
    reqs = [
        r(f"10.0.0.{i % 4}", float(m), latency=float(rng.lognormal(5, 1)))
        for i, m in enumerate(range(0, 240, 1))
    ]
    reqs.append(r("10.0.0.9", 10, latency=None))
    frame = feat.requests_frame(reqs)
    out = feat.compute(frame, 60)
    grouped = frame.assign(w=frame.ts.dt.floor("60min")).groupby(["client_ip", "w"])["latency_ms"]
    for (ip, w), row in out.iterrows():
        expect = grouped.get_group((ip, w)).dropna()
        if expect.empty:
            assert row.latency_p50_ms == row.latency_max_ms == 0
            continue
        assert row.latency_p50_ms == pytest.approx(expect.median())
        assert row.latency_p95_ms == pytest.approx(expect.quantile(0.95))
        assert row.latency_max_ms == pytest.approx(expect.max())


def test_burstiness_tells_bursts_from_regular_traffic() -> None:
    regular = [r("10.0.0.1", m) for m in range(0, 60, 5)]
    bursty = [r("10.0.0.2", m + s / 60) for m in (0, 40) for s in range(10)]
    out = feat.compute(feat.requests_frame(regular + bursty), 60)
    assert out.loc["10.0.0.1"].burstiness.iloc[0] == pytest.approx(-1.0)
    assert out.loc["10.0.0.2"].burstiness.iloc[0] > 0.5


def test_history_features_use_only_earlier_windows() -> None:
    # Active 09:00-10:00 on three earlier days, then once at 03:00 and once at 09:00.
    profile = feat.Profile()
    for d in (1, 2, 3):
        profile.add("10.0.0.1", T0 - timedelta(days=d, hours=1))
    reqs = [
        r("10.0.0.1", 60 * 17),
        r("10.0.0.1", 60 * 23),
        r("10.0.0.3", 60 * 23),
    ]  # 03:00 next day, 09:00 next day
    out = feat.compute(feat.requests_frame(reqs), 60, profile, cap_days=14)
    night = out.loc[("10.0.0.1", pd.Timestamp(T0 + timedelta(hours=17)))]
    day = out.loc[("10.0.0.1", pd.Timestamp(T0 + timedelta(hours=23)))]
    assert night.hour_rarity == 1.0  # never active at 03:00 before
    assert day.hour_rarity == pytest.approx(1 - 3 / 4)  # 3 of its 4 earlier windows were at 09:00
    assert night.source_age_days == pytest.approx(3 + 18 / 24)
    newcomer = out.loc[("10.0.0.3", pd.Timestamp(T0 + timedelta(hours=23)))]
    assert newcomer.hour_rarity == 1.0 and newcomer.source_age_days == 0
    assert profile.hours["10.0.0.3"][9] == 1  # the profile learnt the new windows


def test_window_length_and_empty_input() -> None:
    reqs = [r("10.0.0.1", m) for m in range(0, 60, 7)]
    assert len(feat.compute(feat.requests_frame(reqs), 15)) == 4
    empty = feat.compute(feat.requests_frame([]), 60)
    assert empty.empty and list(empty.columns) == list(feat.FEATURE_NAMES)


def test_dict_rows_as_the_store_yields_them() -> None:
    reqs = [r("10.0.0.1", 1), r("10.0.0.1", 2, "/api/tags")]
    from_dicts = feat.compute(feat.requests_frame([x._asdict() for x in reqs]), 60)
    pd.testing.assert_frame_equal(from_dicts, feat.compute(feat.requests_frame(reqs), 60))


def test_every_feature_is_documented() -> None:
    assert set(feat.FEATURES) == set(feat.FEATURE_NAMES)
    assert all(len(text) > 15 for text in feat.FEATURES.values())
    assert set(feat.COUNT_FEATURES) <= set(feat.FEATURE_NAMES)


def test_format_value() -> None:
    assert feat.format_value("requests", 1402) == "1,402"
    assert feat.format_value("error_4xx_ratio", 0.25) == "0.25"
    assert feat.format_value("latency_max_ms", 12_500) == "12.5 s"
