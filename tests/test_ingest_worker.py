"""The parse worker of big backfills: the same rows, rejects and checkpoints as parsing in-process,
the same errors, and nothing lost or doubled when the ingest is killed or interrupted."""

from __future__ import annotations

import gzip
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitor.ingest.backfill import FileReport, ingest_file
from monitor.store import Store
from tests.conftest import CliRunner, assert_no_traceback, isolated_env, write_config

GOOD = '10.0.{a}.{b} - - [21/Mar/2025:08:{m:02d}:{s:02d} +0100] "POST /api/chat?n={i} HTTP/1.1" 200 {i} "-" "agent/{i}"'


def mixed_log(path: Path, n: int) -> int:
    """Write n lines: requests, rejects, invalid UTF-8 and a 70 KB line; return how many are requests."""
    out = []
    requests = 0
    for i in range(n):
        if i % 97 == 5:
            out.append(b"this is not an access log line at all %d" % i)
        elif i % 211 == 7:
            out.append(
                GOOD.format(a=i % 7, b=i % 250, m=i % 60, s=i % 59, i=i)
                .encode()
                .replace(b"agent", b"ag\xff\xfe")
            )
            requests += 1
        elif i == n // 2:
            out.append(b"B" * 70_000)
        else:
            out.append(GOOD.format(a=i % 7, b=i % 250, m=i % 60, s=i % 59, i=i).encode())
            requests += 1
    path.write_bytes(b"\n".join(out) + b"\n")
    return requests


def dump(db: Path) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(db) as conn:
        return {
            "requests": conn.execute("SELECT * FROM requests ORDER BY id").fetchall(),
            "rejects": conn.execute(
                "SELECT line_offset, reason, line FROM rejects ORDER BY line_offset"
            ).fetchall(),
            "checkpoints": conn.execute(
                "SELECT source, fingerprint, position, lines, rejected, skipped, last_line_ts FROM checkpoints"
            ).fetchall(),
        }


def ingest(db: Path, log: Path, *, piped: bool, batch: int = 700) -> FileReport:
    store = Store.open(f"sqlite:///{db}")
    try:
        return ingest_file(
            store, log, "web", "nginx", batch_lines=batch, pipeline_min_bytes=0 if piped else 1 << 62
        )
    finally:
        store.close()


def comparable(report: FileReport) -> dict[str, object]:
    fields = dict(vars(report))
    for volatile in ("seconds", "parse_worker"):
        fields.pop(volatile)
    return fields


@pytest.mark.parametrize("compressed", [False, True])
def test_worker_stores_exactly_what_inline_parsing_stores(tmp_path: Path, compressed: bool) -> None:
    log = tmp_path / "access.log"
    expected = mixed_log(log, 5000)
    if compressed:
        data = log.read_bytes()
        log = tmp_path / "access.log.1.gz"
        with gzip.open(log, "wb") as gz:
            gz.write(data)
    else:
        with log.open("ab") as fh:  # a line still being written is left for later by both
            fh.write(b'10.9.9.9 - - [21/Mar/2025:09:00:00 +0000] "GET /unfinished')

    inline = ingest(tmp_path / "inline.db", log, piped=False)
    piped = ingest(tmp_path / "piped.db", log, piped=True)

    assert not inline.parse_worker and piped.parse_worker
    assert piped.error is None and piped.inserted == expected
    assert piped.partial_tail is not compressed
    assert comparable(piped) == comparable(inline)
    assert dump(tmp_path / "piped.db") == dump(tmp_path / "inline.db")

    # Idempotent through the worker too: the checkpoint says everything is stored.
    again = ingest(tmp_path / "piped.db", log, piped=True)
    assert again.inserted == 0 and again.lines == 0
    assert dump(tmp_path / "piped.db") == dump(tmp_path / "inline.db")


def test_a_read_error_in_the_worker_is_reported_and_keeps_what_was_stored(tmp_path: Path) -> None:
    plain = tmp_path / "plain.log"
    mixed_log(plain, 20_000)
    data = gzip.compress(plain.read_bytes())
    log = tmp_path / "cut.log.gz"
    log.write_bytes(data[: len(data) * 3 // 4])  # a rotation cut short: the stream ends early

    inline = ingest(tmp_path / "inline.db", log, piped=False)
    piped = ingest(tmp_path / "piped.db", log, piped=True)

    assert piped.parse_worker
    assert inline.error and "cannot read" in inline.error
    assert piped.error == inline.error
    assert 0 < piped.inserted == inline.inserted < 20_000
    assert dump(tmp_path / "piped.db") == dump(tmp_path / "inline.db")


def big_log(path: Path, n: int) -> None:
    with path.open("w") as fh:
        for i in range(n):
            fh.write(GOOD.format(a=i % 200, b=i % 250, m=(i // 60) % 60, s=i % 60, i=i) + "\n")


def count(db: Path) -> tuple[int, int]:
    try:
        with sqlite3.connect(db, timeout=10) as conn:
            return conn.execute("SELECT count(*), count(DISTINCT id) FROM requests").fetchone()
    except sqlite3.OperationalError:
        return (0, 0)


def workers_of(parent: int) -> list[int]:
    """Live `monitor.ingest.worker` processes whose parent was `parent` (or that were orphaned)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if b"monitor.ingest.worker" in cmdline and state[0] != "Z" and int(state[1]) in (parent, 1):
            found.append(int(entry.name))
    return found


def ingest_until_rows(
    tmp_path: Path, n: int, *, own_group: bool = False
) -> tuple[subprocess.Popen[str], Path, Path]:
    """Start `ingest` of an n-line log in a new process; return it once its first batch is stored,
    with the database and config."""
    log = tmp_path / "access.log"
    big_log(log, n)
    db = tmp_path / "monitor.db"
    config = write_config(tmp_path / "monitor.toml", db)
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(config), "ingest", "--format", "nginx", str(log)],
        env=isolated_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=own_group,  # its own process group, as a terminal's Ctrl-C would reach
    )
    deadline = time.monotonic() + 60
    while count(db)[0] == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "ingest finished before it could be stopped"
    return proc, db, config


def rerun_completes(cli: CliRunner, config: Path, n: int, stored: int) -> None:
    again = cli(
        "--config", str(config), "ingest", "--format", "nginx", str(config.parent / "access.log"), "--json"
    )
    assert again.returncode == 0, again.stderr
    assert_no_traceback(again)
    report = json.loads(again.stdout)["files"][0]
    assert report["resumed_at"] > 0 and report["inserted"] == n - stored
    assert count(config.parent / "monitor.db") == (n, n)


@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_a_stopped_ingest_leaves_no_worker_and_resumes_exactly(
    cli: CliRunner, tmp_path: Path, how: str
) -> None:
    # About 43 MB, eight batches: over the size that starts a worker, and long enough that the
    # signal lands while batches remain (with four, the writer could store the last three first).
    n = 400_000
    proc, db, config = ingest_until_rows(tmp_path, n, own_group=True)
    worker_pids = workers_of(proc.pid)
    assert worker_pids, "no parse worker was running"
    if how == "SIGKILL":
        proc.send_signal(signal.SIGKILL)
    else:
        os.killpg(proc.pid, signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    if how == "SIGINT":
        assert proc.returncode == 130 and "interrupted" in err, err
        assert "Traceback" not in err
    deadline = time.monotonic() + 10
    while any(
        Path(f"/proc/{pid}").exists() and pid in workers_of(1) + workers_of(proc.pid) for pid in worker_pids
    ):
        assert time.monotonic() < deadline, "the parse worker outlived its ingest"
        time.sleep(0.05)

    stored, distinct = count(db)
    assert 0 < stored < n and stored == distinct
    rerun_completes(cli, config, n, stored)


def test_serial_ingest_uses_no_worker(cli: CliRunner, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    big_log(log, 90_000)  # over 8 MiB
    config = write_config(tmp_path / "monitor.toml", tmp_path / "monitor.db")
    serial = cli("--config", str(config), "ingest", "--serial", "--json", str(log))
    assert serial.returncode == 0, serial.stderr
    assert json.loads(serial.stdout)["files"][0]["parse_worker"] is False
    config2 = write_config(tmp_path / "monitor2.toml", tmp_path / "monitor2.db")
    default = cli("--config", str(config2), "ingest", "--json", str(log))
    report = json.loads(default.stdout)["files"][0]
    assert report["parse_worker"] is True and report["inserted"] == 90_000
    assert dump(tmp_path / "monitor.db")["requests"] == dump(tmp_path / "monitor2.db")["requests"]


@pytest.mark.parametrize("interpreter", ["/bin/false", "/nonexistent/python3"])
def test_a_worker_that_cannot_start_leaves_the_work_to_this_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interpreter: str
) -> None:
    log = tmp_path / "access.log"
    expected = mixed_log(log, 3000)
    monkeypatch.setattr(sys, "executable", interpreter)  # dies at once / cannot be started at all
    report = ingest(tmp_path / "fallback.db", log, piped=True)
    monkeypatch.undo()
    inline = ingest(tmp_path / "inline.db", log, piped=False)
    assert report.error is None and report.inserted == expected and not report.parse_worker
    assert comparable(report) == comparable(inline)
    assert dump(tmp_path / "fallback.db") == dump(tmp_path / "inline.db")


def test_a_worker_killed_mid_file_is_reported_and_the_next_run_completes(
    cli: CliRunner, tmp_path: Path
) -> None:
    n = 160_000
    proc, db, config = ingest_until_rows(tmp_path, n)
    workers = workers_of(proc.pid)
    assert proc.poll() is None and len(workers) == 1
    os.kill(workers[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and "Traceback" not in err + out
    assert "the parse worker stopped unexpectedly (killed by signal 9)" in err
    stored, distinct = count(db)
    assert 0 < stored < n and stored == distinct
    rerun_completes(cli, config, n, stored)
