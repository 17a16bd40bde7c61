"""The daemon loop: hooks, wake-ups by file events, observer supervision, stop, and SIGHUP reload."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from monitor.config import Settings, SourceSettings, validate
from monitor.core.records import Request
from monitor.service.daemon import Daemon
from monitor.sources.watch import DirectoryWatcher
from monitor.store import Store
from tests.conftest import isolated_env

# Recent times: older lines would fall to the daemon's 90-day retention.
RECENT = datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S")


def nginx(path: str) -> str:
    return f'127.0.0.1 - - [{RECENT} +0000] "GET {path} HTTP/1.1" 200 12 "-" "curl/8.5"\n'


def wait_for(predicate: object, timeout: float = 10.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.005)
    raise AssertionError("condition not met in time")


def settings_for(tmp_path: Path, *sources: dict[str, object], poll: float = 1.0) -> Settings:
    return validate(
        {
            "database": {"url": f"sqlite:///{tmp_path / 'db.sqlite'}"},
            "daemon": {"poll_seconds": poll, "batch_lines": 100},
            "sources": list(sources),
        }
    )


def test_hooks_event_wakeups_and_prompt_stop(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "access.log"
    log.parent.mkdir()
    log.write_text(nginx("/before"))
    # A 30 s poll: anything stored within a fraction of that was woken by a file event.
    settings = settings_for(
        tmp_path, {"name": "web", "path": str(log), "format": "nginx", "start_at": "beginning"}, poll=30
    )
    store = Store.open(settings.database.url)
    stored: list[tuple[str, list[Request]]] = []
    ticks: list[datetime] = []
    daemon = Daemon(
        settings, store, on_stored=lambda s, reqs, now: stored.append((s.name, reqs)), tick=ticks.append
    )
    thread = threading.Thread(target=daemon.run)
    thread.start()
    try:
        wait_for(lambda: sum(len(r) for _, r in stored) == 1)
        with log.open("a") as fh:
            fh.write("".join(nginx(f"/p{i}") for i in range(250)))  # more than one batch (batch_lines = 100)
        latency = wait_for(lambda: sum(len(r) for _, r in stored) == 251)
        assert latency < 5, latency
        assert all(name == "web" and len(reqs) <= 100 for name, reqs in stored)
        wait_for(lambda: len(ticks) >= 2, timeout=5)
        assert all(t.tzinfo is not None for t in ticks)
    finally:
        started = time.monotonic()
        daemon.request_stop()
        thread.join(timeout=5)
    assert not thread.is_alive() and time.monotonic() - started < 5
    assert store.count_requests() == 251
    store.close()


def test_a_failing_hook_does_not_stop_storage(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_text(nginx("/a") + nginx("/b"))
    settings = settings_for(
        tmp_path, {"name": "web", "path": str(log), "format": "nginx", "start_at": "beginning"}, poll=0.05
    )
    store = Store.open(settings.database.url)

    def broken(_s: SourceSettings, _r: list[Request], _n: datetime) -> None:
        raise RuntimeError("hook bug")

    daemon = Daemon(settings, store, on_stored=broken)
    thread = threading.Thread(target=daemon.run)
    thread.start()
    try:
        wait_for(lambda: store.count_requests() == 2)
        with log.open("a") as fh:
            fh.write(nginx("/c"))
        wait_for(lambda: store.count_requests() == 3)
    finally:
        daemon.request_stop()
        thread.join(timeout=5)
    store.close()


def test_watcher_survives_handler_errors_and_restarts_a_dead_observer(tmp_path: Path) -> None:
    wakes: list[int] = []

    def wake() -> None:
        wakes.append(1)
        raise RuntimeError("a bug in the wake-up must not kill the observer thread")

    watcher = DirectoryWatcher(wake)
    watcher.set_targets({str(tmp_path): {"access"}})
    watcher.ensure_running()
    try:
        (tmp_path / "access.log").write_text("x\n")
        wait_for(lambda: len(wakes) >= 1)
        (tmp_path / "unrelated.txt").write_text("x\n")
        observer = watcher._observer
        assert observer is not None and observer.is_alive()
        observer.stop()  # the thread dies (as it would after an exception inside watchdog)
        observer.join(5)
        watcher.ensure_running()
        assert watcher.restarts == 1 and watcher._observer is not None and watcher._observer.is_alive()
        before = len(wakes)
        (tmp_path / "access.log").write_text("y\n")
        wait_for(lambda: len(wakes) > before)
    finally:
        watcher.stop()


def test_run_reloads_on_sighup_and_stops_on_sigterm(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text(nginx("/a1"))
    b.write_text(nginx("/b1"))
    db = tmp_path / "db.sqlite"
    cfg = tmp_path / "monitor.toml"
    head = f'[database]\nurl = "sqlite:///{db}"\n[daemon]\npoll_seconds = 0.1\n'
    source_a = f'[[sources]]\nname = "a"\npath = "{a}"\nformat = "nginx"\nstart_at = "beginning"\n'
    source_b = f'[[sources]]\nname = "b"\npath = "{b}"\nformat = "nginx"\nstart_at = "beginning"\n'
    cfg.write_text(head + source_a)
    err = tmp_path / "stderr.log"
    with err.open("wb") as err_fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "--config", str(cfg), "run"],
            stderr=err_fh,
            stdout=subprocess.DEVNULL,
            env=isolated_env(tmp_path),
            cwd=tmp_path,
        )

    def paths() -> list[str]:
        if not db.exists():
            return []
        con = sqlite3.connect(db, timeout=5)
        try:
            return sorted(r[0] for r in con.execute("SELECT path FROM requests"))
        except sqlite3.OperationalError:
            return []
        finally:
            con.close()

    try:
        wait_for(lambda: paths() == ["/a1"], timeout=20)
        cfg.write_text(head + source_a + source_b)
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: paths() == ["/a1", "/b1"])
        cfg.write_text(head + source_b + "[[sources]]\nname = 1\n")  # invalid: the running config stays
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload failed" in err.read_text())
        with a.open("a") as fh:
            fh.write(nginx("/a2"))
        wait_for(lambda: paths() == ["/a1", "/a2", "/b1"])
        cfg.write_text(head + source_b)  # a removed
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "following 1 source" in err.read_text().rsplit("reload failed", 1)[1])
        with a.open("a") as fh:
            fh.write(nginx("/a3 (not followed any more)"))
        with b.open("a") as fh:
            fh.write(nginx("/b2"))
        wait_for(lambda: "/b2" in paths())
        assert "/a3" not in " ".join(paths())
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - started < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = err.read_text()
    assert "Traceback" not in text, text
    assert "sources[1].name" in text  # the reload error says what is wrong and where
