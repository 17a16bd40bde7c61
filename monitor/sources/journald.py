"""Follow a systemd unit's journal through `journalctl -o json --follow`, exactly once.

The checkpoint of a journal source has fingerprint `journal:UNIT` (hashed when longer than 64
characters), position = how many records were consumed (a running count), and cursor = the
`__CURSOR` of the last consumed record; it commits with the rows, so a restart passes
`--after-cursor=CURSOR` and resumes exactly. Each record's unique line key is the journal's sequence
number (`__SEQNUM`, else the `i=` field of the cursor), else its `__REALTIME_TIMESTAMP`, within a
file of its own per sequence-number space (the cursor's `s=`): a reset journal numbers from 1 again.

First start: with start_at = "end" the last existing record's cursor is saved at once (from a
non-following `journalctl -n 1`), so even a crash before the first new record loses nothing; with
"beginning", or when the unit has no records yet, every stored record is read (`--no-tail`).

MESSAGE arrives as a string, as an array of byte values (not UTF-8: decoded with backslash escapes
like every line here) or as null (a field too large for journalctl to print: counted as skipped).
The message text is what the decoder sees (no syslog prefix to peel).
The subprocess is restarted (every `restart_seconds`) if it exits; no loop lives here: the daemon
waits on `fileno()` and calls `read(budget)`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from monitor.config import SourceSettings
from monitor.core.records import Checkpoint, Skip
from monitor.sources.base import (
    Batch,
    DecoderFactory,
    add_result,
    decode_safely,
    default_decoder,
    load_start,
    new_start_record,
    save_start,
)
from monitor.sources.lines import decode_line

if TYPE_CHECKING:
    from monitor.store import Store

log = logging.getLogger("monitor.sources.journald")

MAX_RECORD_BYTES = 16 * 1024 * 1024  # a longer JSON record is dropped (and counted) rather than buffered
READ_BYTES = 1024 * 1024


def journal_fingerprint(unit: str) -> str:
    fp = f"journal:{unit}"
    return fp if len(fp) <= 64 else "journal:#" + hashlib.sha256(unit.encode()).hexdigest()[:40]


def message_text(value: Any) -> str | None:
    """Return a journal MESSAGE as text: str as is, byte arrays decoded, null (or junk) as None."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[0], (str, list)):
        return message_text(value[0])  # a field logged more than once: journalctl lists every value
    if isinstance(value, list) and all(isinstance(v, int) and 0 <= v < 256 for v in value):
        return decode_line(bytes(value))
    return None


def record_space(record: dict[str, Any]) -> str:
    """Return the record's sequence-number space (the `s=` id of its cursor), or "" if it has none."""
    cursor = record.get("__CURSOR")
    if isinstance(cursor, str):
        for part in cursor.split(";"):
            if part.startswith("s="):
                return part[2:]
    return ""


def record_offset(record: dict[str, Any]) -> int | None:
    """Return the record's unique key: its sequence number, else its realtime timestamp, else None."""
    seq = record.get("__SEQNUM")
    if isinstance(seq, str) and seq.isdigit():
        return int(seq)
    cursor = record.get("__CURSOR")
    if isinstance(cursor, str):
        for part in cursor.split(";"):
            if part.startswith("i="):
                try:
                    return int(part[2:], 16)
                except ValueError:
                    break
    ts = record.get("__REALTIME_TIMESTAMP")
    if isinstance(ts, str) and ts.isdigit():
        return int(ts)
    return None


class JournalFollower:
    """Follows `source.journal_unit`; see the module docstring. One caller at a time."""

    def __init__(
        self,
        source: SourceSettings,
        store: Store,
        *,
        decoder_factory: DecoderFactory = default_decoder,
        journalctl: str = "journalctl",
        restart_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert source.journal_unit is not None
        self.source = source
        self.name = source.name
        self.unit = source.journal_unit
        self.store = store
        self.more = False
        self.fp = journal_fingerprint(self.unit)
        self.label = f"journal:{self.unit}"
        self._journalctl = journalctl
        self._restart_seconds = restart_seconds
        self._clock = clock
        self._decoder_factory = decoder_factory
        self._decoder = decoder_factory(source)
        self.file_id = store.file_id(self.name, self.fp, self.label)
        self._space_ids: dict[str, int] = {}
        saved = store.checkpoint(self.name, self.fp)
        self._cursor = saved.cursor if saved else None  # committed
        self._count = saved.position if saved else 0  # committed
        self._read_cursor = self._cursor
        self._read_count = self._count
        self._proc: subprocess.Popen[bytes] | None = None
        self._buf = bytearray()
        self._discarding = False
        self._next_start = 0.0
        self._complained: set[str] = set()

    # --- the daemon's interface -------------------------------------------------------------------
    def watch_targets(self) -> dict[str, set[str]]:
        return {}

    def fileno(self) -> int | None:
        proc = self._proc
        return proc.stdout.fileno() if proc is not None and proc.stdout is not None else None

    def read(self, budget: int) -> list[Batch]:
        """Consume up to `budget` records already printed by journalctl; never blocks."""
        self.more = False
        if self._proc is None and not self._spawn():
            return []
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        self._drain_stderr()
        ended = self._fill(proc.stdout.fileno(), budget)
        batches: list[Batch] = []
        consumed = 0
        while consumed < budget:
            nl = self._buf.find(b"\n")
            if nl < 0:
                break
            raw = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            consumed += 1
            self._take(batches, raw)
        self.more = b"\n" in self._buf
        if ended and not self.more:
            self._ended(proc)
        if not batches:
            return []
        self._seal(batches[-1])
        return batches

    def _seal(self, batch: Batch) -> None:
        """Give `batch` the checkpoint of everything read so far, committed with it."""
        cursor, count = self._read_cursor, self._read_count
        batch.checkpoint = Checkpoint(self.name, self.fp, count, self.label, cursor=cursor)

        def committed() -> None:
            self._cursor, self._count = cursor, count

        batch.on_commit = committed

    def _file_id_for(self, space: str) -> int:
        """Rows are keyed by (file, sequence number); each sequence-number space of the journal (its
        `s=` id, new after a journal reset, e.g. every boot with volatile storage) is its own file, so
        a restarted numbering can never collide with rows already stored."""
        if not space:
            return self.file_id
        found = self._space_ids.get(space)
        if found is None:
            digest = hashlib.sha256(f"{self.unit}\0{space}".encode()).hexdigest()[:48]
            found = self._space_ids[space] = self.store.file_id(self.name, f"journal:{digest}", self.label)
        return found

    def rewind(self) -> None:
        """Drop what was read but not committed: restart journalctl from the committed cursor."""
        self._stop_process()
        self._read_cursor, self._read_count = self._cursor, self._count
        self._decoder = self._decoder_factory(self.source)
        self._next_start = 0.0

    def close(self) -> None:
        self._stop_process()

    # --- internals ---------------------------------------------------------------------------------
    def _take(self, batches: list[Batch], raw: bytes) -> None:
        cursor_before, count_before = self._read_cursor, self._read_count
        self._read_count += 1
        try:
            record = json.loads(raw)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError:
            batch = self._batch_for(batches, batches[-1].file_id if batches else self.file_id, None)
            batch.lines += 1
            batch.rejects.append((-self._read_count, "journal record is not JSON", decode_line(raw[:2000])))
            return
        file_id = self._file_id_for(record_space(record))
        batch = self._batch_for(batches, file_id, (cursor_before, count_before))
        batch.lines += 1
        cursor = record.get("__CURSOR")
        if isinstance(cursor, str):
            self._read_cursor = cursor
        offset = record_offset(record)
        if offset is None:
            offset = -self._read_count
        text = message_text(record.get("MESSAGE"))
        if text is None:
            batch.skipped += 1  # null MESSAGE: journalctl left out a field larger than its limit
            return
        text = text.rstrip("\n")
        if not text.strip():
            batch.skipped += 1
            return
        result = decode_safely(self._decoder, text)
        add_result(batch, offset, result if result is not None else Skip("held"), text)

    def _batch_for(self, batches: list[Batch], file_id: int, before: tuple[str | None, int] | None) -> Batch:
        """The batch for a record of `file_id`: the current one, or a new one when the sequence-number
        space changed (the current batch is then sealed at the state `before` this record)."""
        if batches and batches[-1].file_id == file_id:
            return batches[-1]
        if batches and before is not None:
            current = (self._read_cursor, self._read_count)
            self._read_cursor, self._read_count = before
            self._seal(batches[-1])
            self._read_cursor, self._read_count = current
        batch = Batch(self.name, file_id, Checkpoint(self.name, self.fp, 0, self.label))
        batches.append(batch)
        return batch

    def _fill(self, fd: int, budget: int) -> bool:
        """Read what journalctl has printed (without blocking); return True when it exited."""
        while self._buf.count(b"\n") < budget:
            try:
                data = os.read(fd, READ_BYTES)
            except BlockingIOError:
                return False
            except OSError:
                return True
            if not data:
                return True
            if self._discarding:
                nl = data.find(b"\n")
                if nl < 0:
                    continue
                data = data[nl + 1 :]
                self._discarding = False
            self._buf += data
            if len(self._buf) > MAX_RECORD_BYTES and b"\n" not in self._buf:
                log.warning("source %s: dropping a journal record over %d bytes", self.name, MAX_RECORD_BYTES)
                self._buf.clear()
                self._discarding = True
        return False

    def _command(self) -> list[str]:
        args = [self._journalctl, "-o", "json", "--follow", "-u", self.unit]
        if self._read_cursor:
            return [*args, f"--after-cursor={self._read_cursor}", "--no-tail"]
        return [*args, "--no-tail"]

    def _spawn(self) -> bool:
        now = self._clock()
        if now < self._next_start:
            return False
        self._next_start = now + self._restart_seconds
        try:
            if self._read_cursor is None and load_start(self.store, self.name) is None:
                self._first_start()
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                close_fds=True,
            )
        except OSError as exc:
            self._complain(
                "spawn", f"source {self.name}: cannot run {self._journalctl}: {exc.strerror or exc}"
            )
            return False
        assert self._proc.stdout is not None and self._proc.stderr is not None
        os.set_blocking(self._proc.stdout.fileno(), False)
        os.set_blocking(self._proc.stderr.fileno(), False)
        self._complained.discard("spawn")
        log.info("source %s: following the journal of %s", self.name, self.unit)
        return True

    def _first_start(self) -> None:
        record = new_start_record()
        if self.source.start_at == "end":
            cursor = self._last_cursor()
            if cursor is not None:
                # Saved at once with no rows: a crash before the first new record still resumes here.
                self.store.add_batch(
                    self.name,
                    self.file_id,
                    [],
                    checkpoint=Checkpoint(self.name, self.fp, 0, self.label, cursor=cursor),
                )
                self._cursor = self._read_cursor = cursor
            record.cursor = cursor
            log.info(
                'source %s: first start, following the journal of %s from its newest record (start_at = "end"); '
                'older records are not read (set start_at = "beginning" before the first start to read them)',
                self.name,
                self.unit,
            )
        else:
            log.info("source %s: first start, reading the whole journal of %s", self.name, self.unit)
        save_start(self.store, self.name, record)

    def _last_cursor(self) -> str | None:
        try:
            done = subprocess.run(
                [self._journalctl, "-o", "json", "-n", "1", "-u", self.unit, "--no-pager"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise OSError(f"cannot query the journal: {exc}") from None
        for raw in reversed(done.stdout.splitlines()):
            try:
                cursor = json.loads(raw).get("__CURSOR")
            except (ValueError, AttributeError):
                continue
            if isinstance(cursor, str):
                return cursor
        return None

    def _drain_stderr(self) -> None:
        proc = self._proc
        if proc is None or proc.stderr is None:
            return
        try:
            data = os.read(proc.stderr.fileno(), 65536)
        except (BlockingIOError, OSError):
            return
        for line in decode_line(data).splitlines():
            if line.strip():
                log.warning("source %s: journalctl: %s", self.name, line.strip()[:500])

    def _ended(self, proc: subprocess.Popen[bytes]) -> None:
        self._drain_stderr()
        code = proc.poll()
        if code is None:
            try:
                code = proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                code = None
        log.warning(
            "source %s: journalctl exited (status %s); restarting it in %.0f s",
            self.name,
            code,
            self._restart_seconds,
        )
        self._stop_process()

    def _stop_process(self) -> None:
        proc, self._proc = self._proc, None
        self._buf.clear()
        self._discarding = False
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    def _complain(self, key: str, message: str) -> None:
        if key not in self._complained:
            self._complained.add(key)
            log.warning("%s", message)
