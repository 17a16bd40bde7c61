"""monitor.alerts.dispatch: the Dispatcher's noise control (severity, dedup, digests, rate limit) and its text."""

from __future__ import annotations

import gc
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.alerts.dispatch import MAX_DIGEST_SOURCES, Dispatcher, notification_for
from monitor.config import AlertSettings
from monitor.core.records import Alert, Notification, Severity
from monitor.store import Store
from monitor.store import outbox_queries as q

T0 = datetime(2025, 3, 21, 8, 0, 0, tzinfo=UTC)


def ip_of(i: int) -> str:
    return f"198.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def unknown(
    i: int, ts: datetime, severity: Severity = Severity.WARNING, rule: str = "unknown-source"
) -> Alert:
    ip = ip_of(i)
    return Alert(
        ts,
        rule,
        severity,
        f"Unknown source {ip}",
        f"First request from {ip}: GET /api/tags",
        (ip,),
        f"{rule}:{ip}",
        {"path": "/api/tags"},
    )


def run(
    d: Dispatcher, alerts: list[Alert], step: timedelta, end: datetime | None = None
) -> list[Notification]:
    """Submit alerts one at a time, `step` apart, then flush well after the last window."""
    out: list[Notification] = []
    now = T0
    for a in alerts:
        out += d.submit([a], now)
        out += d.flush(now)
        now += step
    out += d.flush(end or now + timedelta(hours=3))
    return out


def test_single_alert_text_says_what_where_when_why_next() -> None:
    alert = unknown(1, T0)
    n = notification_for(alert, T0, host="box")
    assert n.title == "[WARNING] Unknown source 198.0.0.1"
    assert "\n" not in n.title
    body = n.message
    assert body.startswith("First request from 198.0.0.1")
    for label in (
        "What:   unknown-source (warning)",
        "Source: 198.0.0.1",
        "When:   2025-03-21 08:00:00 UTC",
        "path: /api/tags",
        "Next:   ",
        "sources approve",
        "ollama-monitor on box",
    ):
        assert label in body, label
    assert n.client_ips == ("198.0.0.1",) and n.alerts == 1
    assert notification_for(alert, T0, host="box").id == n.id  # deterministic: a replay stores it once


def test_min_severity_filters() -> None:
    d = Dispatcher(AlertSettings(min_severity="warning"))
    out = d.submit(
        [unknown(1, T0, Severity.INFO), unknown(2, T0, Severity.WARNING), unknown(3, T0, Severity.CRITICAL)],
        T0,
    )
    assert [n.severity for n in out] == [Severity.WARNING, Severity.CRITICAL]
    assert d.stats.below_severity == 1


def test_dedup_by_key_within_window() -> None:
    d = Dispatcher(AlertSettings(), dedup_seconds=600)
    a = unknown(1, T0)
    assert len(d.submit([a, a], T0)) == 1
    assert d.submit([a], T0 + timedelta(minutes=9)) == []
    assert len(d.submit([a], T0 + timedelta(minutes=11))) == 1
    assert d.stats.duplicates == 2


def test_a_storm_of_1000_sources_in_a_minute_is_at_most_5_messages() -> None:
    settings = AlertSettings()  # defaults: digest_threshold 5, digest_seconds 60, max_per_hour 30
    d = Dispatcher(settings)
    alerts = [unknown(i, T0 + timedelta(milliseconds=59 * i)) for i in range(1000)]
    out = run(d, alerts, timedelta(milliseconds=59))
    assert len(out) <= 5
    digests = [n for n in out if n.rule == "digest"]
    assert len(digests) == 1
    digest = digests[0]
    # every alert is accounted for, and the digest lists EVERY source it covers
    assert sum(n.alerts for n in out) == 1000
    covered = {ip for n in out for ip in n.client_ips}
    assert covered == {ip_of(i) for i in range(1000)}
    assert len(digest.client_ips) == digest.alerts
    assert f"{digest.alerts:,} alerts" in digest.title and "Top sources:" in digest.message
    assert "unknown-source: " in digest.message


def test_batched_storm_is_also_one_digest() -> None:
    d = Dispatcher(AlertSettings())
    out = d.submit([unknown(i, T0) for i in range(1000)], T0)
    assert len(out) == 4  # digest_threshold - 1 go out at once
    assert d.flush(T0 + timedelta(seconds=30)) == []  # the window is still open
    late = d.flush(T0 + timedelta(seconds=60))
    assert len(late) == 1 and late[0].alerts == 996


def test_continuing_storm_folds_into_digests_and_rate_limit_never_drops() -> None:
    settings = AlertSettings(digest_threshold=3, digest_seconds=60, max_per_hour=6)
    d = Dispatcher(settings)
    n_alerts = 3 * 3600 // 10  # one alert every 10 s for 3 hours
    alerts = [unknown(i, T0 + timedelta(seconds=10 * i)) for i in range(n_alerts)]
    out = run(d, alerts, timedelta(seconds=10), end=T0 + timedelta(hours=6))
    assert sum(n.alerts for n in out) == n_alerts  # folded, never silently dropped
    times = sorted(n.ts for n in out)
    for i, t in enumerate(times):  # never more than max_per_hour in any hour
        assert sum(1 for u in times[i:] if u < t + timedelta(hours=1)) <= settings.max_per_hour
    assert any("held back by the limit" in n.message for n in out)


def test_slow_trickle_is_sent_one_by_one() -> None:
    d = Dispatcher(AlertSettings())
    out = run(d, [unknown(i, T0 + timedelta(minutes=5 * i)) for i in range(10)], timedelta(minutes=5))
    assert [n.rule for n in out] == ["unknown-source"] * 10


def test_digest_memory_is_capped() -> None:
    d = Dispatcher(AlertSettings())
    d.submit([unknown(i, T0) for i in range(MAX_DIGEST_SOURCES + 500)], T0)
    digest = d.open_digest
    assert digest is not None
    assert len(digest.by_source) == MAX_DIGEST_SOURCES and digest.untracked == 500 - 4
    (note,) = d.flush(T0 + timedelta(minutes=1))
    assert "alerts from further sources" in note.message


def test_memory_stays_bounded_over_100k_alerts() -> None:
    d = Dispatcher(AlertSettings())
    step = timedelta(milliseconds=20)
    # Built before tracing starts: the measure is what the dispatcher keeps, not the test's input.
    alerts = [unknown(i, T0 + step * i, rule="anomaly") for i in range(100_000)]

    def feed(start: int, stop: int) -> None:
        for base in range(start, stop, 1000):
            now = T0 + step * base
            d.submit(alerts[base : base + 1000], now)
            d.flush(now)

    gc.collect()
    tracemalloc.start()
    try:
        feed(0, 30_000)  # warm up: fills the dedup table and the digest to their caps
        gc.collect()
        warm, _ = tracemalloc.get_traced_memory()
        feed(30_000, 100_000)
        gc.collect()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert d.stats.received == 100_000
    print(
        f"traced memory: after 30k {warm / 1e6:.1f} MB, after 100k {after / 1e6:.1f} MB, peak {peak / 1e6:.1f} MB"
    )
    assert after - warm < 1_000_000, (warm, after)  # no growth once the caps are reached
    assert peak < 20_000_000


def test_store_logs_alerts(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        d = Dispatcher(AlertSettings(min_severity="critical"), store)  # no URLs: nothing to queue
        a, b = unknown(1, T0, Severity.INFO), unknown(2, T0 + timedelta(seconds=1), Severity.CRITICAL)
        out = d.submit([a, b, a], T0)
        assert len(out) == 1
        logged = q.list_alerts(store)
        assert [r["key"] for r in logged] == [b.key, a.key]  # newest first; the duplicate not logged
        assert logged[0]["client_ips"] == ["198.0.0.2"] and logged[0]["details"] == {"path": "/api/tags"}
        assert q.list_alerts(store, since=T0 + timedelta(milliseconds=500))[0]["key"] == b.key
        assert q.state_counts(store) == {}
    finally:
        store.close()
