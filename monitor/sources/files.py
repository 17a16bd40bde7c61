"""Follow one log file by path, exactly once across rotation, restarts and crashes.

How it works (the daemon calls `read(budget)` on every wake-up and about once a second, then commits
each returned batch with `monitor.sources.base.commit`):

- The file at the configured path is the *active* file. It is identified by its fingerprint (see
  `monitor.sources.lines`: its first lines, never a short or empty first line alone), never by its
  name or inode alone; its position comes from the checkpoint
  of that fingerprint. Only complete lines are consumed.
- Each read first compares the path's inode with the open descriptor. Another inode (rename+create,
  atomic replace, delete and re-create, a symlink pointing elsewhere) moves the old descriptor to the
  *draining* list: it is read to its end through the still-open handle, including lines a writer
  appends after the rename, and closed once it has been idle for `drain_grace` seconds (its partial
  last line, if any, is then taken as a final line).
- Same inode but shorter than our position, or a first line that changed (copytruncate, also when
  the file regrew past our position before we looked): the rest of the old content lives in the copy,
  a rotated sibling with the same fingerprint, which the sibling scan drains from the checkpoint.
  The first line is re-checked after every read, so bytes read across a truncation are discarded.
- Rotated siblings (`access.log.1`, `access.log.2.gz`, `access.log-20250101`, `server-1.log`) are
  scanned at start, after each rotation and every `scan_seconds`: a sibling whose fingerprint has a
  checkpoint with unread bytes is drained from it; a sibling with no checkpoint that was modified after
  the source was first followed was written while we were down, and is read from its start; older
  ones are history (`ollama-monitor ingest` backfills them).
- First start (recorded in the store, see `monitor.sources.base.StartRecord`): `start_at = "end"`
  begins after the last complete line of the current file, `"beginning"` at its first byte. After
  that, every file never seen before is read from its start.
"""

from __future__ import annotations

import logging
import os
import stat as stat_mod
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from monitor.config import SourceSettings
from monitor.core.records import Checkpoint
from monitor.sources import lines as L
from monitor.sources.base import (
    Batch,
    DecoderFactory,
    StartRecord,
    add_result,
    default_decoder,
    load_start,
    new_start_record,
    resume_position,
    save_start,
)
from monitor.sources.tracked import Tracked as _Tracked
from monitor.sources.tracked import holding as _holding
from monitor.sources.tracked import is_sibling

if TYPE_CHECKING:
    from monitor.store import Store

log = logging.getLogger("monitor.sources.files")

MTIME_SLACK = 5.0  # seconds of clock disagreement tolerated when telling history from missed files
MAX_DRAINING = 16  # old files read at once; more wait for the next scan


class FileFollower:
    """Follows `source.path`; see the module docstring. Not thread-safe: one caller at a time."""

    def __init__(
        self,
        source: SourceSettings,
        store: Store,
        *,
        decoder_factory: DecoderFactory = default_decoder,
        drain_grace: float = 30.0,
        scan_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        assert source.path is not None
        self.source = source
        self.name = source.name
        self.path = os.path.abspath(os.path.expanduser(source.path))
        self.store = store
        self.more = False  # the last read stopped on its budget: call again without waiting
        self.nul_lines = 0  # lines read with NUL bytes stripped from them (a crashed writer's leftovers)
        self._decoder_factory = decoder_factory
        self._grace = drain_grace
        self._scan_every = scan_seconds
        self._clock = clock
        self._wall = wall
        self._active: _Tracked | None = None
        self._draining: list[_Tracked] = []
        self._file_ids: dict[str, int] = {}
        self._start: StartRecord | None = load_start(store, self.name)
        self._next_scan = 0.0
        self._scan_cache: dict[str, tuple[int, int, int, int]] = {}
        self._complained: set[str] = set()
        # The file at the path while it has no identity yet: (dev, inode), its descriptor, size seen.
        self._waiting: tuple[tuple[int, int], L.PlainFile, int] | None = None

    # --- the daemon's interface ---------------------------------------------------------------------
    def watch_targets(self) -> dict[str, set[str]]:
        """Directories whose events should wake this follower (the path's, and a symlink target's),
        each with the file-name prefixes that matter there (the log and its rotated siblings)."""
        targets: dict[str, set[str]] = {}
        for path in {self.path, os.path.realpath(self.path)}:
            directory, base = os.path.split(path)
            targets.setdefault(directory, set()).add(base.partition(".")[0] or base)
        return targets

    def fileno(self) -> int | None:
        return None

    def read(self, budget: int) -> list[Batch]:
        """Read up to `budget` lines (old files first), decoded into uncommitted batches."""
        self.more = False
        try:
            self._ensure_started()
            now = self._clock()
            self._refresh(now)
            self._drop_stale(now)
            if now >= self._next_scan:
                self._next_scan = now + self._scan_every
                self._scan_siblings(now)
            self._retire(now)
            batches: list[Batch] = []
            for tracked in [*self._draining, *([self._active] if self._active else [])]:
                if budget <= 0:
                    self.more = True
                    break
                final = tracked is not self._active and (
                    tracked.gz or now - tracked.last_growth >= self._grace
                )
                batch = self._read_file(tracked, budget, final, now)
                if batch is not None:
                    batches.append(batch)
                    budget -= batch.lines
            if budget <= 0:
                self.more = True
            return batches
        except OSError as exc:
            self._complain("read", f"source {self.name}: cannot read {self.path}: {exc.strerror or exc}")
            return []

    def rewind(self) -> None:
        """Forget what was read but not committed (after a failed commit): read it again next time."""
        for tracked in self._all():
            tracked.read_pos = tracked.commit_pos
            tracked.pending_start = None
            tracked.decoder = self._decoder_factory(self.source)

    def close(self) -> None:
        self._drop_waiting()
        for tracked in self._all():
            tracked.reader.close()
        self._active = None
        self._draining = []

    # --- internals ------------------------------------------------------------------------------------
    def _all(self) -> list[_Tracked]:
        return [*self._draining, *([self._active] if self._active else [])]

    def _drop_waiting(self) -> None:
        if self._waiting is not None:
            self._waiting[1].close()
            self._waiting = None

    def _complain(self, key: str, message: str) -> None:
        if key not in self._complained:
            self._complained.add(key)
            log.warning("%s", message)

    def _ensure_started(self) -> None:
        if self._start is not None:
            return
        record = new_start_record()
        if self.source.start_at == "end":
            try:
                fd = L.open_regular(self.path)  # never blocks: a FIFO at the path is refused
            except OSError:
                fd = -1  # missing, unreadable or not a regular file: `_stat_path` says which, once
            if fd >= 0:
                plain = L.PlainFile(fd)
                try:
                    prefix = L.identity_prefix(L.read_head(plain))
                    if prefix is not None:
                        record.positions[L.fingerprint_of(prefix)] = L.end_of_last_line(plain, plain.size())
                finally:
                    plain.close()
            log.info(
                'source %s: first start, following %s from its end (start_at = "end"); '
                "run `ollama-monitor ingest %s` to backfill its history",
                self.name,
                self.path,
                self.path,
            )
        else:
            log.info("source %s: first start, reading %s from its beginning", self.name, self.path)
        save_start(self.store, self.name, record)
        self._start = record

    def _file_id(self, fp: str, path: str) -> int:
        if fp not in self._file_ids:
            self._file_ids[fp] = self.store.file_id(self.name, fp, path)
        return self._file_ids[fp]

    def _stat_path(self) -> os.stat_result | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._complained.discard("perm")
            return None
        except OSError as exc:
            self._complain("perm", f"source {self.name}: cannot stat {self.path}: {exc.strerror or exc}")
            return None
        if not stat_mod.S_ISREG(st.st_mode):
            self._complain(
                "notreg",
                f"source {self.name}: {self.path} is {L.file_kind(st.st_mode)}, not a regular file; "
                "not reading it (waiting for a regular file there)",
            )
            return None
        self._complained.discard("notreg")
        return st

    def _refresh(self, now: float) -> None:
        st = self._stat_path()
        act = self._active
        if act is not None:
            if st is None or (st.st_dev, st.st_ino) != act.dev_ino:
                log.info("source %s: %s was rotated or replaced; draining the old file", self.name, self.path)
                act.last_growth = now
                self._draining.append(act)
                self._active = None
                self._next_scan = now
            elif st.st_size < act.read_pos or not act.prefix_ok():
                log.info(
                    "source %s: %s was truncated in place (copytruncate); looking for the copy",
                    self.name,
                    self.path,
                )
                act.reader.close()
                self._active = None
                self._next_scan = now
        if self._active is None and st is not None:
            self._active = self._open_path(st, now)
        elif st is None:
            self._drop_waiting()

    def _drop_stale(self, now: float) -> None:
        """Stop draining old files that were truncated after we last read them (copytruncate, then a
        rename rotation before we looked): their fingerprint and position no longer describe them.

        The old content lives in the copy, which has the fingerprint and the checkpoint; what was
        written after the truncation starts a file of its own. Both are found by the sibling scan,
        which must look again at the dropped inode (its scan cache entry is forgotten).
        """
        for tracked in list(self._draining):
            reader = tracked.reader
            if not isinstance(reader, L.PlainFile):
                continue  # a compressed file never changes
            try:
                stale = reader.size() < tracked.read_pos or not tracked.prefix_ok()
            except OSError:
                stale = True
            if not stale:
                continue
            log.info(
                "source %s: %s was truncated after its rotation; reading its copy and its new lines",
                self.name,
                tracked.path,
            )
            tracked.reader.close()
            self._draining.remove(tracked)
            self._scan_cache = {
                path: sig for path, sig in self._scan_cache.items() if sig[:2] != tracked.dev_ino
            }
            self._next_scan = now

    def _open_path(self, st: os.stat_result, now: float) -> _Tracked | None:
        key = (st.st_dev, st.st_ino)
        for old in self._draining:
            if old.dev_ino == key:  # renamed back, or found by the sibling scan first
                self._drop_waiting()
                self._draining.remove(old)
                return old
        waiting = self._waiting
        if waiting is not None and waiting[0] == key:
            plain = waiting[1]
            if st.st_size == waiting[2]:
                return None  # unchanged since we last looked: still no identity
        else:
            self._drop_waiting()
            try:
                plain = L.PlainFile(L.open_regular(self.path))
            except FileNotFoundError:
                return None
            fst = os.fstat(plain.fd)
            if (fst.st_dev, fst.st_ino) != key:  # replaced between stat and open: look again next time
                plain.close()
                return None
        prefix = L.identity_prefix(L.read_head(plain))
        if prefix is None:
            # No complete first line yet: no identity. Keep the descriptor and wait for the file to
            # grow (reopening it on every look fires file events that would wake us again).
            self._waiting = (key, plain, st.st_size)
            return None
        self._waiting = None
        fp = L.fingerprint_of(prefix)
        same = [t for t in self._draining if t.fp == fp]
        if same:
            # A replacement that starts like the old file is the same log continued (e.g. copy, append,
            # rename over): one fingerprint, one checkpoint, read on from where the old one stopped.
            old = same[0]
            self._draining.remove(old)
            old.reader.close()
            position = old.commit_pos
        else:
            position = self._initial_position(fp, prefix, st.st_size)
        return self._track(plain, key, self.path, fp, prefix, position, now)

    def _saved_position(self, fp: str, prefix: bytes, size: int | None) -> int | None:
        """The committed position of a file, else the one chosen at the first start, else None."""
        saved = resume_position(self.store, self.name, fp, prefix, self.path, size)
        if saved is not None:
            return saved
        assert self._start is not None
        legacy = L.legacy_fingerprint(prefix)
        for key in (fp, legacy):
            if key is not None and key in self._start.positions:
                return self._start.positions[key]
        return None

    def _initial_position(self, fp: str, prefix: bytes, size: int) -> int:
        saved = self._saved_position(fp, prefix, size)
        return 0 if saved is None else saved

    def _track(
        self,
        reader: L.PlainFile | L.GzipFile,
        key: tuple[int, int],
        path: str,
        fp: str,
        prefix: bytes,
        position: int,
        last_growth: float,
    ) -> _Tracked:
        return _Tracked(
            reader=reader,
            dev_ino=key,
            path=path,
            fp=fp,
            prefix=prefix,
            file_id=self._file_id(fp, path),
            read_pos=position,
            commit_pos=position,
            decoder=self._decoder_factory(self.source),
            last_growth=last_growth,
        )

    def _scan_siblings(self, now: float) -> None:
        directory, base = os.path.split(self.path)
        try:
            names = os.listdir(directory)
        except OSError:
            return
        candidates: list[tuple[float, str, os.stat_result]] = []
        for name in names:
            if not is_sibling(base, name):
                continue
            path = os.path.join(directory, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            if not stat_mod.S_ISREG(st.st_mode):
                continue
            sig = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            if self._scan_cache.get(path) == sig:
                continue
            candidates.append((st.st_mtime, path, st))
        tracked_keys = {t.dev_ino for t in self._all()}
        for _mtime, path, st in sorted(candidates):  # oldest first
            if len(self._draining) >= MAX_DRAINING:
                return
            sig = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            if (st.st_dev, st.st_ino) in tracked_keys:
                self._scan_cache[path] = sig
                continue
            found = self._open_sibling(path, st, now)
            if found is not False:
                self._scan_cache[path] = sig
            if isinstance(found, _Tracked):
                self._draining.append(found)
                tracked_keys.add(found.dev_ino)

    def _open_sibling(self, path: str, st: os.stat_result, now: float) -> _Tracked | bool:
        """Open a rotated sibling that holds unread lines; return it, True (nothing to do) or False (later)."""
        reader: L.PlainFile | L.GzipFile
        try:
            reader = L.open_file(path)
        except OSError:
            return False
        keep = False
        try:
            prefix = L.identity_prefix(L.read_head(reader), complete=isinstance(reader, L.GzipFile))
            if prefix is None:
                return True
            fp = L.fingerprint_of(prefix)
            if any(t.fp == fp for t in self._all()):
                return False  # the same content is being read through another handle: look again later
            assert self._start is not None
            saved = self._saved_position(fp, prefix, st.st_size if isinstance(reader, L.PlainFile) else None)
            if saved is not None:
                position = saved
            elif st.st_mtime >= self._start.at - MTIME_SLACK:
                position = 0  # written after we started following, never seen: missed while down
            else:
                return True  # history from before the first start
            if not reader.read_at(position, 1):
                return True
            if isinstance(reader, L.PlainFile) and st.st_size < position:
                return True
            age = max(0.0, self._wall() - st.st_mtime)
            log.info("source %s: catching up on %s from byte %d", self.name, path, position)
            keep = True
            return self._track(reader, (st.st_dev, st.st_ino), path, fp, prefix, position, now - age)
        except (OSError, EOFError) as exc:
            log.warning("source %s: cannot read %s: %s", self.name, path, exc)
            return True
        finally:
            if not keep:
                reader.close()

    def _retire(self, now: float) -> None:
        for tracked in list(self._draining):
            idle = tracked.gz or now - tracked.last_growth >= self._grace
            if (
                tracked.eof
                and idle
                and tracked.read_pos == tracked.commit_pos
                and tracked.pending_start is None
            ):
                tracked.reader.close()
                self._draining.remove(tracked)

    def _read_file(self, tracked: _Tracked, budget: int, final: bool, now: float) -> Batch | None:
        raw_lines, new_pos = L.read_lines(tracked.reader, tracked.read_pos, max_lines=budget, final=final)
        if not raw_lines:
            tracked.eof = final or tracked.gz or self._at_end(tracked)
            return None
        if not tracked.prefix_ok():
            return None  # truncated while we read: these bytes are not the file we think; refresh decides
        tracked.eof = False
        tracked.last_growth = now
        batch = Batch(self.name, tracked.file_id, Checkpoint(self.name, tracked.fp, 0, tracked.path))
        nul_lines = 0
        for line in raw_lines:
            result, text, nul = L.decode_raw(tracked.decoder, line)
            nul_lines += nul
            if result is None:  # a part of a split record: the checkpoint must not pass its first part
                if tracked.pending_start is None:
                    tracked.pending_start = line.offset
                continue
            add_result(batch, line.offset, result, text)
            if not _holding(tracked.decoder):
                tracked.pending_start = None
        batch.lines = len(raw_lines)
        if nul_lines:
            self.nul_lines += nul_lines
            log.warning(
                "source %s: stripped NUL bytes from %d line(s) of %s (a writer crashed or preallocated); "
                "the lines after them were read",
                self.name,
                nul_lines,
                tracked.path,
            )
        tracked.read_pos = new_pos
        position = tracked.pending_start if tracked.pending_start is not None else new_pos
        batch.checkpoint = Checkpoint(self.name, tracked.fp, position, tracked.path)

        def committed(t: _Tracked = tracked, p: int = position) -> None:
            t.commit_pos = p

        batch.on_commit = committed
        if not batch.parsed and not batch.rejects and not batch.skipped and position == tracked.commit_pos:
            return None
        return batch

    @staticmethod
    def _at_end(tracked: _Tracked) -> bool:
        if isinstance(tracked.reader, L.PlainFile):
            return tracked.reader.size() <= tracked.read_pos
        return True
