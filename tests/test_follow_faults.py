"""Follower faults found by hostile and careless use (issues 12 and 13), each against real files,
real inotify (watchdog) and a real SQLite store."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from monitor.sources.files import FileFollower
from monitor.sources.watch import DirectoryWatcher
from monitor.store import Store
from tests.test_follow import append, drain, follower, store  # noqa: F401 (fixture)


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
        append(log, " and a real line")
        deadline = time.monotonic() + 5
        while len(wakes) == before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(wakes) > before, "a real write did not wake us"
        assert drain(f, store)[-1:] == [(content.rsplit("\n", 1)[-1] + " and a real line")]
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
