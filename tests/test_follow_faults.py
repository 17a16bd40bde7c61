"""Follower faults found by hostile and careless use (issues 12 and 13), each against real files,
real inotify (watchdog) and a real SQLite store."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.sources.files import FileFollower
from monitor.sources.watch import DirectoryWatcher
from monitor.store import Store
from tests.test_follow import PAD, append, drain, follower


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    yield s
    s.close()


def _watching(f: FileFollower) -> tuple[DirectoryWatcher, list[float]]:
    wakes: list[float] = []
    watcher = DirectoryWatcher(lambda: wakes.append(time.monotonic()))
    watcher.set_targets(f.watch_targets())
    watcher.ensure_running()
    return watcher, wakes


def _settle(wakes: list[float], quiet: float = 0.3, timeout: float = 5.0) -> None:
    """Wait until no wake-up came for `quiet` seconds (events of the set-up have been delivered)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = wakes[-1] if wakes else 0.0
        time.sleep(quiet)
        if (wakes[-1] if wakes else 0.0) == last:
            return
    raise AssertionError("file events never stopped")


@pytest.mark.parametrize("content", ["", "no newline yet", "one line\nhalf a line"])
def test_our_own_reads_never_wake_the_watcher(tmp_path: Path, store: Store, content: str) -> None:
    """Issue 12.1: following an empty file (or one whose line is unfinished) must not wake itself.

    Every open/close of the watched file fires IN_OPEN/IN_CLOSE_NOWRITE; the loop used to wake on
    those, reopen the file and wake again (a busy core while idle)."""
    log = tmp_path / "access.log"
    log.write_text(content)
    f = follower(store, log)
    drain(f, store)
    watcher, wakes = _watching(f)
    try:
        _settle(wakes)
        before = len(wakes)
        for _ in range(20):
            f.read(1000)
            time.sleep(0.01)
        time.sleep(0.5)
        assert len(wakes) == before, f"{len(wakes) - before} wake-ups caused by our own reads"
        append(log, " and a real line")  # padded to a real line's length
        deadline = time.monotonic() + 5
        while len(wakes) == before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(wakes) > before, "a real write did not wake us"
        assert drain(f, store)[-1:] == [(content.rsplit("\n", 1)[-1] + " and a real line").replace(PAD, "")]
    finally:
        watcher.stop()
        f.close()


def _descriptors_on(path: Path) -> int:
    fds = Path("/proc/self/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            count += os.readlink(fd) == str(path)
        except OSError:
            continue
    return count


def test_an_empty_file_is_waited_on_through_one_descriptor(tmp_path: Path, store: Store) -> None:
    """Issue 12.1: while a file has no identity yet, its descriptor is kept (not reopened per read)."""
    log = tmp_path / "access.log"
    log.touch()
    f = follower(store, log)
    for _ in range(3):
        f.read(100)
        assert _descriptors_on(log) == 1
    append(log, "first")
    assert drain(f, store) == ["first"]
    assert _descriptors_on(log) == 1
    f.close()
    assert _descriptors_on(log) == 0


def _release(fifo: Path) -> None:
    """Unblock a reader stuck in open() on `fifo` (the bug), so a failing test does not hang."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        return
    os.close(fd)


@pytest.mark.parametrize("start_at", ["end", "beginning"])
def test_a_fifo_at_the_path_is_refused_without_blocking(
    tmp_path: Path, store: Store, start_at: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 13.12: a FIFO at a source path blocked the daemon forever in open() at start."""
    log = tmp_path / "access.log"
    os.mkfifo(log)
    os.mkfifo(tmp_path / "access.log.1")  # a FIFO among the rotated siblings, too
    caplog.set_level("WARNING")
    f = follower(store, log, start_at=start_at)
    done = threading.Event()

    def two_reads() -> None:
        f.read(100)
        f.read(100)
        done.set()

    thread = threading.Thread(target=two_reads, daemon=True)
    thread.start()
    if not done.wait(5):
        _release(log)
        _release(tmp_path / "access.log.1")
        thread.join(5)
        raise AssertionError("read() blocked on a FIFO")
    warnings = [r.getMessage() for r in caplog.records if "FIFO" in r.getMessage()]
    assert len(warnings) == 1 and "not a regular file" in warnings[0], warnings
    os.unlink(log)
    append(log, "a regular file again")
    assert drain(f, store) == ["a regular file again"]
    f.close()


def test_a_fifo_source_does_not_stop_the_others(tmp_path: Path) -> None:
    """Issue 13.12, in the daemon: the other sources keep going while one path is a FIFO."""
    from monitor.config import validate
    from monitor.service.daemon import Daemon
    from tests.test_follow_daemon import nginx

    fifo, good = tmp_path / "fifo.log", tmp_path / "good.log"
    os.mkfifo(fifo)
    good.write_text(nginx("/stored"))
    settings = validate(
        {
            "database": {"url": f"sqlite:///{tmp_path / 'db.sqlite'}"},
            "daemon": {"poll_seconds": 0.2},
            "sources": [
                {"name": "fifo", "path": str(fifo), "format": "nginx", "start_at": "end"},
                {"name": "good", "path": str(good), "format": "nginx", "start_at": "beginning"},
            ],
        }
    )
    daemon_store = Store.open(settings.database.url)
    stored: list[str] = []
    daemon = Daemon(
        settings, daemon_store, on_stored=lambda _s, reqs, _n: stored.extend(r.path or "" for r in reqs)
    )
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not stored and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stored == ["/stored"]
    finally:
        daemon.request_stop()
        thread.join(5)
        if thread.is_alive():
            _release(fifo)
            thread.join(10)
        daemon_store.close()
    assert not thread.is_alive()


def test_nul_runs_before_a_line_are_stripped_live(tmp_path: Path, store: Store) -> None:
    """Issue 13.13: a block of NUL bytes before a valid line made it a reject and hid its client."""
    from monitor.sources.base import commit
    from tests.test_follow import nginx as nginx_line

    log = tmp_path / "access.log"
    log.write_bytes(
        (nginx_line("/first") + "\n").encode() + b"\0" * 5000 + (nginx_line("/after-nuls") + "\n").encode()
    )
    f = follower(store, log, echo=False)  # the real nginx decoder
    paths, rejects = [], []
    for batch in f.read(100):
        commit(store, batch)
        paths += [r.path for r in batch.requests]
        rejects += batch.rejects
    assert paths == ["/first", "/after-nuls"] and rejects == []
    assert f.nul_lines == 1
    f.close()


def _copytruncate(path: Path, copy: Path) -> None:
    shutil.copyfile(path, copy)
    os.truncate(path, 0)


@pytest.mark.parametrize("written_between", [0, 3])
def test_copytruncate_then_at_once_a_rename_rotation(
    tmp_path: Path, store: Store, written_between: int
) -> None:
    """Issue 13.9: copytruncate, then a rename rotation before the follower looked. The old inode went
    to the draining list with its stale fingerprint, so its copy (same fingerprint) was skipped as
    "being read through another handle" and the renamed inode as already tracked: lines unread."""
    log = tmp_path / "access.log"
    append(log, *[f"first {i}" for i in range(10)])
    f = follower(store, log)
    assert drain(f, store) == [f"first {i}" for i in range(10)]
    append(log, *[f"unread {i}" for i in range(10)])  # written, not yet read
    with log.open("a") as writer:  # the writer keeps its descriptor through both rotations
        _copytruncate(log, tmp_path / "access.log.1")
        writer.write("".join(f"between {i}{PAD}\n" for i in range(written_between)))
        writer.flush()
        os.rename(tmp_path / "access.log.1", tmp_path / "access.log.2")
        os.rename(log, tmp_path / "access.log.1")
        log.touch()
        writer.write(f"after rename 0{PAD}\n")  # still the old inode: the writer has not reopened
        writer.flush()
    append(log, "new file 0")
    got = drain(f, store)
    want = (
        [f"unread {i}" for i in range(10)]
        + [f"between {i}" for i in range(written_between)]
        + ["after rename 0", "new file 0"]
    )
    assert sorted(got) == sorted(want), f"missing {sorted(set(want) - set(got))}"
    assert len(got) == len(want)
    f.close()


def write_raw(path: Path, *lines: str) -> None:
    """Append lines exactly as given (no padding: the short first line is the point)."""
    with path.open("a", encoding="utf-8") as fh:
        fh.write("".join(line + "\n" for line in lines))


@pytest.mark.parametrize("first", ["", "#Fields: time client request"])
@pytest.mark.parametrize("rotation", ["rename", "delete"])
def test_a_new_file_starting_like_the_old_one_is_another_file(
    tmp_path: Path, store: Store, first: str, rotation: str
) -> None:
    """Issue 13.10: a new file whose first line equals the old one's (an empty line, a header) was
    taken for the old file and read from the old file's position: lines lost."""
    log = tmp_path / "access.log"
    write_raw(log, first, *[f"old request {i:02d} from 203.0.113.{i}" for i in range(10)])
    f = follower(store, log)
    assert [t for t in drain(f, store) if t.startswith("old")] == [
        f"old request {i:02d} from 203.0.113.{i}" for i in range(10)
    ]
    if rotation == "rename":
        os.rename(log, tmp_path / "access.log.1")
    else:
        log.unlink()
    write_raw(log, first, *[f"new request {i:02d} from 198.51.100.{i}" for i in range(10)])
    got = drain(f, store)
    assert [t for t in got if t.startswith("new")] == [
        f"new request {i:02d} from 198.51.100.{i}" for i in range(10)
    ]
    f.close()
    f = follower(store, log)  # a restart resumes the new file exactly
    write_raw(log, "after restart")
    assert drain(f, store) == ["after restart"]
    f.close()


def test_a_checkpoint_of_version_0_1_is_carried_over_once(tmp_path: Path, store: Store) -> None:
    """Existing databases: version 0.1 keyed a file with a short first line by that line alone. Its
    checkpoint is found through the old fingerprint and carried over, once: a later file that starts
    with the same short line is not taken for it (issue 13.10)."""
    from monitor.core.records import Checkpoint
    from monitor.sources.lines import fingerprint_of

    log = tmp_path / "access.log"
    write_raw(log, "", *[f"request {i:02d} from 203.0.113.{i}" for i in range(5)])
    size_then = log.stat().st_size
    legacy = fingerprint_of(b"\n")  # what 0.1 stored for this file
    file_id = store.file_id("web", legacy, str(log))
    store.add_batch("web", file_id, [], [], Checkpoint("web", legacy, size_then, str(log)))
    from monitor.sources.base import new_start_record, save_start

    save_start(store, "web", new_start_record())  # the source was followed before: not a first start
    write_raw(log, "written after the upgrade")
    f = follower(store, log)
    assert drain(f, store) == ["written after the upgrade"]  # resumed, nothing stored twice
    f.close()
    os.rename(log, tmp_path / "access.log.1")
    write_raw(log, "", *[f"another file {i:02d} from 198.51.100.{i}" for i in range(5)])
    f = follower(store, log)
    got = drain(f, store)
    assert [t for t in got if t.startswith("another")] == [
        f"another file {i:02d} from 198.51.100.{i}" for i in range(5)
    ]
    f.close()
