"""The file follower, scenario by scenario, against real files and a real SQLite store."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import sqlite3
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.config import SourceSettings
from monitor.core.records import Request
from monitor.sources.base import commit
from monitor.sources.files import FileFollower, is_sibling
from monitor.sources.lines import MAX_LINE_BYTES, PlainFile, read_lines
from monitor.sources.watch import NETWORK_FILESYSTEMS, filesystem_type, wants_polling
from monitor.store import Store

TS = datetime(2025, 1, 1, tzinfo=UTC)


# A real log line is longer than a file's identity needs (MIN_IDENTITY_BYTES of complete lines): the
# short lines these scenarios write are padded to that length on disk by `append`, and `Echo` removes
# the padding again, so each test reads as the short lines it writes.
PAD = " <padding: a real log line is longer than this test's short text, and so is a file's identity>"


class Echo:
    def decode(self, line: str) -> Request:
        return Request(TS, "127.0.0.1", "GET", line.replace(PAD, ""), 200)


def nginx(path: str) -> str:
    return f'127.0.0.1 - - [10/Oct/2025:13:55:36 +0000] "GET {path} HTTP/1.1" 200 12 "-" "curl/8.5"'


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield s
    s.close()


def follower(
    store: Store, path: Path, *, start_at: str = "beginning", echo: bool = True, **kw: object
) -> FileFollower:
    source = SourceSettings(name="web", path=str(path), format="nginx", start_at=start_at)  # type: ignore[arg-type]
    if echo:
        kw["decoder_factory"] = lambda _s: Echo()
    return FileFollower(source, store, **kw)  # type: ignore[arg-type]


def drain(f: FileFollower, store: Store, budget: int = 10_000) -> list[str]:
    """Read and commit until nothing is left; return the stored texts of this call, in order."""
    out: list[str] = []
    for _ in range(100):
        batches = f.read(budget)
        for batch in batches:
            commit(store, batch)
            out.extend(r.path or "" for r in batch.requests)
        if not batches and not f.more:
            return out
    raise AssertionError("follower never ran dry")


def rows(store: Store) -> list[tuple[int, int, str]]:
    db = store.engine.url.database
    assert db is not None
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT file_id, line_offset, path FROM requests ORDER BY id").fetchall()
    finally:
        con.close()


def append(path: Path, *lines: str, end: str = "\n") -> None:
    """Append lines; one shorter than a real log line is padded with PAD (see `Echo`)."""
    with path.open("a", encoding="utf-8") as fh:
        fh.write("".join(line + (PAD if len(line) < len(PAD) else "") + end for line in lines))


def test_start_at_end_then_restart_resumes_exactly(
    tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "access.log"
    append(log, "old 1", "old 2")
    append(log, "half", end="")
    f = follower(store, log, start_at="end")
    caplog.set_level("INFO")
    assert drain(f, store) == []
    assert any("ollama-monitor ingest" in r.getMessage() for r in caplog.records)  # the backfill hint
    append(log, " done", "new 1")  # completes the half line that was there before the start
    assert drain(f, store) == ["half done", "new 1"]
    f.close()
    append(log, "while down")
    f = follower(store, log, start_at="end")  # not a first start any more: resumes from the checkpoint
    append(log, "after restart")
    assert drain(f, store) == ["while down", "after restart"]
    f.close()


def test_path_that_appears_later_and_partial_first_line(tmp_path: Path, store: Store) -> None:
    log = tmp_path / "later" / "access.log"
    f = follower(store, log, start_at="end")
    assert drain(f, store) == []  # no directory, no file: wait quietly
    log.parent.mkdir()
    append(log, "first li", end="")
    assert drain(f, store) == []  # no complete first line: no fingerprint yet
    append(log, "ne", "second")
    assert drain(f, store) == ["first line", "second"]  # a file born after the first start: from byte 0
    f.close()


def test_overlong_line_is_a_reject_memory_bounded_positions_exact(tmp_path: Path, store: Store) -> None:
    log = tmp_path / "access.log"
    big = 10 * 1024 * 1024
    with log.open("wb") as fh:
        fh.write(b"short\n" + b"A" * big + b"\n" + b"after\n")
    f = follower(store, log)
    tracemalloc.start()
    texts = drain(f, store, budget=5000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert texts == ["short", "after"]
    assert peak < 4 * 1024 * 1024, f"reading a 10 MB line peaked at {peak} bytes"
    assert [r[1] for r in rows(store)] == [0, 6 + big + 1]  # offsets count every real byte
    reject = store.recent_rejects(1)[0]
    assert reject["reason"] == "line too long" and reject["line_offset"] == 6
    f.close()


def test_read_lines_caps_and_waits_for_newline() -> None:
    import tempfile

    with tempfile.TemporaryFile() as fh:
        fh.write(b"a\r\nbb\n" + b"x" * (MAX_LINE_BYTES + 10) + b"\npartial")
        fh.flush()
        reader = PlainFile(os.dup(fh.fileno()))
        lines, pos = read_lines(reader, 0, max_lines=10)
        assert [(line.offset, line.data[:3], line.length, line.too_long) for line in lines] == [
            (0, b"a", 1, False),
            (3, b"bb", 2, False),
            (6, b"xxx", MAX_LINE_BYTES + 10, True),
        ]
        assert len(lines[2].data) == MAX_LINE_BYTES
        assert pos == 6 + MAX_LINE_BYTES + 11  # the partial last line waits
        lines, pos2 = read_lines(reader, pos, max_lines=10, final=True)
        assert [line.data for line in lines] == [b"partial"] and pos2 == pos + 7
        lines, pos3 = read_lines(reader, 0, max_lines=1)
        assert len(lines) == 1 and pos3 == 3
        reader.close()


def test_deleted_and_recreated_file_is_drained_through_its_handle(tmp_path: Path, store: Store) -> None:
    log = tmp_path / "access.log"
    append(log, "one")
    f = follower(store, log)
    assert drain(f, store) == ["one"]
    append(log, "two (written just before the delete)")
    log.unlink()
    append(log, "new file")
    assert drain(f, store) == ["two (written just before the delete)", "new file"]
    f.close()


def test_rename_rotation_with_a_writer_still_on_the_old_file(tmp_path: Path, store: Store) -> None:
    log = tmp_path / "access.log"
    writer = log.open("a", encoding="utf-8")
    writer.write("a" + PAD + "\n")
    writer.flush()
    f = follower(store, log)
    assert drain(f, store) == ["a"]
    os.rename(log, tmp_path / "access.log.1")
    append(log, "new 1")
    assert drain(f, store) == ["new 1"]
    writer.write("b (late, to the renamed file)" + PAD + "\n")  # the writer has not reopened yet
    writer.flush()
    writer.close()
    assert drain(f, store) == ["b (late, to the renamed file)"]
    f.close()


def test_copytruncate_regrown_past_the_old_offset(tmp_path: Path, store: Store) -> None:
    log = tmp_path / "access.log"
    append(log, *(f"old {i}" for i in range(5)))
    f = follower(store, log)
    assert drain(f, store) == [f"old {i}" for i in range(5)]
    append(log, "unread before rotation")
    shutil.copyfile(log, tmp_path / "access.log.1")
    os.truncate(log, 0)
    append(log, *(f"new and longer line number {i}" for i in range(10)))  # now bigger than our position
    got = drain(f, store)
    assert got == ["unread before rotation"] + [f"new and longer line number {i}" for i in range(10)]
    assert len(rows(store)) == 16
    f.close()


def test_atomic_replace_and_symlink_retarget(tmp_path: Path, store: Store) -> None:
    a, b, link = tmp_path / "a.log", tmp_path / "b.log", tmp_path / "current.log"
    append(a, "a1")
    link.symlink_to(a)
    f = follower(store, link)
    assert drain(f, store) == ["a1"]
    append(b, "b1", "b2")
    tmp = tmp_path / "current.tmp"
    tmp.symlink_to(b)
    os.replace(tmp, link)  # atomically point the link at another file
    assert drain(f, store) == ["b1", "b2"]
    replacement = tmp_path / "new.log"
    append(replacement, "r1")
    os.replace(replacement, link)  # atomically replace the link by a regular file
    assert drain(f, store) == ["r1"]
    f.close()


def test_catch_up_after_downtime_from_rotated_and_compressed_siblings(tmp_path: Path, store: Store) -> None:
    log = tmp_path / "access.log"
    append(log, "1", "2")
    f = follower(store, log)
    assert drain(f, store) == ["1", "2"]
    f.close()
    # While the follower is down: more lines, a rotation, compression, a second rotation, new lines.
    append(log, "3")
    os.rename(log, tmp_path / "access.log.1")
    append(log, "4", "5")
    with gzip.open(tmp_path / "access.log.2.gz", "wb") as gz:
        gz.write((tmp_path / "access.log.1").read_bytes())
    (tmp_path / "access.log.1").unlink()
    os.rename(log, tmp_path / "access.log-20250101")
    append(log, "6")
    f = follower(store, log)
    assert sorted(drain(f, store)) == ["3", "4", "5", "6"]
    assert sorted(r[2] for r in rows(store)) == ["1", "2", "3", "4", "5", "6"]
    f.close()


def test_history_from_before_the_first_start_is_left_to_ingest(tmp_path: Path, store: Store) -> None:
    log = tmp_path / "access.log"
    old = tmp_path / "access.log.1"
    append(old, "ancient")
    os.utime(old, (1_600_000_000, 1_600_000_000))
    append(log, "current")
    f = follower(store, log)
    assert drain(f, store) == ["current"]
    f.close()


def test_docker_split_record_never_checkpoints_between_its_parts(tmp_path: Path, store: Store) -> None:
    log = tmp_path / "container-json.log"
    line = nginx("/" + "a" * 20_000) + "\n"
    part1 = json.dumps({"log": line[:16384], "stream": "stdout", "time": "2025-10-10T13:55:36.1Z"})
    part2 = json.dumps({"log": line[16384:], "stream": "stdout", "time": "2025-10-10T13:55:36.1Z"})
    first = json.dumps({"log": nginx("/first") + "\n", "stream": "stdout", "time": "2025-10-10T13:55:35Z"})
    append(log, first, part1)
    f = follower(store, log, echo=False)
    assert [p[:6] for p in drain(f, store)] == ["/first"]
    saved = store.checkpoint("web", f._active.fp if f._active else "")
    assert saved is not None and saved.position == len(first) + 1  # the start of the held part
    f.close()  # "killed" with the part held in memory only
    append(log, part2)
    f = follower(store, log, echo=False)
    got = drain(f, store)
    assert len(got) == 1 and got[0] == "/" + "a" * 20_000
    assert [r[1] for r in rows(store)] == [0, len(first) + 1 + len(part1) + 1]
    f.close()


def test_fingerprint_agrees_with_whole_file_ingest(tmp_path: Path, store: Store) -> None:
    from monitor.ingest import backfill as ingest

    log = tmp_path / "access.log"
    append(log, nginx("/x"), nginx("/y"))
    f = follower(store, log)
    drain(f, store)
    assert f._active is not None and f._active.fp == ingest.file_fingerprint(log)
    f.close()


def test_sibling_names() -> None:
    for name in (
        "access.log.1",
        "access.log.2.gz",
        "access.log-20250101",
        "access.log-20250101.gz",
        "access.log_old",
    ):
        assert is_sibling("access.log", name), name
    assert is_sibling("server.log", "server-1.log") and is_sibling("server.log", "server-12.log.gz")
    for name in ("access.log", "error.log", "access.logger", "server-a.log", "db.sqlite-wal"):
        assert not is_sibling("access.log", name), name


def test_poll_only_modes(tmp_path: Path) -> None:
    assert wants_polling("poll", str(tmp_path / "x.log"))
    assert not wants_polling("inotify", str(tmp_path / "x.log"))
    fstype = filesystem_type(str(tmp_path))
    assert fstype is not None
    assert wants_polling("auto", str(tmp_path / "x.log")) == (fstype in NETWORK_FILESYSTEMS)
