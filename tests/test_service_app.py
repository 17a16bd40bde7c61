"""The composition root and the jobs' table of periodic tasks, driven by an injected clock.

No stand-ins: a real SQLite store, the real pipeline and dispatcher, and sd_notify datagrams read from
a real unix socket.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor import config
from monitor.core.records import Notification, Request
from monitor.service.app import App
from monitor.service.jobs import Jobs
from monitor.service.systemd import Notifier
from monitor.service.tasks import EVERY_CALL, Scheduler, Task
from monitor.store import Store

T0 = datetime.now(UTC).replace(microsecond=0)


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_scheduler_runs_each_task_on_its_interval_by_the_callers_clock() -> None:
    ran: list[tuple[str, float]] = []

    def task(name: str, every: timedelta) -> Task:
        def run(now: datetime) -> bool | None:
            ran.append((name, (now - T0).total_seconds()))
            if name == "flaky" and [n for n, _ in ran].count("flaky") == 1:
                return False  # its first call did not do its work (as the watchdog when withheld)
            return None

        return Task(name, every, run)

    scheduler = Scheduler(
        [task("tick", EVERY_CALL), task("five", timedelta(seconds=5)), task("flaky", timedelta(seconds=10))]
    )
    for t in (0, 1, 2, 5, 6, 12):
        scheduler.run(s(t))
    assert [t for n, t in ran if n == "tick"] == [0, 1, 2, 5, 6, 12]
    assert [t for n, t in ran if n == "five"] == [0, 5, 12]
    # "flaky" did not do its work at 0 (it returned False): due again at 1, where it did; then at 11+.
    assert [t for n, t in ran if n == "flaky"] == [0, 1, 12]
    ran.clear()
    scheduler.run(s(3))  # the clock went back: everything is due rather than nothing for 9 s
    assert [n for n, _ in ran] == ["tick", "five", "flaky"]
    with pytest.raises(ValueError):
        Scheduler([task("tick", EVERY_CALL), task("tick", EVERY_CALL)])


def test_a_failing_task_waits_its_interval_and_the_caller_sees_the_error() -> None:
    calls: list[str] = []

    def broken(now: datetime) -> None:
        calls.append("broken")
        raise RuntimeError("boom")

    scheduler = Scheduler(
        [
            Task("broken", timedelta(seconds=10), broken),
            Task("after", EVERY_CALL, lambda now: calls.append("after")),
        ]
    )
    with pytest.raises(RuntimeError):
        scheduler.run(s(0))
    scheduler.run(s(1))
    assert calls == ["broken", "after"]  # not retried at 1 s; the next task ran at the next call


def settings_for(tmp_path: Path, **extra: object) -> config.Settings:
    log = tmp_path / "o.log"
    log.touch()
    return config.validate(
        {
            "database": {"url": f"sqlite:///{tmp_path / 'm.db'}"},
            "sources": [{"name": "ollama", "path": str(log), "format": "ollama"}],
            "detector": {"model_dir": str(tmp_path / "models")},
            "alerts": {"min_severity": "info"},
            **extra,
        }
    )


def test_jobs_tick_feeds_watchdog_heartbeat_and_status_on_the_injected_clock(tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.setblocking(False)

    def received() -> list[str]:
        out = []
        try:
            while True:
                out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out

    settings = settings_for(tmp_path)
    notifier = Notifier({"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "2000000"})
    try:
        with Store.open(settings.database.url) as store:
            jobs = Jobs(settings, store, notifier=notifier)
            assert [t.name for t in jobs.tasks()] == [
                "detect",
                "rate",
                "approvals",
                "heartbeat",
                "status",
                "watchdog",
                "prune",
            ]
            jobs.tick(s(0))
            first = received()
            assert first[0].startswith("READY=1") and "WATCHDOG=1" in first and "STATUS=" in first[1]
            assert store.get_meta("daemon.heartbeat") == s(0).isoformat()
            jobs.tick(s(0.5))  # nothing due: the watchdog every 1 s (half of WATCHDOG_USEC)
            assert received() == []
            jobs.tick(s(1))
            assert received() == ["WATCHDOG=1"]
            jobs.tick(s(5))
            assert received() == [
                "STATUS=0.0 lines/s, 1 source(s), 0 pending alert(s), rules only",
                "WATCHDOG=1",
            ]
            assert store.get_meta("daemon.heartbeat") == s(0).isoformat()  # every 10 s
            jobs.tick(s(10))
            assert store.get_meta("daemon.heartbeat") == s(10).isoformat()
            assert "watchdog" not in [t.name for t in Jobs(settings, store).tasks()]  # not under systemd
    finally:
        notifier.close()
        sock.close()


def test_a_reload_reaches_the_jobs_through_the_daemons_hook(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    reloaded = settings.model_copy(update={"known": config.KnownSettings(allow=["203.0.113.0/24"])})
    source = settings.sources[0]

    def req(ip: str, minutes: int) -> Request:
        return Request(T0 + timedelta(minutes=minutes), ip, "POST", "/api/chat", 200, 900.0, 10, "ua")

    seen: list[Notification] = []
    with Store.open(settings.database.url) as store:
        app = App(settings, store, load_settings=lambda: reloaded, echo=seen.append)
        app.jobs.on_stored(source, [req("203.0.113.5", 0)], T0)
        assert [n.rule for n in seen] == ["unknown-source"]
        seen.clear()
        try:
            app.daemon.reload()  # what SIGHUP does
        finally:
            app.daemon.close()
        assert app.daemon.settings is reloaded and app.jobs.settings is reloaded
        assert app.sources_alive() == 0  # closed: the count is the daemon's followers, not the config
        app.jobs.on_stored(source, [req("203.0.113.6", 120)], T0)
        assert seen == []  # the reloaded allow-list is in the rules
