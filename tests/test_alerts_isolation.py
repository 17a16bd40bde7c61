"""Delivery isolation and the duplicate policy, against real slow receivers on 127.0.0.1 (issue 13, items
7 and 8): a receiver that drips a byte every 2 s must not delay a healthy one; slow but working receivers
get each alert once; a timeout after the request went out is "maybe delivered", not re-sent soon."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.alerts.delivery import Outbox
from monitor.config import AlertSettings
from monitor.core.records import Notification, Severity
from monitor.store import Store
from monitor.store import outbox_queries as q
from tests.receivers import HttpReceiver
from tests.slow_receivers import DripReceiver, SlowHttpReceiver, SlowSmtpReceiver


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'monitor.db'}") as s:
        yield s


def note(i: int) -> Notification:
    now = datetime.now(UTC)
    return Notification(f"n-{i}", now, "unknown-source", Severity.WARNING, f"alert {i}", f"body {i}", ())


def test_a_dripping_receiver_does_not_delay_a_healthy_one(store: Store) -> None:
    """13.7: the drip is listed first; the healthy webhook must get every alert at once (within 2 s),
    not after the drip's timeout (before the fix it waited about 5 s, then the drip's row was abandoned)."""
    with DripReceiver(interval=2.0) as drip, HttpReceiver() as healthy:
        settings = AlertSettings(urls=[drip.apprise_url(), healthy.apprise_url()])
        outbox = Outbox(settings, store, connect_timeout=2.0, read_timeout=3.0, throttle=0.0)
        outbox.enqueue([note(i) for i in range(3)])
        started = time.monotonic()
        worker = threading.Thread(target=outbox.deliver, daemon=True)
        worker.start()
        healthy.wait_for(3, timeout=10.0)
        assert time.monotonic() - started < 2.0
        worker.join(timeout=30)
        assert not worker.is_alive()
        assert drip.connections == 1  # one send in flight for the bad receiver, never more


def test_a_daemon_pass_returns_while_the_drip_holds_on(store: Store) -> None:
    """13.7, the daemon's way: passes with a short wait keep serving the healthy receiver while the drip's
    send goes on, and the drip gets no second connection while its first one is still held."""
    with DripReceiver(interval=2.0) as drip, HttpReceiver() as healthy:
        settings = AlertSettings(urls=[drip.apprise_url(), healthy.apprise_url()])
        outbox = Outbox(settings, store, throttle=0.0)  # the real per-scheme timeouts (30 s read)
        for i in range(4):
            outbox.enqueue([note(i)])
            started = time.monotonic()
            attempts = outbox.deliver(wait_seconds=0.5)
            assert time.monotonic() - started < 3.0
            healthy.wait_for(i + 1, timeout=2.0)
            assert any(a.ok and a.service == "json#1" for a in attempts)
        assert drip.connections == 1
        pending = {r["notification_id"] for r in q.rows(store, states=(q.PENDING, q.SENDING))}
        assert pending == {"n-0", "n-1", "n-2", "n-3"}  # the drip's rows wait; none is lost


def test_slow_but_working_receivers_get_each_alert_once(store: Store) -> None:
    """13.8: a webhook answering after 5 s and SMTP answering 250 after 6 s, with the default per-scheme
    timeouts: delivered on the first attempt, so a later pass sends nothing again."""
    with SlowHttpReceiver(delay=5.0) as hook, SlowSmtpReceiver(delay=6.0) as smtp:
        settings = AlertSettings(urls=[hook.apprise_url(), smtp.apprise_url()])
        outbox = Outbox(settings, store, throttle=0.0)
        outbox.enqueue([note(1)])
        first = outbox.deliver()
        assert sorted((a.service, a.ok) for a in first) == [("json#0", True), ("mailto#1", True)], first
        later = datetime.now(UTC) + timedelta(minutes=5)
        assert outbox.deliver(later) == [] and outbox.deliver(later, force=True) == []
        assert hook.count() == 1 and smtp.count() == 1
        assert q.state_counts(store) == {"sent": 2}


@pytest.mark.parametrize("kind", ["webhook", "smtp"])
def test_a_timeout_after_sending_is_maybe_delivered_not_resent_soon(kind: str, store: Store) -> None:
    """13.8: the receiver took the message but answered after our (deliberately short) timeout. No
    re-send within minutes, not even forced; one more try after 30 min; then it is given up."""
    receiver: SlowHttpReceiver | SlowSmtpReceiver
    receiver = SlowHttpReceiver(delay=3.0) if kind == "webhook" else SlowSmtpReceiver(delay=3.0)
    with receiver:
        settings = AlertSettings(urls=[receiver.apprise_url()])
        outbox = Outbox(settings, store, connect_timeout=1.0, read_timeout=1.0, throttle=0.0)
        outbox.enqueue([note(1)])
        now = datetime.now(UTC)
        (first,) = outbox.deliver(now)
        assert not first.ok and first.maybe_delivered, first
        assert first.next_attempt_at is not None and first.next_attempt_at - now >= timedelta(minutes=29)
        for minutes in (1, 5, 20):
            at = now + timedelta(minutes=minutes)
            assert outbox.deliver(at) == [] and outbox.deliver(at, force=True) == []
        assert receiver.count() == 1
        (second,) = outbox.deliver(now + timedelta(minutes=31))
        assert second.maybe_delivered and second.gave_up
        assert outbox.deliver(now + timedelta(hours=3), force=True) == []
        assert receiver.count() == 2
        (row,) = q.rows(store)
        assert row["state"] == q.FAILED and "maybe delivered twice" in row["last_error"]


def test_a_refused_connection_is_not_maybe_delivered(store: Store) -> None:
    """Failures before the request went out keep the short backoff."""
    with HttpReceiver() as down:
        url = down.apprise_url()
    outbox = Outbox(AlertSettings(urls=[url]), store, connect_timeout=1.0, read_timeout=1.0)
    outbox.enqueue([note(1)])
    now = datetime.now(UTC)
    (attempt,) = outbox.deliver(now)
    assert not attempt.ok and not attempt.maybe_delivered
    assert attempt.next_attempt_at is not None and attempt.next_attempt_at - now < timedelta(minutes=1)


def test_a_send_still_running_at_exit_is_not_resent_when_its_lease_ends(tmp_path: Path) -> None:
    """13.8 for the CLI: `alerts retry` stops waiting after its budget and exits; the row of a send still
    running must not come back when its lease (105 s) runs out, but wait like any 'maybe delivered'."""
    db = f"sqlite:///{tmp_path / 'monitor.db'}"
    with DripReceiver(interval=2.0) as drip:
        settings = AlertSettings(urls=[drip.apprise_url()])
        with Store.open(db) as store:
            outbox = Outbox(settings, store, throttle=0.0)
            outbox.enqueue([note(1)])
            (attempt,) = outbox.deliver(wait_seconds=0.5)
            assert attempt.in_flight
            (settled,) = outbox.settle()
            assert settled.maybe_delivered and settled.next_attempt_at is not None
        with Store.open(db) as store:  # the next process
            later = datetime.now(UTC) + outbox.lease + timedelta(minutes=1)
            fresh = Outbox(settings, store, throttle=0.0)
            assert fresh.deliver(later, force=True, wait_seconds=0.5) == []
            assert drip.connections == 1
