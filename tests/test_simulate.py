"""The traffic simulator: deterministic, fast, and its lines parse back to the events they render."""

from __future__ import annotations

import ipaddress
import time
from collections import Counter
from datetime import timedelta

import pytest

from monitor import parsers
from monitor.core.records import Request
from monitor.detect.known import KnownSources, Status
from monitor.service import simulate


def test_same_seed_same_events_and_another_seed_differs() -> None:
    a = simulate.simulate(days=3, seed=11, scenarios=["recon"])
    b = simulate.simulate(days=3, seed=11, scenarios=["recon"])
    c = simulate.simulate(days=3, seed=12, scenarios=["recon"])
    assert a == b
    assert a != c
    assert [e.ts for e in a] == sorted(e.ts for e in a)


def test_three_weeks_are_fast_and_about_a_hundred_thousand_lines() -> None:
    start = time.process_time()
    events = simulate.simulate(days=21, scenarios=list(simulate.SCENARIOS))
    assert time.process_time() - start < 5.0
    assert 80_000 < len(events) < 150_000


def test_normal_traffic_comes_from_25_known_clients_with_a_rhythm() -> None:
    events = simulate.simulate(days=14)
    known = KnownSources(simulate.known_settings())
    ips = {e.client_ip for e in events}
    assert len(ips) == 25
    assert all(known.status(ip) is not Status.UNKNOWN for ip in ips)
    assert known.status(simulate.ADMIN_IP) is Status.ADMIN
    assert known.status(simulate.MGMT_KNOWN_IP) is Status.KNOWN
    by_hour = Counter(e.ts.hour for e in events)
    assert by_hour[11] > 10 * by_hour[4]  # diurnal
    weekday = sum(1 for e in events if e.ts.weekday() < 5) / 10
    weekend = sum(1 for e in events if e.ts.weekday() >= 5) / 4
    assert weekday > 2 * weekend
    # The nightly batch job runs at 02:00 every day; only the admin pulls models.
    assert {e.ts.hour for e in events if e.client_ip == simulate.BATCH_IP} <= {2, 3}
    assert {e.client_ip for e in events if e.path == "/api/pull"} == {simulate.ADMIN_IP}


@pytest.fixture(scope="module")
def everything() -> list[simulate.Event]:
    return simulate.simulate(days=12, scenarios=list(simulate.SCENARIOS))


@pytest.mark.parametrize("name", sorted(simulate.SCENARIOS))
def test_each_scenario_is_labelled_and_scheduled(name: str, everything: list[simulate.Event]) -> None:
    mine = [e for e in everything if e.scenario == name]
    assert mine
    start = simulate.DEFAULT_START + simulate.DEFAULT_SCHEDULE[name]
    assert min(e.ts for e in mine) >= start - timedelta(seconds=1)


def test_scenario_actors(everything: list[simulate.Event]) -> None:
    events = everything
    known = KnownSources(simulate.known_settings())
    actors = {s: {e.client_ip for e in events if e.scenario == s} for s in simulate.SCENARIOS}
    assert len(actors["wave"]) >= 50
    assert all(
        known.status(ip) is Status.UNKNOWN for ip in actors["wave"] | actors["recon"] | actors["slow-drip"]
    )
    assert actors["hostile-night"] == {simulate.HOSTILE_IP}
    assert isinstance(ipaddress.ip_address(next(iter(actors["ipv6-probe"]))), ipaddress.IPv6Address)
    drip = sorted(e.ts for e in events if e.scenario == "slow-drip")
    assert all(
        timedelta(minutes=50) < b - a < timedelta(minutes=70) for a, b in zip(drip, drip[1:], strict=False)
    )


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0.023668, "23.668µs"),
        (605.647173, "605.647173ms"),
        (1356.0275, "1.3560275s"),
        (130_000, "2m10s"),
        (4_209_000, "1h10m9s"),
        (0, "0s"),
    ],
)
def test_go_duration(ms: float, text: str) -> None:
    assert simulate.go_duration(ms) == text


def test_gin_line_matches_ollamas_format_exactly() -> None:
    ev = simulate.Event(
        simulate.DEFAULT_START.replace(hour=8, minute=52, second=32),
        "127.0.0.1",
        "POST",
        "/api/pull",
        200,
        1356.0275,
        0,
        "x",
    )
    assert (
        simulate.to_gin(ev)
        == '[GIN] 2026/03/02 - 08:52:32 | 200 |    1.3560275s |       127.0.0.1 | POST     "/api/pull"'
    )


@pytest.mark.parametrize("fmt", ["ollama", "nginx"])
def test_rendered_lines_parse_back_to_the_events(fmt: str) -> None:
    events = simulate.simulate(
        days=2, scenarios={"ipv6-probe": timedelta(hours=30), "management-unknown": timedelta(hours=31)}
    )
    events = events[::25] + [e for e in events if e.scenario != "normal"]
    parse = parsers.get(fmt).parse
    ctx = parsers.ParseContext()
    for ev, line in zip(events, simulate.render(events, fmt), strict=True):
        got = parse(line, ctx)
        assert isinstance(got, Request), (line, got)
        assert (got.ts, got.client_ip, got.method, got.path, got.status) == (
            ev.ts.replace(microsecond=0),
            ev.client_ip,
            ev.method,
            ev.path,
            ev.status,
        )
        if fmt == "nginx":
            assert got.bytes_sent == ev.bytes_sent
            assert got.user_agent == ev.user_agent
        else:
            assert got.latency_ms == pytest.approx(ev.latency_ms, rel=1e-6, abs=1e-3)


def test_write_log(tmp_path) -> None:
    events = simulate.simulate(days=1)[:10]
    path = simulate.write_log(events, tmp_path / "a.log", "nginx")
    assert path.read_text(encoding="utf-8").splitlines() == simulate.render(events, "nginx")
