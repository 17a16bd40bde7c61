"""`ollama-monitor run` as a service: sd_notify over a real unix datagram socket, SIGTERM mid-ingest
with nothing lost, and `status` reporting what the daemon did."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.service.systemd import Notifier
from tests.conftest import isolated_env
from tests.services import wait_until

LINE = '10.0.0.{a} - - [{t} +0000] "POST /api/chat?n={n} HTTP/1.1" 200 {b} "-" "ua/{a}"\n'


def write_log(path: Path, n: int, start: int = 0) -> None:
    """Lines of the last hour (older ones would fall to the daemon's 90-day retention)."""
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    with path.open("a", encoding="utf-8") as fh:
        for i in range(start, start + n):
            t = (base + timedelta(seconds=i * 3600 // max(n, 1))).strftime("%d/%b/%Y:%H:%M:%S")
            fh.write(LINE.format(a=i % 7 + 1, t=t, n=i, b=100 + i % 50))


def config(tmp_path: Path, log: Path) -> Path:
    cfg = tmp_path / "monitor.toml"
    cfg.write_text(f"""
[database]
url = "sqlite:///{tmp_path / "monitor.db"}"
[[sources]]
name = "nginx"
path = "{log}"
format = "nginx"
start_at = "beginning"
[known]
allow = ["10.0.0.0/8", "127.0.0.0/8"]
[detector]
model_dir = "{tmp_path / "models"}"
[daemon]
batch_lines = 2000
""")
    return cfg


def start(tmp_path: Path, cfg: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(cfg), "run"],
        env=isolated_env(tmp_path, **env),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM requests").fetchone()[0])


def test_sd_notify_ready_status_watchdog_stopping(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    write_log(log, 100)
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.5)
    proc = start(tmp_path, config(tmp_path, log), NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC="2000000")
    messages: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sum("WATCHDOG=1" in m for m in messages) < 2:
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                continue
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
        # The daemon has exited: every datagram it sent is already queued. Drain without waiting.
        sock.setblocking(False)
        try:
            while True:
                messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
    text = "\n".join(messages)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    assert "READY=1" in text
    assert any(
        m.startswith("STATUS=") and "lines/s" in m and "source" in m and "pending alert" in m
        for m in "\n".join(messages).splitlines()
    )
    assert sum("WATCHDOG=1" in m for m in messages) >= 2  # every WATCHDOG_USEC/2 = 1 s while healthy
    assert messages[-1].startswith("STOPPING=1") or "STOPPING=1" in text
    assert text.index("READY=1") < text.index("STOPPING=1")


def test_prometheus_metrics_on_loopback(tmp_path: Path) -> None:
    import urllib.request

    from tests.services import free_port, wait_port

    log = tmp_path / "access.log"
    write_log(log, 500)
    cfg = config(tmp_path, log)
    port = free_port()
    cfg.write_text(cfg.read_text() + f'metrics_address = "127.0.0.1:{port}"\n')
    proc = start(tmp_path, cfg)
    text = ""

    def scraped_all() -> bool:
        nonlocal text
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        return (
            'ollama_monitor_requests_stored_total{source="nginx"} 500.0' in text
            and "ollama_monitor_sources 1.0" in text
        )

    try:
        wait_port("127.0.0.1", port, timeout=30)
        wait_until(scraped_all, 30, "the metrics show 500 stored requests and 1 source", every=0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    assert 'ollama_monitor_requests_stored_total{source="nginx"} 500.0' in text
    assert "ollama_monitor_sources 1.0" in text


def test_metrics_address_must_be_loopback() -> None:
    import pytest

    from monitor import config
    from monitor.core.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        config.validate({"daemon": {"metrics_address": "0.0.0.0:9464"}})
    assert "daemon.metrics_address" in info.value.problems[0] and "loopback" in info.value.problems[0]
    assert (
        config.validate({"daemon": {"metrics_address": "[::1]:9464"}}).daemon.metrics_address == "[::1]:9464"
    )


def test_notifier_abstract_socket_and_no_socket() -> None:
    name = f"om-test-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready("hello")
        assert sock.recv(100) == b"READY=1\nSTATUS=hello"
    finally:
        sock.close()
    assert Notifier({}).ready() is False  # not under systemd: a no-op


def test_sigterm_mid_ingest_loses_nothing_and_status_reports(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    total = 60_000
    write_log(log, total)
    cfg = config(tmp_path, log)
    db = tmp_path / "monitor.db"
    proc = start(tmp_path, cfg)

    def part_way() -> bool:
        try:
            return db.exists() and 0 < count(db) < total
        except sqlite3.Error:  # the schema is still being created
            return False

    wait_until(part_way, 30, "the daemon has stored some but not all lines", every=0.02)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(10)
    stopped_in = time.monotonic() - sent
    assert proc.returncode == 0
    assert stopped_in < 5.0
    part = count(db)
    assert 0 < part <= total

    status = subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(cfg), "status", "--json"],
        env=isolated_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    data = json.loads(status.stdout)
    assert status.returncode == 3 and data["daemon"]["state"] == "stopped"  # stopped cleanly: not running
    assert data["sources"][0]["lines_total"] == part and data["database"]["requests"] == part

    proc = start(tmp_path, cfg)  # resumes from the checkpoint
    running: subprocess.CompletedProcess[str] | None = None

    def caught_up_and_running() -> bool:
        # The state `status` reports, polled: the rows, the checkpoint and the heartbeat land at
        # different moments, so the test waits for all three rather than for a fixed time.
        nonlocal running
        if count(db) < total:
            return False
        running = subprocess.run(
            [sys.executable, "-m", "monitor", "--config", str(cfg), "status", "--json"],
            env=isolated_env(tmp_path),
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        if running.returncode != 0:
            return False
        source = json.loads(running.stdout)["sources"][0]
        return bool(source["lag_bytes"] == 0 and source["position"] == log.stat().st_size)

    try:
        wait_until(caught_up_and_running, 60, "the restarted daemon caught up, `status` says so", 0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    assert count(db) == total
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(DISTINCT path) FROM requests").fetchone()[0] == total
    assert running is not None
    info = json.loads(running.stdout)
    assert running.returncode == 0 and info["daemon"]["state"] == "running"
    assert info["sources"][0]["lag_bytes"] == 0 and info["sources"][0]["position"] == log.stat().st_size
