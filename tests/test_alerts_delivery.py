"""Delivery through apprise and the durable outbox, against real receivers on 127.0.0.1 (no mocks).

An SMTP server (aiosmtpd) and an HTTP server (json:// webhooks) run in this process; the monitor's
own code talks to them through apprise exactly as it would to a real mail server or chat webhook.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor.alerts.delivery import Outbox, load_targets
from monitor.alerts.dispatch import Dispatcher
from monitor.cli import cli
from monitor.config import AlertSettings
from monitor.core.records import Alert, Severity
from monitor.store import Store
from monitor.store import outbox_queries as q
from tests.receivers import HttpReceiver, SmtpReceiver

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2025, 3, 21, 8, 0, 0, tzinfo=UTC)
EVIL = "<!channel> <@U123> <https://evil.example|click> @everyone \x1b[31mRED\x1b]0;title\x07"


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    with SmtpReceiver() as receiver:
        yield receiver


@pytest.fixture
def http() -> Iterator[HttpReceiver]:
    with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'monitor.db'}") as s:
        yield s


def alert(
    i: int,
    severity: Severity = Severity.WARNING,
    *,
    ts: datetime = T0,
    path: str = "/api/tags",
    agent: str = "curl/8.5.0",
) -> Alert:
    ip = f"203.0.113.{i}"
    return Alert(
        ts,
        "unknown-source",
        severity,
        f"Unknown source {ip} called {path}",
        f"{ip} sent its first request: POST {path} (user agent {agent})",
        (ip,),
        f"unknown-source:{ip}",
        {"path": path, "user_agent": agent},
    )


def fast_outbox(settings: AlertSettings, store: Store) -> Outbox:
    """Short timeouts, and no pause between two sends to one service (apprise waits 5.5 s for email)."""
    return Outbox(settings, store, connect_timeout=2.0, read_timeout=2.0, throttle=0.0)


def dispatcher(settings: AlertSettings, store: Store) -> Dispatcher:
    return Dispatcher(settings, store, outbox=fast_outbox(settings, store), host="testhost")


def test_email_and_webhook_receive_the_alert(smtp: SmtpReceiver, http: HttpReceiver, store: Store) -> None:
    settings = AlertSettings(urls=[smtp.apprise_url(), http.apprise_url("/hook")])
    d = dispatcher(settings, store)
    (note,) = d.submit([alert(7, Severity.CRITICAL)], T0)
    assert d.outbox is not None
    attempts = d.outbox.deliver()
    assert sorted(a.label for a in attempts if a.ok) == ["E-Mail (mailto#0)", "JSON (json#1)"]

    (mail,) = smtp.wait_for(1)
    assert mail["Subject"] == note.title == "[CRITICAL] Unknown source 203.0.113.7 called /api/tags"
    assert mail["To"] == "admin@example.com"
    body = SmtpReceiver.text_of(mail)
    for part in (
        "203.0.113.7 sent its first request",
        "What:   unknown-source (critical)",
        "Source: 203.0.113.7",
        "When:   2025-03-21 08:00:00 UTC",
        "Next:   ",
        "ollama-monitor on testhost",
    ):
        assert part in body, part

    (hook,) = http.wait_for(1)
    assert hook.path == "/hook"
    payload = hook.json
    assert payload["title"] == note.title and payload["type"] == "failure"
    assert payload["message"] == note.message
    assert q.state_counts(store) == {"sent": 2}


@pytest.mark.parametrize("how", ["url-tags", "config-file"])
def test_routing_by_severity_through_tags(
    how: str, smtp: SmtpReceiver, http: HttpReceiver, store: Store, tmp_path: Path
) -> None:
    routes = {"critical": ["email", "slack"], "warning": ["slack"], "info": ["slack"]}
    if how == "url-tags":
        settings = AlertSettings(
            urls=[f"email={smtp.apprise_url()}", f"slack, chat={http.apprise_url()}"],
            routes=routes,
            min_severity="info",
        )
    else:
        config = tmp_path / "apprise.yml"
        config.write_text(
            "urls:\n"
            f'  - "{smtp.apprise_url()}":\n      tag: email\n'
            f'  - "{http.apprise_url()}":\n      tag: slack, chat\n'
        )
        settings = AlertSettings(config_file=str(config), routes=routes, min_severity="info")
    d = dispatcher(settings, store)
    d.submit([alert(1, Severity.INFO), alert(2, Severity.CRITICAL, ts=T0 + timedelta(seconds=1))], T0)
    assert d.outbox is not None
    d.outbox.deliver()
    http.wait_for(2)
    (mail,) = smtp.wait_for(1)
    assert mail["Subject"].startswith("[CRITICAL]")  # info went to the chat only
    assert sorted(r.json["type"] for r in http.received()) == ["failure", "info"]


def test_injection_arrives_neutralised_at_both_receivers(
    smtp: SmtpReceiver, http: HttpReceiver, store: Store
) -> None:
    settings = AlertSettings(urls=[smtp.apprise_url(), http.apprise_url()])
    d = dispatcher(settings, store)
    evil = Alert(
        T0,
        "management-endpoint",
        Severity.CRITICAL,
        f"Model pulled via /api/pull?x={EVIL}\nBcc: x@evil",
        f"user agent: {EVIL}\npath: /{EVIL}",
        (f"203.0.113.9{EVIL}",),
        "k",
        {"user_agent": EVIL, "path": "/" + EVIL},
    )
    d.submit([evil], T0)
    assert d.outbox is not None
    d.outbox.deliver()
    (mail,) = smtp.wait_for(1)
    (hook,) = http.wait_for(1)
    texts = {
        "email subject": str(mail["Subject"]),
        "email body": SmtpReceiver.text_of(mail),
        "webhook title": hook.json["title"],
        "webhook body": hook.json["message"],
    }
    for where, text in texts.items():
        for bad in (
            "<!channel>",
            "<@U123>",
            "<https://",
            "|click>",
            "@everyone",
            "https://",
            "\x1b",
            "\x07",
            "<",
            ">",
        ):
            assert bad not in text, (where, bad)
        assert "\u2039!channel\u203a" in text and "\uff20everyone" in text, where  # still readable
        assert "hxxps://evil[.]example" in text, where
    assert "\n" not in texts["email subject"] and "\n" not in texts["webhook title"]
    assert "Bcc" not in mail or mail["Bcc"] is None


def test_receivers_down_then_back_across_a_restart_exactly_once(
    smtp: SmtpReceiver, http: HttpReceiver, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'monitor.db'}"
    settings = AlertSettings(urls=[smtp.apprise_url(), http.apprise_url()])
    smtp.stop()
    http.stop()
    alerts = [alert(i, ts=T0 + timedelta(minutes=10 * i)) for i in range(1, 4)]
    with Store.open(db) as store:
        d = dispatcher(settings, store)
        released = [n for i, a in enumerate(alerts) for n in d.submit([a], T0 + timedelta(minutes=10 * i))]
        assert len(released) == 3
        assert d.outbox is not None
        attempts = d.outbox.deliver()
        # one attempt per service: a dead service is not hammered with every queued message
        assert len(attempts) == 2 and not any(a.ok for a in attempts)
        assert q.state_counts(store) == {"pending": 6}
        assert d.outbox.deliver() == []  # backing off
    # the monitor "restarts": new Store, Outbox and Dispatcher over the same database file
    smtp.start()
    http.start()
    with Store.open(db) as store:
        outbox = fast_outbox(settings, store)
        replay = Dispatcher(settings, store, outbox=outbox, host="testhost")
        for i, a in enumerate(alerts):  # a replay of the same alerts stores nothing new
            replay.submit([a], T0 + timedelta(minutes=10 * i))
        assert q.state_counts(store) == {"pending": 6}
        attempts = outbox.deliver(force=True)
        assert len(attempts) == 6 and all(a.ok for a in attempts)
        assert outbox.deliver(force=True) == []
        assert q.state_counts(store) == {"sent": 6}
    mails = smtp.wait_for(3)
    hooks = http.wait_for(3)
    assert sorted(m["Subject"] for m in mails) == sorted(n.title for n in released)
    assert sorted(h.json["title"] for h in hooks) == sorted(n.title for n in released)


def test_backoff_then_due_again(http: HttpReceiver, store: Store) -> None:
    settings = AlertSettings(urls=[http.apprise_url()])
    outbox = fast_outbox(settings, store)
    http.status = 500  # the receiver answers, but refuses
    d = Dispatcher(settings, store, outbox=outbox)
    d.submit([alert(1)], T0)
    now = datetime.now(UTC)
    (first,) = outbox.deliver(now)
    assert not first.ok and first.attempts == 1 and "FAILURE" in (first.error or "")
    assert first.next_attempt_at is not None and first.next_attempt_at - now >= timedelta(seconds=29)
    assert outbox.deliver(now + timedelta(seconds=10)) == []
    http.status = 200
    (second,) = outbox.deliver(now + timedelta(seconds=40))
    assert second.ok and second.attempts == 2
    assert len(http.wait_for(1)) == 1 and http.refused == 1


def test_gives_up_after_retry_max_hours(http: HttpReceiver, store: Store) -> None:
    settings = AlertSettings(urls=[http.apprise_url()], retry_max_hours=1)
    outbox = fast_outbox(settings, store)
    d = Dispatcher(settings, store, outbox=outbox)
    (note,) = d.submit([alert(1)], T0)
    outbox.enqueue([note], datetime.now(UTC) - timedelta(hours=2))  # already queued: no new row
    old = datetime.now(UTC) + timedelta(hours=2)
    (attempt,) = outbox.deliver(old)
    assert attempt.gave_up and not attempt.ok
    assert q.state_counts(store) == {"failed": 1} and http.received() == []


def test_concurrent_senders_never_send_twice(http: HttpReceiver, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'monitor.db'}"
    settings = AlertSettings(urls=[http.apprise_url()], digest_threshold=100, max_per_hour=100)
    with Store.open(db) as store:
        d = Dispatcher(settings, store, outbox=fast_outbox(settings, store))
        d.submit([alert(i) for i in range(1, 41)], T0)
        assert q.state_counts(store) == {"pending": 40}
    stores = [Store.open(db) for _ in range(2)]
    outboxes = [fast_outbox(settings, s) for s in stores]
    barrier = threading.Barrier(2)

    def run(outbox: Outbox) -> None:
        barrier.wait()
        outbox.deliver(force=True)

    threads = [threading.Thread(target=run, args=(o,)) for o in outboxes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        titles = [r.json["title"] for r in http.wait_for(40)]
        assert len(titles) == len(set(titles)) == 40
        assert q.state_counts(stores[0]) == {"sent": 40}
    finally:
        for s in stores:
            s.close()


def test_failures_are_logged_by_service_name_never_by_url(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    with HttpReceiver() as down:
        url = down.apprise_url("/hooks/SECRET-TOKEN-123")
    settings = AlertSettings(urls=[url])
    outbox = fast_outbox(settings, store)
    d = Dispatcher(settings, store, outbox=outbox)
    d.submit([alert(1)], T0)
    with caplog.at_level(logging.INFO, logger="monitor.alerts.dispatch"):
        (attempt,) = outbox.deliver()
    assert not attempt.ok
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "JSON (json#0)" in logged
    stored = json.dumps(q.rows(store), default=str)
    for text in (logged, stored, attempt.error or ""):
        assert "SECRET-TOKEN-123" not in text and "json://" not in text


def test_bad_url_is_reported_without_the_url() -> None:
    from monitor.core.errors import AlertError

    with pytest.raises(AlertError) as err:
        load_targets(AlertSettings(urls=["nosuchservice://user:hunter2@host/x"]))
    assert "alerts.urls[0]" in str(err.value) and "hunter2" not in str(err.value)


def _config(tmp_path: Path, urls: list[str], **alerts: object) -> Path:
    lines = [
        "[database]",
        f'url = "sqlite:///{tmp_path / "monitor.db"}"',
        "[alerts]",
        "urls = [" + ", ".join(json.dumps(u) for u in urls) + "]",
    ]
    tables = []
    for key, value in alerts.items():
        if isinstance(value, dict):
            tables += [f"[alerts.{key}]"] + [f"{k} = {json.dumps(v)}" for k, v in value.items()]
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    lines += tables
    path = tmp_path / "monitor.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cli_alerts_test_and_list(smtp: SmtpReceiver, http: HttpReceiver, tmp_path: Path) -> None:
    config = _config(tmp_path, [smtp.apprise_url(), http.apprise_url("/hooks/SECRET-9")])
    runner = CliRunner()
    result = runner.invoke(cli, ["--config", str(config), "alerts", "test"])
    assert result.exit_code == 0, result.output
    assert "E-Mail (mailto#0)" in result.output and "JSON (json#1)" in result.output
    assert "SECRET-9" not in result.output and "2 of 2 service(s) reached" in result.output
    assert smtp.wait_for(1)[0]["Subject"].startswith("[TEST]")
    assert http.wait_for(1)[0].json["title"].startswith("[TEST]")

    with Store.open(f"sqlite:///{tmp_path / 'monitor.db'}") as store:
        Dispatcher(AlertSettings(), store).submit([alert(5, ts=datetime.now(UTC))], datetime.now(UTC))
    listed = runner.invoke(cli, ["--config", str(config), "alerts", "list", "--since", "1h", "--json"])
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.output)
    assert row["client_ips"] == ["203.0.113.5"] and row["rule"] == "unknown-source"
    pending = runner.invoke(cli, ["--config", str(config), "alerts", "list", "--pending", "--json"])
    assert pending.exit_code == 0 and json.loads(pending.output) == []
    bad = runner.invoke(cli, ["--config", str(config), "alerts", "list", "--since", "yesterday-ish"])
    assert bad.exit_code != 0


def test_subprocess_alerts_retry_delivers_what_queued_while_down(
    smtp: SmtpReceiver, http: HttpReceiver, tmp_path: Path
) -> None:
    routes = {"critical": ["email", "hook"], "warning": ["hook"]}
    urls = [f"email={smtp.apprise_url()}", f"hook={http.apprise_url()}"]
    config = _config(tmp_path, urls, routes=routes)
    settings = AlertSettings(urls=urls, routes=routes)
    smtp.stop()
    http.stop()
    with Store.open(f"sqlite:///{tmp_path / 'monitor.db'}") as store:
        d = dispatcher(settings, store)
        d.submit([alert(1, Severity.CRITICAL), alert(2), alert(3)], T0)
        assert d.outbox is not None
        d.outbox.deliver()
        assert q.state_counts(store) == {"pending": 4}
    smtp.start()
    http.start()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OLLAMA_MONITOR_CONFIG": str(config)}
    cmd = [sys.executable, "-m", "monitor", "alerts", "retry", "--json"]
    first = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert (
        report["pending"] == 0 and len(report["attempts"]) == 4 and all(a["ok"] for a in report["attempts"])
    )
    again = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and json.loads(again.stdout)["attempts"] == []
    assert len(smtp.wait_for(1)) == 1 and len(http.wait_for(3)) == 3
    assert len({h.json["title"] for h in http.received()}) == 3


def test_a_sender_that_died_mid_send_is_retried_after_its_lease(http: HttpReceiver, store: Store) -> None:
    settings = AlertSettings(urls=[http.apprise_url()])
    outbox = fast_outbox(settings, store)
    Dispatcher(settings, store, outbox=outbox).submit([alert(1)], T0)
    now = datetime.now(UTC)
    (row,) = q.due(store, now)
    # A sender claims the row and "crashes" before recording the outcome.
    assert q.claim(store, row["id"], now, now + outbox.lease)
    assert not q.claim(store, row["id"], now, now + outbox.lease)  # nobody else can take it meanwhile
    assert outbox.deliver(now, force=True) == []  # not even `alerts retry`: it may be in flight
    assert http.received() == []
    (attempt,) = outbox.deliver(now + outbox.lease + timedelta(seconds=1))
    assert attempt.ok and attempt.attempts == 2
    assert len(http.wait_for(1)) == 1 and q.state_counts(store) == {"sent": 1}
