"""`check` and `ingest` read lines with the follower's reader (issue 14): FIFOs, NUL runs and decoder
exceptions, through the real CLI, a real SQLite file and real FIFOs (issue 13, items 12 and 13)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from monitor.core.records import ParseResult
from monitor.ingest.job import ParseJob, open_log, read_batches
from monitor.parsers.decoder import LineDecoder
from tests.conftest import CliRunner, assert_no_traceback, write_config

LINES = [
    '10.0.0.7 - - [21/Mar/2025:08:52:32 +0000] "POST /api/chat HTTP/1.1" 200 512 "-" "python-requests/2.32"',
    '203.0.113.9 - - [21/Mar/2025:08:52:33 +0000] "GET /api/tags HTTP/1.1" 200 80 "-" "zgrab/0.x"',
    '2001:db8::1 - - [21/Mar/2025:08:52:34 +0100] "POST /api/pull HTTP/1.1" 200 17 "-" "curl/8.5.0"',
]


def stored_clients(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT client_ip FROM requests ORDER BY line_offset")]


@pytest.mark.parametrize("command", ["check", "ingest"])
def test_a_fifo_is_refused_at_once_with_one_line(cli: CliRunner, tmp_path: Path, command: str) -> None:
    """Issue 13.12: `check`/`ingest` on a FIFO used to block forever in open() waiting for a writer."""
    fifo = tmp_path / "access.log"
    os.mkfifo(fifo)
    good = tmp_path / "good.log"
    good.write_text("\n".join(LINES) + "\n")
    config = write_config(tmp_path / "monitor.toml", tmp_path / "db.sqlite")
    proc = cli("--config", str(config), command, str(fifo), str(good), timeout=60)
    assert_no_traceback(proc)
    assert proc.returncode != 0
    assert "FIFO" in proc.stderr and "not a regular" in proc.stderr
    assert proc.stderr.count("error") == 1, proc.stderr
    if command == "ingest":  # the other file was still stored
        assert len(stored_clients(tmp_path / "db.sqlite")) == 3


def test_nul_runs_before_a_line_are_stripped_not_binary(cli: CliRunner, tmp_path: Path) -> None:
    """Issue 13.13: a block of NUL bytes (a crashed writer's leftover) in front of a valid line made
    that line a reject, and `ingest` skipped the whole file as "binary"."""
    log = tmp_path / "access.log"
    log.write_bytes(
        (LINES[0] + "\n").encode()
        + b"\0" * 6000
        + (LINES[1] + "\n").encode()
        + b"\0" * 100
        + b"\n"
        + (LINES[2] + "\n").encode()
    )
    db = tmp_path / "db.sqlite"
    config = write_config(tmp_path / "monitor.toml", db)
    proc = cli("--config", str(config), "check", "--json", str(log))
    assert_no_traceback(proc)
    assert proc.returncode == 0, proc.stderr
    import json

    data = json.loads(proc.stdout)["files"][0]
    assert (data["parsed"], data["rejected"]) == (3, 0)
    proc = cli("--config", str(config), "ingest", str(log))
    assert proc.returncode == 0, proc.stderr
    assert stored_clients(db) == ["10.0.0.7", "203.0.113.9", "2001:db8::1"]


def test_a_binary_file_is_still_refused(cli: CliRunner, tmp_path: Path) -> None:
    """NUL runs no longer make a file binary; an executable still is (and a PNG)."""
    png = tmp_path / "image.log"
    png.write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x01\0\0\0\x01\0\x08\x06\0\0\0\x5c\x72\xa8\x66" * 50)
    proc = cli("check", str(png))
    assert proc.returncode == 1 and "binary" in proc.stderr
    assert_no_traceback(proc)


class RaisingDecoder(LineDecoder):
    """The real decoder, made to raise on one marked line: no line is known to make the real one
    raise (that is the point of the fix), so this stand-in plays the hostile line that would."""

    def decode(self, line: str) -> ParseResult | None:
        if "BOOM" in line:
            raise ValueError("a parser bug")
        return super().decode(line)


@pytest.mark.parametrize("final", [True, False])
def test_a_decoder_exception_is_a_reject_in_backfill_as_live(tmp_path: Path, final: bool) -> None:
    """Issue 14: backfill had its own decoding, so a decoder exception was a traceback in `ingest`
    while the follower counted it as a reject. Now both use `monitor.sources.lines.decode_raw`."""
    log = tmp_path / "access.log"
    log.write_text(LINES[0] + "\n" + LINES[1].replace("/api/tags", "/BOOM") + "\n" + LINES[2] + "\n")
    job = ParseJob(log, 0, "nginx", None, "web", 1, 1000, final)
    with open_log(log) as reader:
        batches = list(read_batches(reader, RaisingDecoder("nginx"), job))
    assert len(batches) == 1
    batch = batches[0]
    assert [r.client_ip for _off, r in batch.parsed] == ["10.0.0.7", "2001:db8::1"]  # type: ignore[union-attr]
    assert [(off, reason) for off, reason, _t in batch.rejects] == [
        (len(LINES[0]) + 1, "decoder error: ValueError")
    ]
    assert batch.position == log.stat().st_size and batch.lines == 3


@pytest.mark.parametrize("first", ["", "#Version: 1.0"])
def test_ingest_tells_apart_files_that_start_alike_and_stays_idempotent(
    cli: CliRunner, tmp_path: Path, first: str
) -> None:
    """Issue 13.10 for backfill: two files with the same first line were one file to `ingest`, so the
    second stored nothing; a .gz copy of the same file must still store nothing new."""
    import gzip

    db = tmp_path / "db.sqlite"
    config = write_config(tmp_path / "monitor.toml", db)
    one, two = tmp_path / "one.log", tmp_path / "two.log"
    one.write_text(first + "\n" + "\n".join(LINES[:2]) + "\n")
    two.write_text(first + "\n" + LINES[2] + "\n")
    for path in (one, two):
        proc = cli("--config", str(config), "ingest", "--format", "nginx", "--source", "web", str(path))
        assert proc.returncode in (0, 1), proc.stderr
    assert sorted(stored_clients(db)) == sorted(["10.0.0.7", "203.0.113.9", "2001:db8::1"])
    copy = tmp_path / "one.log.1.gz"
    copy.write_bytes(gzip.compress(one.read_bytes()))
    proc = cli("--config", str(config), "ingest", "--format", "nginx", "--source", "web", str(copy), str(one))
    assert proc.returncode in (0, 1), proc.stderr
    assert len(stored_clients(db)) == 3
