"""`check` and `ingest` end to end through the real CLI and a real SQLite file, including bad input."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import services
from tests.conftest import CliRunner, assert_no_traceback, isolated_env, write_config

LINES = [
    '10.0.0.7 - - [21/Mar/2025:08:52:32 +0000] "POST /api/chat HTTP/1.1" 200 512 "-" "python-requests/2.32"',
    '203.0.113.9 - - [21/Mar/2025:08:52:33 +0000] "GET /api/tags HTTP/1.1" 200 80 "-" "zgrab/0.x"',
    '2001:db8::1 - - [21/Mar/2025:08:52:34 +0100] "POST /api/pull HTTP/1.1" 200 17 "-" "curl/8.5.0"',
]


def nginx_log(path: Path, n: int = 300) -> list[str]:
    lines = [LINES[i % 3].replace("/api/", f"/api/{i}/") if i >= 3 else LINES[i] for i in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


def rows(db: Path, sql: str = "SELECT count(*) FROM requests") -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
def cfg(tmp_path: Path) -> tuple[Path, Path]:
    db = tmp_path / "db" / "monitor.db"
    return write_config(tmp_path / "monitor.toml", db), db


def test_ingest_stores_every_request_and_is_idempotent(
    cli: CliRunner, tmp_path: Path, cfg: tuple[Path, Path]
) -> None:
    config, db = cfg
    log = tmp_path / "access.log"
    nginx_log(log)
    proc = cli("--config", str(config), "ingest", str(log))
    assert proc.returncode == 0, proc.stderr
    assert "300 stored" in proc.stdout and "lines/s" in proc.stdout
    assert rows(db) == [(300,)]
    first = rows(
        db,
        "SELECT ts, client_ip, method, path, status, bytes_sent, user_agent, source FROM requests ORDER BY id LIMIT 3",
    )
    assert first[0] == (
        "2025-03-21 08:52:32.000000",
        "10.0.0.7",
        "POST",
        "/api/chat",
        200,
        512,
        "python-requests/2.32",
        "access",
    )
    assert first[2][:2] == ("2025-03-21 07:52:34.000000", "2001:db8::1")  # +0100 -> UTC

    again = cli("--config", str(config), "ingest", str(log))
    assert again.returncode == 0 and "0 stored" in again.stdout, again.stdout
    assert rows(db) == [(300,)]

    # The same content rotated and compressed is recognised by its first line: nothing new.
    with gzip.open(tmp_path / "access.log.1.gz", "wb") as gz:
        gz.write(log.read_bytes())
    rotated = cli("--config", str(config), "ingest", str(tmp_path / "access.log.1.gz"), "--json")
    assert rotated.returncode == 0, rotated.stderr
    report = json.loads(rotated.stdout)["files"][0]
    assert report["inserted"] == 0 and report["source"] == "access"
    assert rows(db) == [(300,)]

    # Appending resumes from the checkpoint.
    with log.open("a") as fh:
        fh.write(LINES[0].replace("/api/chat", "/api/chat?late=1") + "\n")
    grown = cli("--config", str(config), "ingest", str(log), "--json")
    report = json.loads(grown.stdout)["files"][0]
    assert report["inserted"] == 1 and report["resumed_at"] > 0
    assert rows(db) == [(301,)]


def test_ingest_keeps_rejects_and_survives_bad_bytes(
    cli: CliRunner, tmp_path: Path, cfg: tuple[Path, Path]
) -> None:
    config, db = cfg
    log = tmp_path / "mixed.log"
    good = LINES[0].encode()
    content = (
        b"\n".join(
            [
                good,
                b"this is not an access log line at all",
                LINES[1].encode().replace(b"zgrab", b"zg\xff\xferab"),  # invalid UTF-8 in the user agent
                b"\x00\x00 nul bytes \x00 in a line",
                b"A" * (10 * 1024 * 1024),  # a 10 MB line
                LINES[2].encode(),
            ]
        )
        + b"\n"
    )
    log.write_bytes(content)
    proc = cli("--config", str(config), "ingest", "--format", "nginx", str(log), "--json")
    assert proc.returncode == 0, proc.stderr
    assert_no_traceback(proc)
    report = json.loads(proc.stdout)["files"][0]
    assert report["inserted"] == 3 and report["rejected"] == 3
    assert "line too long" in report["reject_reasons"]
    stored = rows(db, "SELECT user_agent FROM requests WHERE client_ip = '203.0.113.9'")
    assert stored == [("zg\\xff\\xferab/0.x",)]
    kept = rows(db, "SELECT reason, length(line) FROM rejects ORDER BY line_offset")
    assert len(kept) == 3 and all(length <= 2000 for _, length in kept)


def test_check_reports_counts_and_escapes_rejects(cli: CliRunner, tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text(LINES[0] + "\n" + "\x1b[31mEVIL\x1b[0m not a request\n" + LINES[1] + "\n")
    proc = cli("check", str(log), "--show-rejects")
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout and "\\x1b[31mEVIL" in proc.stdout
    assert "nginx" in proc.stdout and "lines read" in proc.stdout
    proc = cli("check", str(log), "--json")
    data = json.loads(proc.stdout)["files"][0]
    assert (data["lines"], data["parsed"], data["rejected"], data["format"]) == (3, 2, 1, "nginx")
    # check never creates a database
    assert not (tmp_path / "state").exists()


def test_binary_and_missing_files_give_one_clear_error(
    cli: CliRunner, tmp_path: Path, cfg: tuple[Path, Path]
) -> None:
    config, db = cfg
    binary = tmp_path / "program"
    shutil.copy(sys.executable, binary)
    proc = cli("--config", str(config), "ingest", str(binary))
    assert proc.returncode == 1
    assert_no_traceback(proc)
    assert "binary" in proc.stderr

    proc = cli("--config", str(config), "ingest", str(tmp_path / "nope.log"))
    assert proc.returncode != 0
    assert_no_traceback(proc)
    assert "no such file" in proc.stderr

    proc = cli("check", str(tmp_path))
    assert proc.returncode == 1 and "directory" in proc.stderr
    assert_no_traceback(proc)


def _without_root_powers(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run cmd so that file permissions apply: as root, drop the capabilities that bypass them."""
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        services.require("setpriv (util-linux), to test file permissions as root", setpriv)
        assert setpriv is not None
        cmd = [setpriv, "--bounding-set=-dac_override,-dac_read_search", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=60)


def test_unreadable_log_and_read_only_database_dir(tmp_path: Path) -> None:
    log = tmp_path / "secret.log"
    nginx_log(log, 5)
    log.chmod(0o000)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    config = write_config(tmp_path / "c.toml", ro / "monitor.db")
    env = isolated_env(tmp_path)
    cmd = [sys.executable, "-m", "monitor", "--config", str(config)]

    proc = _without_root_powers([*cmd, "check", str(log)], env, tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert_no_traceback(proc)
    assert "permission denied" in proc.stderr

    log.chmod(0o644)
    proc = _without_root_powers([*cmd, "ingest", str(log)], env, tmp_path)
    assert proc.returncode != 0
    assert_no_traceback(proc)
    assert "not writable" in proc.stderr and str(ro) in proc.stderr
    assert not (ro / "monitor.db").exists()


def test_nothing_stored_is_lost_when_a_later_file_fails(
    cli: CliRunner, tmp_path: Path, cfg: tuple[Path, Path]
) -> None:
    config, db = cfg
    log = tmp_path / "good.log"
    nginx_log(log, 50)
    assert cli("--config", str(config), "ingest", str(log)).returncode == 0
    proc = cli("--config", str(config), "ingest", str(log), str(tmp_path / "missing.log"))
    assert proc.returncode == 1 and "no such file" in proc.stderr
    assert rows(db) == [(50,)]
