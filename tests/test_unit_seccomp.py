"""The shipped units' SystemCallFilter= lets `run`, `train` and `summary` do their real work.

No systemd runs as PID 1 here, so the filter is applied the way systemd applies it, by a stand-in:
each unit's `SystemCallFilter=` lines are read in order with systemd's rules (the first line decides
allow-list or deny-list; an allow-list starts from `@default`; a later `~` line removes calls, a later
plain line adds them back; an empty value resets), every `@set` is expanded exactly as
`systemd-analyze syscall-filter @set` prints it (recursively), and tests/seccomp_exec.py installs the
result with libseccomp, killing the process (SIGSYS) on any other call, before it execs the command.
KILL_PROCESS is used even though the units set `SystemCallErrorNumber=EPERM`: that setting is a safety
net for a library that changes under the service, and a filter that needs it for the calls we make
today is wrong.

One deviation, only when the tests run as root: SQLite gives a new journal or WAL file the database's
owner with `fchown` when (and only when) it runs as root. The units never run as root (DynamicUser=yes),
so as root `fchown` fails with EPERM here (which SQLite ignores, as it would under the unit's
SystemCallErrorNumber=EPERM) instead of killing the test.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests import services
from tests.conftest import isolated_env
from tests.receivers import HttpReceiver

REPO = Path(__file__).resolve().parent.parent
RUNNER = Path(__file__).resolve().parent / "seccomp_exec.py"
MAIN_UNIT = REPO / "config" / "ollama-monitor.service"
SUMMARY_UNIT = REPO / "config" / "ollama-monitor-summary.service"
# The filter this repository shipped before: numpy's OpenBLAS calls mbind (in @resources) on import.
OLD_FILTER = ["@system-service", "~@privileged @resources"]
PROBE = "198.51.100.77"  # an unknown source (not in the simulated history)


def unit_values(unit: Path, key: str) -> list[str]:
    """Every value of `key=` in the unit's [Service] section, in order."""
    values, section = [], ""
    for raw in unit.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == "Service" and line.startswith(f"{key}="):
            values.append(line.split("=", 1)[1].strip())
    return values


@functools.cache
def expand(item: str) -> frozenset[str]:
    """A system call name, or the calls of an @set as `systemd-analyze syscall-filter` lists them."""
    if not item.startswith("@"):
        return frozenset([item])
    out = subprocess.run(
        ["systemd-analyze", "syscall-filter", item], capture_output=True, text=True, check=True
    ).stdout
    lines = out.splitlines()
    assert lines and lines[0].strip() == item, f"unexpected systemd-analyze output for {item}: {out[:200]}"
    calls: set[str] = set()
    for line in lines[1:]:
        name = line.strip()
        if name and not name.startswith("#"):
            calls |= expand(name)
    return frozenset(calls)


def allowed_calls(filter_lines: list[str]) -> set[str]:
    """The calls a unit with these SystemCallFilter= values permits (systemd's semantics, above)."""
    allowed: set[str] = set()
    allow_list: bool | None = None
    for value in filter_lines:
        if not value:
            allowed, allow_list = set(), None
            continue
        invert = value.startswith("~")
        names = set().union(*(expand(item) for item in value.lstrip("~").split()))
        if allow_list is None:
            allow_list = not invert
            if allow_list:
                allowed = set(expand("@default"))
        assert allow_list, "this stand-in handles allow-lists only (the units use one)"
        allowed = allowed - names if invert else allowed | names
    return allowed


def under_filter(tmp_path: Path, filter_lines: list[str], command: list[str]) -> list[str]:
    """The argv that runs `command` under the filter."""
    services.require("systemd-analyze (Debian package systemd)", shutil.which("systemd-analyze"))
    try:
        import ctypes

        ctypes.CDLL("libseccomp.so.2")
    except OSError:
        services.require("libseccomp (Debian package libseccomp2)", None)
    allowed = allowed_calls(filter_lines)
    listing = tmp_path / f"allowed-{abs(hash(tuple(filter_lines)))}.txt"
    listing.write_text("\n".join(sorted(allowed)) + "\n", encoding="ascii")
    eperm = ["--eperm", "fchown"] if os.geteuid() == 0 and "fchown" not in allowed else []
    return [sys.executable, str(RUNNER), str(listing), *eperm, "--", *command]


def monitor_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "monitor", *args]


def write_config(tmp_path: Path, log: Path, url: str) -> Path:
    cfg = tmp_path / "monitor.toml"
    cfg.write_text(
        f"""
[database]
url = "sqlite:///{tmp_path / "monitor.db"}"
[[sources]]
name = "web"
path = "{log}"
format = "nginx"
start_at = "beginning"
[known]
allow = ["10.0.0.0/8", "127.0.0.0/8"]
[detector]
model_dir = "{tmp_path / "models"}"
[daemon]
poll_seconds = 0.5
[alerts]
urls = ["{url}"]
""",
        encoding="utf-8",
    )
    return cfg


def seed_history(db: Path) -> None:
    """Three days of simulated traffic under the configured source, enough for `train` to train."""
    from monitor.core.records import Request
    from monitor.service import simulate
    from monitor.store import Store

    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=3, hours=1)
    events = simulate.simulate(start, days=3, seed=2)
    store = Store.open(f"sqlite:///{db}")
    try:
        rows = [
            (i, Request(e.ts, e.client_ip, e.method, e.path, e.status, e.latency_ms, e.bytes_sent))
            for i, e in enumerate(events)
        ]
        store.add_batch("web", store.file_id("web", "seed", "seed"), rows)
    finally:
        store.close()


def stored(db: Path, client: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM requests WHERE client_ip = ?", (client,)).fetchone()[0])


def died_of_sigsys(proc: subprocess.CompletedProcess[str] | subprocess.Popen[str]) -> bool:
    return proc.returncode == -signal.SIGSYS


def test_the_stand_in_expands_sets_and_kills_what_the_filter_leaves_out(tmp_path: Path) -> None:
    """The harness can fail: the old filter lacks mbind, and numpy's import dies of it."""
    old = allowed_calls(OLD_FILTER)
    assert {"read", "openat", "execve", "socket", "clone3"} <= old  # @default, @basic-io, @network-io
    assert "mbind" not in old and "setuid" not in old
    probe = subprocess.run(
        under_filter(tmp_path, OLD_FILTER, [sys.executable, "-c", "import numpy"]),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert died_of_sigsys(probe), (probe.returncode, probe.stderr[-2000:])
    plain = subprocess.run(
        under_filter(tmp_path, OLD_FILTER, [sys.executable, "-c", "print('ok')"]),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert plain.returncode == 0 and plain.stdout == "ok\n", plain.stderr


@pytest.mark.slow
def test_run_train_and_summary_work_under_the_units_syscall_filters(tmp_path: Path) -> None:
    main_filter = unit_values(MAIN_UNIT, "SystemCallFilter")
    summary_filter = unit_values(SUMMARY_UNIT, "SystemCallFilter")
    assert main_filter and summary_filter
    log = tmp_path / "access.log"
    now = datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S")
    log.write_text(f'{PROBE} - - [{now} +0000] "GET /api/tags HTTP/1.1" 200 12 "-" "curl/8.5"\n')
    env = isolated_env(tmp_path)
    with HttpReceiver() as hook:
        cfg = write_config(tmp_path, log, hook.apprise_url("/hook"))
        db = tmp_path / "monitor.db"
        seed_history(db)

        # run: store the line, alert on its unknown source, notify systemd, stop on SIGTERM.
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(tmp_path / "notify.sock"))
        notify.settimeout(0.2)
        daemon = subprocess.Popen(
            under_filter(tmp_path, main_filter, monitor_cmd("--config", str(cfg), "run")),
            env={**env, "NOTIFY_SOCKET": str(tmp_path / "notify.sock")},
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        messages: list[str] = []
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and daemon.poll() is None:
                with contextlib.suppress(TimeoutError):
                    messages.append(notify.recv(4096).decode())
                if "READY=1" in "".join(messages) and hook.received() and stored(db, PROBE):
                    break
            daemon.send_signal(signal.SIGTERM)
            _, err = daemon.communicate(timeout=20)
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.communicate()
            notify.close()
        assert not died_of_sigsys(daemon), f"run was killed by the syscall filter:\n{err[-3000:]}"
        assert daemon.returncode == 0, err[-3000:]
        assert "READY=1" in "".join(messages)
        assert stored(db, PROBE) == 1
        assert any(PROBE in json.dumps(r.json) for r in hook.received())

        # train: scikit-learn, numpy and joblib fit and save the model.
        train = subprocess.run(
            under_filter(tmp_path, main_filter, monitor_cmd("--config", str(cfg), "train")),
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert not died_of_sigsys(train), f"train was killed by the syscall filter:\n{train.stderr[-3000:]}"
        assert train.returncode == 0 and "trained on" in train.stdout, train.stdout + train.stderr

        # summary: exactly the summary unit's ExecStart (with this config), delivering to the receiver.
        (exec_start,) = unit_values(SUMMARY_UNIT, "ExecStart")
        argv = shlex.split(exec_start)
        assert argv[0].endswith("/ollama-monitor") and argv[1] == "--config"
        before = len(hook.received())
        summary = subprocess.run(
            under_filter(tmp_path, summary_filter, monitor_cmd("--config", str(cfg), *argv[3:])),
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert not died_of_sigsys(summary), (
            f"summary was killed by the syscall filter:\n{summary.stderr[-3000:]}"
        )
        assert summary.returncode == 0, summary.stderr[-3000:]
        assert "sent the summary to" in summary.stderr
        assert len(hook.wait_for(before + 1)) == before + 1
