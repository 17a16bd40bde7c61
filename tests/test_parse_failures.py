"""The `parse-failures` rule (issue 16, item 4): a flood of unreadable lines alerts, an occasional one
does not, and the rejected lines' clients are named. Through the engine, through `replay` and through
the running daemon on a real file.

The rejected lines are real lines of another format (Caddy JSON from tests/logs/caddy, read by a source
configured as nginx): what a changed log format looks like.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor import config
from monitor.config import KnownSettings, RuleSettings, Settings
from monitor.core.records import Alert, Notification
from monitor.detect.known import KnownSources
from monitor.detect.replay import run_replay
from monitor.detect.rules import RulesEngine
from monitor.detect.rules.parse_failures import first_address
from monitor.ingest.backfill import check_file
from monitor.service import simulate
from monitor.service.daemon import Daemon
from monitor.service.jobs import Jobs
from monitor.store import Store

LOGS = Path(__file__).resolve().parent / "logs"
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
KNOWN = KnownSettings(allow=["127.0.0.0/8", "10.0.0.0/8"])


def sample_lines(path: Path) -> list[str]:
    """The log lines of an annotated sample file (comments and annotations left out)."""
    return [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln and not ln.startswith("#")]


CADDY = sample_lines(LOGS / "caddy" / "access.log")
NGINX = sample_lines(LOGS / "nginx" / "combined.log")


def engine(**rules: object) -> RulesEngine:
    return RulesEngine(RuleSettings(**rules), KnownSources(KNOWN))  # type: ignore[arg-type]


def rejects(lines: list[str], reason: str = "not an nginx access line") -> list[tuple[int, str, str]]:
    return [(i * 200, reason, line) for i, line in enumerate(lines)]


def parse_failures(alerts: list[Alert]) -> list[Alert]:
    return [a for a in alerts if a.rule == "parse-failures"]


def test_a_flood_of_rejects_raises_one_alert_naming_reasons_samples_and_clients() -> None:
    eng = engine()
    alerts: list[Alert] = []
    for i in range(5):  # batches of 6 rejects a minute: the 4th brings 24 >= 20
        batch = rejects(CADDY[i * 6 : i * 6 + 6])
        alerts += eng.evaluate([], T0 + timedelta(minutes=i), source="web", rejects=batch)
    found = parse_failures(alerts)
    assert len(found) == 1
    a = found[0]
    assert a.key == "parse-failures:web" and a.severity.value == "warning"
    assert a.details["rejects"] == 24 and a.details["reasons"] == {"not an nginx access line": 24}
    assert "172.17.0.1" in a.client_ips  # the first address of a Caddy record is its remote_ip
    assert "172.17.0.1 (unknown) x" in a.message and "not an nginx access line x24" in a.message
    assert a.message.count("\n  [not an nginx access line] ") == 3  # three samples
    # Inside the cooldown, the flood goes on without another alert.
    more = eng.evaluate([], T0 + timedelta(minutes=6), source="web", rejects=rejects(CADDY[:20]))
    assert parse_failures(more) == []
    # Another log source is another subject.
    other = eng.evaluate([], T0 + timedelta(minutes=6), source="ollama", rejects=rejects(CADDY[:20]))
    assert [a.key for a in parse_failures(other)] == ["parse-failures:ollama"]


def test_occasional_rejects_never_alert() -> None:
    eng = engine()
    alerts: list[Alert] = []
    for i in range(24 * 30):  # one reject every 2 minutes for a day: 5 per 10 minutes at most
        alerts += eng.evaluate([], T0 + timedelta(minutes=2 * i), source="web", rejects=rejects(CADDY[:1]))
    assert parse_failures(alerts) == []


def test_threshold_is_configurable_and_the_rule_can_be_disabled() -> None:
    batch = rejects(CADDY[:5])
    assert parse_failures(engine(parse_failures_threshold=5).evaluate([], T0, source="w", rejects=batch))
    assert not parse_failures(engine(parse_failures_threshold=6).evaluate([], T0, source="w", rejects=batch))
    off = engine(parse_failures_threshold=5, disabled=["parse-failures"])
    assert not parse_failures(off.evaluate([], T0, source="w", rejects=batch))
    assert config.validate({"rules": {"parse_failures_threshold": 50}}).rules.parse_failures_threshold == 50


def test_hostile_rejected_lines_reach_the_alert_defused() -> None:
    hostile = [
        "\x1b]8;;https://evil.example/\x07click\x1b]8;;\x07 <!channel> @everyone 203.0.113.66 [x](https://evil.example)"
    ] * 20
    a = parse_failures(engine().evaluate([], T0, source="web", rejects=rejects(hostile)))[0]
    assert "\x1b" not in a.message and "\\x1b" in a.message  # visible, not obeyed
    assert "<!channel>" not in a.message and "@everyone" not in a.message
    assert "https://evil.example" not in a.message
    assert a.client_ips == ("203.0.113.66",)


@pytest.mark.parametrize(
    ("line", "address"),
    [
        ('{"ts":1711741827.9626286,"request":{"remote_ip":"127.0.0.1","remote_port":"54462"}}', "127.0.0.1"),
        ("[GIN] 2025/03/21 - 08:52:32 | 200 |    1.3560275s |       203.0.113.5 | POST", "203.0.113.5"),
        ("Mar  2 12:00:00 host haproxy[12]: 198.51.100.7:4444 [02/Mar/2026:12:00:00.123] fe", "198.51.100.7"),
        ("[2001:db8::12]:4444 - - garbage", "2001:db8::12"),
        ("client ::ffff:192.0.2.9 sent HTTP/1.1", "192.0.2.9"),
        ("2026-03-02T12:00:00.000Z 0.0.0.0 :: 1.35s HTTP/2.0 v1.2.3", None),
        ("", None),
    ],
)
def test_first_address_in_a_raw_line(line: str, address: str | None) -> None:
    assert first_address(line) == address


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def replay(tmp_path: Path, log: Path, fmt: str) -> list[Notification]:
    notes, _summary = run_replay(
        Settings.model_validate({"known": {"allow": ["127.0.0.0/8"]}}),
        [log],
        fmt=fmt,
        db_url=f"sqlite:///{tmp_path}/replay.db",
        model_dir=tmp_path / "models",
    )
    return notes


def traffic(minutes: int) -> list[str]:
    """nginx lines from a known client, one a minute (as monitor.service.simulate renders them)."""
    events = [
        simulate.Event(T0 + timedelta(minutes=m), "127.0.0.1", "POST", "/api/chat", 200, 900.0, 300, "curl/8")
        for m in range(minutes)
    ]
    return simulate.render(events, "nginx")


def test_replay_places_rejects_among_their_neighbours(tmp_path: Path) -> None:
    """A changed log format in the middle of a log: a run of lines that are all rejects."""
    good = traffic(30)
    log = write(tmp_path / "access.log", good[:10] + CADDY[:30] + good[10:])
    notes = [n for n in replay(tmp_path, log, "nginx") if n.rule == "parse-failures"]
    assert len(notes) == 1 and "172.17.0.1" in notes[0].client_ips
    assert "30 lines of log source" in notes[0].message
    assert notes[0].ts == T0 + timedelta(minutes=9)  # the time of the line before the run


def test_replay_of_occasional_rejects_gives_no_alert(tmp_path: Path) -> None:
    mixed: list[str] = []
    for i, line in enumerate(traffic(180)):
        mixed.append(line)
        if i % 2 == 0:  # a reject every 2 minutes: 5 per 10 minutes
            mixed.append(CADDY[i % len(CADDY)])
    log = write(tmp_path / "mixed.log", mixed)
    assert [n for n in replay(tmp_path, log, "nginx") if n.rule == "parse-failures"] == []


@pytest.mark.parametrize("sample", sorted(p.relative_to(LOGS).as_posix() for p in LOGS.glob("*/*.log")))
def test_the_annotated_samples_give_no_parse_failures(tmp_path: Path, sample: str) -> None:
    """Every reject of a sample file (some are annotated `expect-reject`), all in one batch."""
    fmt = sample.split("/")[0]
    log = write(tmp_path / "sample.log", sample_lines(LOGS / sample))
    report = check_file(log, fmt, keep_rejects=10_000)
    batch = [(n, reason, line) for n, reason, line in report.reject_samples]
    assert parse_failures(engine().evaluate([], T0, source=fmt, rejects=batch)) == []


def test_the_daemon_hands_rejects_to_the_rules(tmp_path: Path) -> None:
    """A real file followed by the real daemon loop: its rejected lines raise the alert."""
    log = write(tmp_path / "access.log", NGINX[:2] + CADDY[:25])
    settings = config.validate(
        {
            "database": {"url": f"sqlite:///{tmp_path / 'm.db'}"},
            "daemon": {"poll_seconds": 0.05},
            "sources": [{"name": "web", "path": str(log), "format": "nginx", "start_at": "beginning"}],
            "detector": {"model_dir": str(tmp_path / "models")},
        }
    )
    with Store.open(settings.database.url) as store:
        seen: list[Notification] = []
        jobs = Jobs(settings, store, echo=seen.append)
        daemon = Daemon(settings, store, on_stored=jobs.on_stored, on_rejects=jobs.on_rejects)
        thread = threading.Thread(target=daemon.run)
        thread.start()
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not any(n.rule == "parse-failures" for n in seen):
                time.sleep(0.02)
        finally:
            daemon.request_stop()
            thread.join(timeout=5)
    found = [n for n in seen if n.rule == "parse-failures"]
    assert len(found) == 1, [n.rule for n in seen]
    assert "172.17.0.1" in found[0].client_ips and "25 lines of log source web" in found[0].message
    assert found[0].message.count("\n  [") == 3  # three samples, from one batch
