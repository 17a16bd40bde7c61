"""File-system events as a wake-up call only (watchdog), and when not to trust them.

Facts this follows: watchdog coalesces events and the inotify queue can overflow silently, so events
never carry meaning here: they only wake the daemon, which then reads every file to its end, and the
daemon polls anyway about once a second. Only events that can mean new data or another file wake it
(modify, create, move, delete, close after writing): opening a file and closing it without writing
are what our own reads cause, and waking on them made an idle daemon wake itself in a loop.
Scheduling a file watches its directory and a missing path raises, so we watch directories, and only
those that exist (retried later). An exception inside a handler kills the observer thread silently:
the handler catches everything, and `ensure_running` (called by the daemon about once a second)
restarts a dead observer.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping

from watchdog.events import (
    EVENT_TYPE_CLOSED,
    EVENT_TYPE_CREATED,
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MODIFIED,
    EVENT_TYPE_MOVED,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

log = logging.getLogger("monitor.sources.watch")

# File systems on which inotify does not see writes made by other hosts or containers.
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "9p",
        "fuse.sshfs",
        "fuse.s3fs",
        "fuse.gcsfuse",
        "afs",
        "ceph",
        "glusterfs",
        "fuse.glusterfs",
        "lustre",
        "virtiofs",
        "fuse.rclone",
        "davfs",
    }
)


# Event types that can mean new data or another file at the path. Opening a file and closing it without
# writing (IN_OPEN, IN_CLOSE_NOWRITE) are left out: the follower's own reads cause them, and waking on
# them made an idle daemon wake itself in a loop. IN_CLOSE_WRITE ("closed") follows a write and stays.
WAKING_EVENTS = frozenset(
    {
        EVENT_TYPE_MODIFIED,
        EVENT_TYPE_CREATED,
        EVENT_TYPE_MOVED,
        EVENT_TYPE_DELETED,
        EVENT_TYPE_CLOSED,
    }
)


def filesystem_type(path: str) -> str | None:
    """Return the type of the file system holding `path` (from /proc/self/mounts), or None."""
    target = os.path.realpath(path)
    while not os.path.exists(target) and target != os.path.dirname(target):
        target = os.path.dirname(target)
    best, best_type = "", None
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as fh:
            for row in fh:
                fields = row.split()
                if len(fields) < 3:
                    continue
                mount = fields[1].replace("\\040", " ")
                inside = target == mount or target.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= len(best):
                    best, best_type = mount, fields[2]
    except OSError:
        return None
    return best_type


def wants_polling(watch: str, path: str) -> bool:
    """Given a source's `watch` setting and path, return True when only polling should be used."""
    if watch == "poll":
        return True
    if watch == "inotify":
        return False
    fstype = filesystem_type(os.path.dirname(os.path.abspath(path)))
    if fstype in NETWORK_FILESYSTEMS:
        log.info("%s is on %s: inotify does not see remote writes there; polling only", path, fstype)
        return True
    return False


class _Handler(FileSystemEventHandler):
    def __init__(self, wake: Callable[[], None], targets: Callable[[], dict[str, tuple[str, ...]]]) -> None:
        self._wake = wake
        self._targets = targets

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in WAKING_EVENTS:
            return  # opened / closed without writing: our own reads cause those, and they change nothing
        try:
            targets = self._targets()
            for raw in (event.src_path, getattr(event, "dest_path", "")):
                path = os.fsdecode(raw) if raw else ""
                if not path:
                    continue
                directory, name = os.path.split(path)
                prefixes = targets.get(directory)
                if prefixes is not None and (not name or name.startswith(prefixes)):
                    self._wake()
                    return
        except Exception:  # noqa: BLE001 - an exception here would kill the observer thread
            pass


class DirectoryWatcher:
    """Watches directories and calls `wake()` on any event that concerns a watched file's prefix.

    `set_targets({directory: {file prefix, ...}})` chooses what to watch; `ensure_running()` starts,
    reschedules and, when its thread died, restarts the observer. The daemon owns the calls.
    """

    def __init__(self, wake: Callable[[], None]) -> None:
        self._wake = wake
        self._targets: dict[str, tuple[str, ...]] = {}
        self._observer: BaseObserver | None = None
        self._scheduled: set[str] = set()
        self.restarts = 0

    def set_targets(self, targets: Mapping[str, Iterable[str]]) -> None:
        """Watch these directories; wake for events on files whose names start with a given prefix."""
        self._targets = {os.path.abspath(d): tuple(sorted(set(p))) for d, p in targets.items()}
        if self._observer is not None and set(self._targets) != self._scheduled:
            self._stop_observer()

    def ensure_running(self) -> None:
        if not self._targets:
            self._stop_observer()
            return
        if self._observer is not None and not self._observer.is_alive():
            log.warning("the file-event observer died; restarting it (polling covered the gap)")
            self.restarts += 1
            self._stop_observer()
        if self._observer is None:
            self._observer = Observer()
            self._observer.daemon = True
            self._scheduled = set()
            try:
                self._observer.start()
            except Exception as exc:  # noqa: BLE001 - e.g. inotify instance limit reached
                log.warning("cannot start file-event observer (%s); polling only", exc)
                self._observer = None
                return
        handler = _Handler(self._wake, lambda: self._targets)
        for directory in sorted(set(self._targets) - self._scheduled):
            if not os.path.isdir(directory):
                continue  # not there yet: polling covers it, and we try again next second
            try:
                self._observer.schedule(handler, directory, recursive=False)
                self._scheduled.add(directory)
            except Exception as exc:  # noqa: BLE001 - permission, inotify watch limit...
                log.warning("cannot watch %s (%s); polling it instead", directory, exc)
                self._scheduled.add(directory)

    def stop(self) -> None:
        self._stop_observer()

    def _stop_observer(self) -> None:
        observer, self._observer = self._observer, None
        self._scheduled = set()
        if observer is None:
            return
        try:
            observer.stop()
            if observer.is_alive():
                observer.join(timeout=2)
        except Exception:  # noqa: BLE001
            log.debug("error stopping the observer", exc_info=True)
