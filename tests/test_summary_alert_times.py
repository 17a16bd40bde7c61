"""Alerts in the summary carry log time: a wave of unknown sources is stamped when its sources were seen.

The summary lists each alert at its stored `ts`; the rules engine set a wave alert's `ts` to the moment
the wave was flushed (processing time, `max(now, last)`), so a backlog read an hour late, or a wave
flushed at the next tick, showed the scan at the wrong time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitor.config import KnownSettings, RuleSettings
from monitor.core.records import Request
from monitor.detect.known import KnownSources
from monitor.detect.rules import RulesEngine

T0 = datetime(2026, 3, 12, 16, 41, tzinfo=UTC)


def test_wave_alert_is_stamped_with_log_time_not_processing_time() -> None:
    known = KnownSources(KnownSettings(allow=["10.0.0.0/8"]))
    eng = RulesEngine(RuleSettings(), known)
    ips = [f"45.83.0.{i}" for i in range(60)]
    processed_at = T0 + timedelta(hours=1)  # e.g. a backlog read an hour after it was written
    alerts = []
    for i, ip in enumerate(ips):
        ts = T0 + timedelta(seconds=i)
        alerts += eng.evaluate([Request(ts, ip, "GET", "/api/tags", 200, 1.0)], processed_at)
    alerts += eng.flush(processed_at + timedelta(minutes=30))
    waves = [a for a in alerts if a.details.get("reason") == "wave"]
    assert waves
    last_seen = T0 + timedelta(seconds=len(ips) - 1)
    for wave in waves:
        members = {ip: T0 + timedelta(seconds=i) for i, ip in enumerate(ips)}
        assert wave.ts == max(members[ip] for ip in wave.client_ips) <= last_seen, wave.ts
