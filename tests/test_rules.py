"""The immediate rules, one by one, with an explicit clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor.config import KnownSettings, RuleSettings
from monitor.core.records import Alert, Request, Severity
from monitor.detect.known import KnownSources
from monitor.detect.rules import RulesEngine

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
KNOWN = KnownSettings(
    allow=["127.0.0.0/8", "10.0.0.0/8"], admins=["10.0.0.2/32"], names={"10.0.0.9": "laptop"}
)


def req(ip: str, path: str, at: float = 0, method: str = "GET", status: int = 200, **kw: object) -> Request:
    """A request `at` minutes after T0."""
    return Request(T0 + timedelta(minutes=at), ip, method, path, status, **kw)  # type: ignore[arg-type]


def engine(**rules: object) -> RulesEngine:
    return RulesEngine(RuleSettings(**rules), KnownSources(KNOWN))  # type: ignore[arg-type]


def run(eng: RulesEngine, reqs: list[Request], **kw: object) -> list[Alert]:
    return eng.evaluate(reqs, reqs[-1].ts, **kw)  # type: ignore[arg-type]


def rules_of(alerts: list[Alert]) -> list[str]:
    return [a.rule for a in alerts]


def test_unknown_source_alerts_once_per_source_not_per_request() -> None:
    eng = engine()
    alerts = run(eng, [req("203.0.113.7", "/api/chat", i / 10, "POST") for i in range(50)])
    unknown = [a for a in alerts if a.rule == "unknown-source"]
    assert len(unknown) == 1
    a = unknown[0]
    assert a.client_ips == ("203.0.113.7",)
    assert a.key == "unknown-source:203.0.113.7"
    assert a.severity is Severity.CRITICAL  # it ran inference
    assert "ollama-monitor sources approve 203.0.113.7" in a.message
    assert "iptables" in a.message and "2026-03-02 12:00:00 UTC" in a.message
    # The same source again within the cooldown: nothing; known sources: nothing.
    assert run(eng, [req("203.0.113.7", "/api/chat", 10, "POST")]) == []
    assert run(eng, [req("10.1.2.3", "/api/chat", 11, "POST"), req("127.0.0.1", "/api/tags", 11)]) == []


def test_unknown_source_escalation_and_daily_reminder_but_no_hourly_repeat() -> None:
    eng = engine()
    ip = "198.51.100.77"
    first = run(eng, [req(ip, "/api/tags", 0)])
    assert [a.details["reason"] for a in first if a.rule == "unknown-source"] == ["first seen"]
    assert first[0].severity is Severity.WARNING
    assert run(eng, [req(ip, "/api/version", 90)]) == []  # same kind of calls, after the cooldown: quiet
    escalated = [a for a in run(eng, [req(ip, "/api/generate", 120, "POST")]) if a.rule == "unknown-source"]
    assert [a.details["reason"] for a in escalated] == ["escalated"]
    drip = [a for h in range(3, 30) for a in run(eng, [req(ip, "/api/generate", 60 * h, "POST")])]
    assert [a.details["reason"] for a in drip] == ["still active"]  # once a day, not once an hour


def test_wave_of_unknown_sources_becomes_one_alert() -> None:
    eng = engine()
    alerts: list[Alert] = []
    ips = [f"45.83.0.{i}" for i in range(60)]
    for i, ip in enumerate(ips):
        alerts += run(eng, [req(ip, "/", i * 0.1), req(ip, "/api/tags", i * 0.1 + 0.01)])
    alerts += eng.flush(T0 + timedelta(minutes=30))
    waves = [a for a in alerts if a.title.startswith("Wave")]
    assert 1 <= len(waves) <= 2
    assert len(alerts) <= 10
    covered = {ip for a in alerts for ip in a.client_ips}
    assert covered == set(ips)  # every source is named by some alert
    assert "firewall" in waves[0].message


def test_management_endpoint_is_critical_for_everyone_but_admins() -> None:
    eng = engine()
    known = run(eng, [req("10.0.0.9", "/api/pull", 0, "POST"), req("10.0.0.9", "/api/delete", 1, "DELETE")])
    assert rules_of(known) == ["management-endpoint"]
    assert known[0].severity is Severity.CRITICAL
    assert "10.0.0.9 (laptop, known)" in known[0].message and "[known] admins" in known[0].message
    assert "DELETE /api/delete (200)" in known[0].message
    unknown = run(eng, [req("192.0.2.50", "/api/blobs/sha256:abc", 2, "POST", 201)])
    assert sorted(rules_of(unknown)) == ["management-endpoint", "unknown-source"]
    assert run(eng, [req("10.0.0.2", "/api/pull", 3, "POST")]) == []  # the admin
    assert run(eng, [req("10.0.0.9", "/api/push", 30, "POST")]) == []  # inside the cooldown
    assert rules_of(run(eng, [req("10.0.0.9", "/api/push", 61, "POST")])) == ["management-endpoint"]


def test_account_endpoint() -> None:
    alerts = run(engine(), [req("10.0.0.9", "/api/me", 0, "POST")])
    assert rules_of(alerts) == ["account-endpoint"]
    assert alerts[0].severity is Severity.WARNING


def test_recon_sequence_for_unknown_sources_only() -> None:
    eng = engine()
    walk = [req("203.0.113.7", "/", 0), req("203.0.113.7", "/api/tags", 0.5)]
    assert "recon-sequence" in rules_of(run(eng, walk))
    # Open WebUI calls tags and show all day: a known source is never "recon".
    assert (
        run(
            eng,
            [
                req("10.0.0.9", "/", 1),
                req("10.0.0.9", "/api/tags", 1),
                req("10.0.0.9", "/api/show", 1, "POST"),
            ],
        )
        == []
    )
    # Calls far apart are not a sequence.
    eng2 = engine()
    run(eng2, [req("203.0.113.8", "/", 0)])
    assert "recon-sequence" not in rules_of(run(eng2, [req("203.0.113.8", "/api/tags", 30)]))


def test_scanner_probe_from_any_source() -> None:
    alerts = run(
        engine(), [req("10.0.0.9", "/.env", 0, status=404), req("10.0.0.9", "/.git/config", 0, status=404)]
    )
    assert rules_of(alerts) == ["scanner-probe"]
    assert "2 request(s)" in alerts[0].message


def test_auth_failures_only_behind_a_proxy_and_over_the_threshold() -> None:
    burst = [req("10.0.0.9", "/api/chat", i * 0.1, "POST", 401) for i in range(5)]
    assert run(engine(auth_failures_threshold=5), burst, is_proxy=False) == []  # Ollama's own 403s are CORS
    assert run(engine(auth_failures_threshold=6), burst, is_proxy=True) == []
    alerts = run(engine(auth_failures_threshold=5), burst, is_proxy=True, source="nginx")
    assert rules_of(alerts) == ["auth-failures"]
    slow = [req("10.0.0.9", "/api/chat", i * 5, "POST", 401) for i in range(5)]  # spread over 20 minutes
    assert run(engine(auth_failures_threshold=5), slow, is_proxy=True) == []


def test_direct_access_needs_a_proxy_and_a_grace_period() -> None:
    known = KnownSources(KNOWN)
    eng = RulesEngine(RuleSettings(), known, proxy_configured=True, trusted_proxies=["10.0.0.5/32"])
    # The proxy saw 10.0.0.7, so Ollama logging it (forwarded-for) is fine; 10.0.0.8 went around it.
    eng.evaluate([req("10.0.0.7", "/api/chat", 0, "POST")], T0, source="nginx", is_proxy=True)
    gin = [
        req("10.0.0.7", "/api/chat", 0, "POST"),
        req("10.0.0.8", "/api/chat", 0, "POST"),
        req("127.0.0.1", "/api/tags", 0),
        req("10.0.0.5", "/api/tags", 0),
    ]
    assert eng.evaluate(gin, T0, source="ollama", is_proxy=False) == []  # waits for the proxy's lines
    later = eng.evaluate([], T0 + timedelta(minutes=3), source="ollama")
    assert rules_of(later) == ["direct-access"]
    assert later[0].client_ips == ("10.0.0.8",)
    # Without a proxy configured, Gin's clients are just clients.
    plain = RulesEngine(RuleSettings(), known)
    plain.evaluate(gin, T0)
    assert plain.evaluate([], T0 + timedelta(minutes=3)) == []


def test_forwarded_mismatch() -> None:
    spoof = req("10.0.0.9", "/api/chat", 0, "POST", forwarded_for="1.2.3.4")
    alerts = run(engine(), [spoof])
    assert rules_of(alerts) == ["forwarded-mismatch"]
    assert "1.2.3.4" in alerts[0].message and "trusted_proxies" in alerts[0].message
    # Through a trusted proxy the parser already resolved the client and kept the peer: no alert.
    resolved = req("10.0.0.9", "/api/chat", 0, "POST", forwarded_for="10.0.0.9", peer_ip="10.0.0.5")
    assert run(engine(), [resolved]) == []


@pytest.mark.parametrize("rule", ["unknown-source", "management-endpoint", "scanner-probe", "recon-sequence"])
def test_rules_can_be_disabled(rule: str) -> None:
    batch = [
        req("203.0.113.7", "/", 0),
        req("203.0.113.7", "/api/tags", 0),
        req("203.0.113.7", "/.env", 0),
        req("203.0.113.7", "/api/pull", 0, "POST"),
    ]
    assert rule in rules_of(run(engine(), batch))
    assert rule not in rules_of(run(engine(disabled=[rule]), batch))


def test_per_rule_cooldown_and_seeding_from_stored_alerts() -> None:
    eng = engine(cooldowns={"management-endpoint": 10})
    run(eng, [req("10.0.0.9", "/api/pull", 0, "POST")])
    assert rules_of(run(eng, [req("10.0.0.9", "/api/pull", 11, "POST")])) == ["management-endpoint"]
    # A restarted engine seeded with the last alerts stays quiet inside the cooldowns.
    fresh = engine()
    fresh.seed(
        {
            "management-endpoint:10.0.0.9": (T0, {}),
            "unknown-source:203.0.113.7": (T0, {"first_seen": T0.isoformat(), "worst_rank": 2}),
        }
    )
    assert run(fresh, [req("10.0.0.9", "/api/pull", 5, "POST")]) == []
    assert run(fresh, [req("203.0.113.7", "/api/chat", 5, "POST")]) == []


def test_approval_silences_a_source() -> None:
    eng = engine()
    run(eng, [req("203.0.113.7", "/api/chat", 0, "POST")])
    eng.set_known(KnownSources(KNOWN, ["203.0.113.0/24"]))
    assert run(eng, [req("203.0.113.7", "/api/chat", 600, "POST")]) == []


def test_hostile_input_does_not_break_the_rules() -> None:
    odd = [
        Request(T0, "not-an-ip", None, None, None),
        req("203.0.113.9", "/\x1b[31m" + "A" * 5000, 0, "\x00"),
    ]
    alerts = run(engine(), odd)
    assert all(len(a.message) < 3000 for a in alerts)
