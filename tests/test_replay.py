"""`replay` over simulated logs: each scenario is notified by the right rule within minutes of log time,
floods stay small, and two normal weeks stay (almost) quiet.

The replays go through the real path: rendered log lines -> parser -> SQLite store -> Pipeline ->
Dispatcher, in process; one test runs the CLI in a subprocess.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from monitor.config import Settings
from monitor.core.records import Notification
from monitor.detect.replay import run_replay
from monitor.service import simulate
from tests.conftest import CliRunner, assert_no_traceback

START = simulate.DEFAULT_START
# A compressed schedule: the detector has ~3 days of history before the hostile night.
SCHEDULE = {
    "recon": timedelta(days=2, hours=14, minutes=5),
    "freeload": timedelta(days=2, hours=20, minutes=10),
    "management-unknown": timedelta(days=3, hours=11, minutes=30),
    "management-known": timedelta(days=3, hours=15, minutes=20),
    "hostile-night": timedelta(days=5, hours=2, minutes=40),
    "ipv6-probe": timedelta(days=5, hours=9, minutes=15),
    "slow-drip": timedelta(days=5, hours=12),
    "wave": timedelta(days=6, hours=16, minutes=45),
}
ACTORS = {
    "recon": {simulate.RECON_IP},
    "freeload": {simulate.FREELOAD_IP},
    "management-unknown": {simulate.MGMT_UNKNOWN_IP},
    "management-known": {simulate.MGMT_KNOWN_IP},
    "hostile-night": {simulate.HOSTILE_IP},
    "ipv6-probe": {simulate.IPV6_IP},
    "slow-drip": {simulate.DRIP_IP},
}
EXPECTED = {  # scenario -> (rule, how soon after the scenario starts, in log time)
    "recon": ("recon-sequence", timedelta(minutes=5)),
    "freeload": ("unknown-source", timedelta(minutes=5)),
    "management-unknown": ("management-endpoint", timedelta(minutes=5)),
    "management-known": ("management-endpoint", timedelta(minutes=5)),
    "hostile-night": ("anomaly", timedelta(minutes=30)),
    "ipv6-probe": ("scanner-probe", timedelta(minutes=5)),
    "slow-drip": ("unknown-source", timedelta(minutes=10)),
}


def settings() -> Settings:
    return Settings.model_validate({"known": simulate.known_config()})


def replay_events(
    tmp: Path, events: list[simulate.Event], fmt: str
) -> tuple[list[Notification], dict[str, object]]:
    log = simulate.write_log(events, tmp / f"access.{fmt}.log", fmt)
    return run_replay(
        settings(), [log], fmt=None, db_url=f"sqlite:///{tmp}/replay.db", model_dir=tmp / "models"
    )


@pytest.fixture(scope="module")
def attacked(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[list[Notification], list[simulate.Event], dict[str, object]]:
    events = simulate.simulate(START, days=9, seed=21, scenarios=SCHEDULE)
    notes, summary = replay_events(tmp_path_factory.mktemp("attacked"), events, "nginx")
    return notes, events, summary


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_each_scenario_is_notified_by_the_right_rule_in_minutes(scenario: str, attacked) -> None:
    notes, events, _summary = attacked
    rule, within = EXPECTED[scenario]
    began = min(e.ts for e in events if e.scenario == scenario)
    hits = [n for n in notes if n.rule == rule and ACTORS[scenario] & set(n.client_ips)]
    assert hits, f"{scenario}: no {rule} notification; got {[(n.rule, n.client_ips[:3]) for n in notes]}"
    assert began <= hits[0].ts <= began + within, (scenario, hits[0].ts, began)
    if scenario == "hostile-night":
        assert "vs typical" in hits[0].message and "Window:" in hits[0].message


def test_the_wave_and_the_slow_drip_do_not_flood(attacked) -> None:
    notes, events, _summary = attacked
    wave_ips = {e.client_ip for e in events if e.scenario == "wave"}
    began = min(e.ts for e in events if e.scenario == "wave")
    wave_notes = [n for n in notes if wave_ips & set(n.client_ips)]
    assert 1 <= len(wave_notes) <= 8
    assert wave_notes[0].ts <= began + timedelta(minutes=5)
    covered = {ip for n in wave_notes for ip in n.client_ips}
    assert len(covered & wave_ips) >= 0.9 * len(wave_ips)
    drip_notes = [n for n in notes if simulate.DRIP_IP in n.client_ips]
    assert 1 <= len(drip_notes) <= 4  # 72 requests over three days


def test_normal_clients_are_not_reported_in_the_attacked_run(attacked) -> None:
    notes, events, summary = attacked
    actors = {e.client_ip for e in events if e.scenario != "normal"}
    strays = [(n.rule, n.client_ips) for n in notes if set(n.client_ips) - actors]
    assert strays == []
    assert summary["status"]["detector"] == "active"


def test_two_normal_weeks_are_quiet(tmp_path: Path) -> None:
    events = simulate.simulate(START, days=14, seed=5)
    notes, summary = replay_events(tmp_path, events, "ollama")
    assert summary["requests"] == len(events)
    by_rule = Counter(n.rule for n in notes)
    assert set(by_rule) <= {"anomaly"}, by_rule
    second_week = [n for n in notes if n.ts >= START + timedelta(days=7)]
    assert len(second_week) <= 2, [(n.ts, n.title) for n in second_week]
    assert by_rule["anomaly"] <= 4
    assert summary["status"]["detector"] == "active"  # type: ignore[index]


def test_replay_cli_writes_json_lines(tmp_path: Path, cli: CliRunner) -> None:
    events = simulate.simulate(
        START, days=1, seed=3, scenarios={"recon": timedelta(hours=14), "ipv6-probe": timedelta(hours=15)}
    )
    log = simulate.write_log(events, tmp_path / "server.log", "ollama")
    config = tmp_path / "monitor.toml"
    known = simulate.known_settings()
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path}/configured.db"\n[known]\nallow = {json.dumps(known.allow)}\n'
        f"admins = {json.dumps(known.admins)}\n",
        encoding="utf-8",
    )
    out = tmp_path / "notes.jsonl"
    proc = cli("--config", str(config), "replay", str(log), "--json-out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert_no_traceback(proc)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert {"recon-sequence", "scanner-probe", "unknown-source"} <= {x["rule"] for x in lines}
    for x in lines:
        assert {"ts", "rule", "severity", "client_ips", "title", "message"} <= set(x)
        assert x["ts"].startswith("2026-03-02T1") and x["ts"].endswith("Z")
        assert x["severity"] in ("info", "warning", "critical")
    assert "rules only" in proc.stdout  # one day is not enough history to train
    assert not (tmp_path / "configured.db").exists()  # the configured store is left alone
    missing = cli("--config", str(config), "replay", str(tmp_path / "nope.log"))
    assert missing.returncode != 0 and "nope.log" in missing.stderr
    assert_no_traceback(missing)


def test_proxy_and_ollama_logs_together_catch_direct_access(tmp_path: Path) -> None:
    events = simulate.simulate(START, days=1, seed=4)
    bypass = [e._replace(client_ip="10.0.1.99", scenario="direct") for e in events[2000:2003]]
    gin = simulate.write_log(sorted(events + bypass, key=lambda e: e.ts), tmp_path / "ollama.log", "ollama")
    proxy = simulate.write_log(events, tmp_path / "nginx.log", "nginx")
    notes, summary = run_replay(
        settings(), [gin, proxy], fmt=None, db_url=f"sqlite:///{tmp_path}/r.db", model_dir=tmp_path / "m"
    )
    assert summary["requests"] == 2 * len(events) + len(bypass)
    assert [(n.rule, n.client_ips) for n in notes] == [("direct-access", ("10.0.1.99",))]
    assert bypass[0].ts <= notes[0].ts <= bypass[0].ts + timedelta(minutes=5)


def test_send_delivers_for_real_and_only_with_send(tmp_path: Path) -> None:
    from tests.receivers import HttpReceiver

    events = simulate.simulate(START, days=1, seed=6, scenarios={"management-unknown": timedelta(hours=13)})
    log = simulate.write_log(events, tmp_path / "server.log", "ollama")
    with HttpReceiver() as receiver:
        cfg = Settings.model_validate(
            {"known": simulate.known_config(), "alerts": {"urls": [receiver.apprise_url()]}}
        )
        dry, _ = run_replay(
            cfg, [log], fmt=None, db_url=f"sqlite:///{tmp_path}/a.db", model_dir=tmp_path / "m"
        )
        assert dry and receiver.received() == []  # without --send nothing leaves the machine
        notes, summary = run_replay(
            cfg, [log], fmt=None, db_url=f"sqlite:///{tmp_path}/b.db", model_dir=tmp_path / "m", send=True
        )
        got = receiver.wait_for(len(notes))
    assert summary["sent"] == len(notes) and summary["failed"] == 0
    bodies = " ".join(r.json["message"] for r in got)
    assert simulate.MGMT_UNKNOWN_IP in bodies and "api/push" in bodies
