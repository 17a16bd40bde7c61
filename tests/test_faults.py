"""Faults a careless admin or a damaged disk causes: one clean line and the documented exit status, never a
traceback; the database deleted under a running daemon; a second daemon on one database."""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import services
from tests.conftest import CliRunner, assert_no_traceback, isolated_env
from tests.test_service import count, write_log

CORPUS_LINE = '203.0.113.9 - - [01/Dec/2026:10:00:00 +0000] "GET /api/tags HTTP/1.1" 200 12 "-" "ua"\n'


def _config(tmp_path: Path, db: Path, extra: str = "") -> Path:
    cfg = tmp_path / "monitor.toml"
    cfg.write_text(f'[database]\nurl = "sqlite:///{db}"\n{extra}', encoding="utf-8")
    return cfg


def _one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert_no_traceback(proc)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("ollama-monitor: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[None]:
    """chmod 0444 keeps nobody but root out; root is kept out by the immutable attribute (chattr +i)."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        yield
        path.chmod(0o644)
        return
    services.require("chattr (e2fsprogs)", shutil.which("chattr"))
    immutable = subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
    services.require("a file system with the immutable attribute (chattr +i) for the test's files", immutable)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


# --- the database: each case broken once, every command one line and exit 73 -----------------------

COMMANDS = (("status",), ("sources", "list"), ("ingest", "LOG"), ("summary", "--format", "text"), ("run",))


def _corrupt(db: Path) -> None:
    db.write_bytes(os.urandom(8192))


def _version(value: str) -> Callable[[Path], None]:
    def apply(db: Path) -> None:
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (value,))

    return apply


def _foreign(db: Path) -> None:
    db.unlink()
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE requests (id INTEGER PRIMARY KEY, url TEXT, body BLOB)")
        conn.execute("INSERT INTO requests VALUES (1, 'https://example.invalid', x'00')")


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (_corrupt, "not a database"),
        (_version("abc"), "schema version is 'abc'"),
        (_version("1.0"), "schema version is '1.0'"),
        (_version(""), "schema version is ''"),
        (_foreign, "did not create"),
    ],
    ids=["corrupt", "version-abc", "version-1.0", "version-empty", "foreign-requests-table"],
)
def test_damaged_database_is_one_line_and_73_for_every_command(
    cli: CliRunner, tmp_path: Path, damage: Callable[[Path], None], words: str
) -> None:
    """Issue 13.15: a schema version `abc`/`1.0`/empty raised ValueError from int(); another program's
    `requests` table was adopted and the first insert raised OperationalError (tracebacks, exit 1)."""
    db = tmp_path / "m.db"
    log = tmp_path / "access.log"
    log.write_text(CORPUS_LINE, encoding="utf-8")
    cfg = _config(tmp_path, db, f'[[sources]]\nname = "nginx"\npath = "{log}"\nformat = "nginx"\n')
    created = cli("--config", str(cfg), "status")  # creates the database (exit 3: never run)
    assert db.is_file() and "Traceback" not in created.stderr, created.stderr
    damage(db)
    for command in COMMANDS:
        args = [str(log) if a == "LOG" else a for a in command]
        proc = cli("--config", str(cfg), *args, timeout=60)  # `run` too: it stops at once
        assert proc.returncode == 73, (command, proc.stderr)
        assert words in _one_error_line(proc), proc.stderr
    if damage is _foreign:  # nothing was created in someone else's database
        with sqlite3.connect(db) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables == {"requests"}


def test_read_only_database_file_is_one_line_and_73(cli: CliRunner, tmp_path: Path) -> None:
    """Issue 13.15: a read-only database file failed in the middle of `ingest` with a traceback."""
    db = tmp_path / "m.db"
    log = tmp_path / "access.log"
    log.write_text(CORPUS_LINE, encoding="utf-8")
    cfg = _config(tmp_path, db)
    assert cli("--config", str(cfg), "status").returncode == 0
    with _read_only(db):
        for command in (("ingest", str(log)), ("status",)):
            proc = cli("--config", str(cfg), *command)
            assert proc.returncode == 73, proc.stderr
            assert "not writable" in _one_error_line(proc)


# --- log files ----------------------------------------------------------------------------------------


def test_symlink_loop_as_a_file_and_as_a_configured_source(cli: CliRunner, tmp_path: Path) -> None:
    """Issue 13.15: Path.resolve() raises RuntimeError on a loop (Python 3.11): a loop given to `check`,
    or configured as any source, made every `check` and `ingest` a traceback."""
    (tmp_path / "loop-a").symlink_to(tmp_path / "loop-b")
    (tmp_path / "loop-b").symlink_to(tmp_path / "loop-a")
    good = tmp_path / "access.log"
    good.write_text(CORPUS_LINE, encoding="utf-8")
    cfg = _config(
        tmp_path, tmp_path / "m.db", f'[[sources]]\nname = "looped"\npath = "{tmp_path / "loop-a"}"\n'
    )
    looped = cli("--config", str(cfg), "check", str(tmp_path / "loop-a"))
    assert looped.returncode == 1
    assert "symbolic links" in _one_error_line(looped)
    for command in ("check", "ingest"):
        proc = cli("--config", str(cfg), command, str(good))
        assert proc.returncode == 0, proc.stderr
        assert_no_traceback(proc)


def test_corrupt_gzip_is_one_line(cli: CliRunner, tmp_path: Path) -> None:
    """Issue 13.15: a gzip member with damaged deflate data raised zlib.error (not an OSError)."""
    good = gzip.compress(CORPUS_LINE.encode() * 200)
    bad = tmp_path / "access.log.1.gz"
    bad.write_bytes(good[:10] + bytes(b ^ 0x5A for b in good[10:40]) + good[40:])
    cfg = _config(tmp_path, tmp_path / "m.db")
    for command in ("check", "ingest"):
        proc = cli("--config", str(cfg), command, str(bad))
        assert proc.returncode == 1, proc.stderr
        assert "corrupt compressed data" in _one_error_line(proc)


# --- the daemon -------------------------------------------------------------------------------------------


def _daemon_config(tmp_path: Path, db: Path, log: Path) -> Path:
    return _config(
        tmp_path,
        db,
        f'[[sources]]\nname = "nginx"\npath = "{log}"\nformat = "nginx"\nstart_at = "beginning"\n'
        f'[known]\nallow = ["10.0.0.0/8"]\n[detector]\nmodel_dir = "{tmp_path / "models"}"\n',
    )


def _start(tmp_path: Path, cfg: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(cfg), "run"],
        env=isolated_env(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def _stored(db: Path) -> int:
    try:
        return count(db)
    except sqlite3.Error:
        return -1


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    if proc.poll() is None:
        proc.terminate()
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err


def test_second_daemon_on_one_database_is_refused(cli: CliRunner, tmp_path: Path) -> None:
    """Issue 13.15: two daemons on one SQLite file both followed the same log; the loser of each race
    logged an IntegrityError traceback. The second is now refused at start (a flock beside the file)."""
    db, log = tmp_path / "m.db", tmp_path / "access.log"
    write_log(log, 50)
    cfg = _daemon_config(tmp_path, db, log)
    first = _start(tmp_path, cfg)
    try:
        _wait_for(lambda: _stored(db) == 50)
        second = cli("--config", str(cfg), "run", timeout=60)
        assert second.returncode == 73
        line = _one_error_line(second)
        assert "another ollama-monitor daemon" in line and f"pid {first.pid}" in line
        assert first.poll() is None
    finally:
        code, err = _stop(first)
    assert code == 0 and "Traceback" not in err
    again = _start(tmp_path, cfg)  # the lock went with the process
    try:
        _wait_for(lambda: "ready" in (again.stderr.readline() if again.stderr else ""), timeout=30)
    finally:
        code, err = _stop(again)
    assert code == 0, err


@pytest.mark.service
def test_second_daemon_on_one_postgresql_database_is_refused(tmp_path: Path) -> None:
    from monitor.core.errors import StoreError
    from monitor.store import Store
    from monitor.store.engine import DaemonLock

    with services.postgres() as url, Store.open(url) as one, Store.open(url) as two:
        held = DaemonLock(one.engine).acquire()
        try:
            with pytest.raises(StoreError, match="another ollama-monitor daemon"):
                DaemonLock(two.engine).acquire()
        finally:
            held.release()
        DaemonLock(two.engine).acquire().release()  # free again once released


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_database_deleted_under_the_daemon_stops_it_and_loses_nothing(
    cli: CliRunner, tmp_path: Path, how: str
) -> None:
    """Issue 13.11: with its database deleted, `run` went on committing into the unlinked file; after a
    restart (a fresh database, start_at end) the lines logged meanwhile were gone. Now it stops at the
    next commit or tick (exit 73, one line), and the next start refuses a database without checkpoints
    until the log is ingested into it; a database put back is followed on from its checkpoints."""
    db, log = tmp_path / "m.db", tmp_path / "access.log"
    write_log(log, 100)
    cfg = _daemon_config(tmp_path, db, log)
    daemon = _start(tmp_path, cfg)
    try:
        _wait_for(lambda: _stored(db) == 100)
        backup = tmp_path / "backup.db"
        with sqlite3.connect(db) as src, sqlite3.connect(backup) as dst:
            src.backup(dst)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        if how == "replaced":
            shutil.copy(backup, tmp_path / "other.db")
            os.replace(tmp_path / "other.db", db)
        write_log(log, 40, start=100)
        _wait_for(lambda: daemon.poll() is not None, timeout=30)
    finally:
        code, err = _stop(daemon)
    assert code == 73, err
    assert_no_traceback(subprocess.CompletedProcess([], code, "", err))
    assert f"was {how} while the daemon ran" in err
    assert sum("ollama-monitor: error:" in ln for ln in err.splitlines()) == 1

    if how == "deleted":
        refused = cli("--config", str(cfg), "run", timeout=60)
        assert refused.returncode == 73
        assert "no checkpoints" in _one_error_line(refused)
        ingested = cli("--config", str(cfg), "ingest", str(log))
        assert ingested.returncode == 0, ingested.stderr
        assert _stored(db) == 140
    else:
        shutil.copy(backup, db)  # the admin restores the backup: followed on from its checkpoints
    write_log(log, 10, start=140)
    again = _start(tmp_path, cfg)
    try:
        _wait_for(lambda: _stored(db) == 150)
    finally:
        code, err = _stop(again)
    assert code == 0 and "Traceback" not in err, err


FULL_DISK = """
import os, subprocess, sys, time, sqlite3
disk, cfg, log, env_dir = sys.argv[1:5]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", disk], check=True)
daemon = subprocess.Popen([sys.executable, "-m", "monitor", "--config", cfg, "run"],
                          stderr=subprocess.PIPE, text=True, cwd=env_dir)
try:
    db = os.path.join(disk, "m.db")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if sqlite3.connect(db).execute("SELECT count(*) FROM requests").fetchone()[0] == 20:
                break
        except sqlite3.Error:
            pass
        time.sleep(0.1)
    fd = os.open(os.path.join(disk, "filler"), os.O_WRONLY | os.O_CREAT)
    try:  # the disk, filled to the last byte
        while True:
            os.write(fd, b"x" * 4096)
    except OSError:
        pass
    try:
        while True:
            os.write(fd, b"x")
    except OSError:
        os.close(fd)
    with open(log, "a") as fh:
        fh.write(sys.stdin.read())
    time.sleep(13)  # more than one heartbeat (every 10 s) and a dozen ticks
finally:
    daemon.terminate()
    try:
        _, err = daemon.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        daemon.kill()
        _, err = daemon.communicate()
sys.stdout.write(err)
"""


def test_database_errors_in_the_daemon_are_one_line_not_a_traceback_per_tick(tmp_path: Path) -> None:
    """Issue 13.15: on a full disk the heartbeat logged a traceback every 10 s (and every failed commit
    one more). The daemon runs on a real tmpfs filled to its last byte, in a mount namespace of its own
    (unshare), which no test outside it can see."""
    services.require("unshare (util-linux) with mount namespaces", shutil.which("unshare"))
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    services.require("user and mount namespaces (unshare -rm)", probe.returncode == 0)
    disk, log = tmp_path / "disk", tmp_path / "access.log"
    disk.mkdir()
    write_log(log, 20)
    cfg = _daemon_config(tmp_path, disk / "m.db", log)
    more = tmp_path / "more.log"
    write_log(more, 200, start=20)
    proc = subprocess.run(
        ["unshare", "-rm", sys.executable, "-c", FULL_DISK, str(disk), str(cfg), str(log), str(tmp_path)],
        input=more.read_text(encoding="utf-8"),
        capture_output=True,
        text=True,
        timeout=120,
        env=isolated_env(tmp_path),
    )
    err = proc.stdout
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in err, err
    errors = [ln for ln in err.splitlines() if ln.startswith("ERROR")]
    assert any("full" in ln for ln in errors), err
    # Each distinct line at most once a minute: over 13 s of ticks the old daemon wrote dozens. There are
    # four duties that touch the disk; on a loaded machine one may also meet "database is locked" while
    # another's failed write is rolled back, which is a distinct line, not a repeat.
    assert len(errors) == len(set(errors)) <= 6, err
