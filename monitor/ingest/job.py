"""The backfill job's moving parts, shared by `ingest` and its parse worker process: opening a log
(plain or gzip, regular files only), reading it in batches of parsed lines through the one line reader
(`monitor.sources.lines`), and committing each batch with its checkpoint (exactly once).

`monitor.ingest.backfill` drives them in this process; `monitor.ingest.worker` runs `read_batches` in a
second process and pipes the batches back. Neither imports the other's driver."""

from __future__ import annotations

import gzip
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from monitor import parsers
from monitor.core.errors import SourceError
from monitor.core.records import Checkpoint, Reject, Request
from monitor.parsers.decoder import LineDecoder
from monitor.sources import lines as L
from monitor.store.rows import SqliteRows

if TYPE_CHECKING:
    from monitor.store import Store

BATCH_LINES = 50_000
# Starting the parse worker costs about 0.4 s (a fresh interpreter importing the parsers) and saves
# about 10 µs a line, so it pays from roughly 40,000 lines (4 MB); 8 MiB leaves a margin.
PIPELINE_MIN_BYTES = 8 * 1024 * 1024

Progress = Callable[[int], None]  # called with bytes read since the last call


def open_log(path: Path) -> L.PlainFile | L.GzipFile:
    """Open a log for reading (gzip decompressed), never blocking; raise SourceError with a clear message.

    Only regular files are read: a FIFO, a device or a socket at the path is refused without waiting
    for a writer (open() on a FIFO blocks until one comes). Standard input is not a path: `check -` and
    `ingest -` spool it to a private temporary file first.
    """
    try:
        return L.open_file(str(path))
    except L.NotRegularFile as exc:
        raise SourceError(f"{path}: is {exc.kind}, not a regular log file; not read") from None
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except PermissionError:
        raise SourceError(
            f"{path}: permission denied", hint="run as a user that can read it (e.g. in the adm group)"
        ) from None
    except IsADirectoryError:
        raise SourceError(f"{path}: is a directory, not a log file") from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise SourceError(read_error(path, exc)) from None


def read_error(name: object, exc: BaseException) -> str:
    """One line for a file that failed while being read: a damaged .gz says so."""
    if isinstance(exc, (zlib.error, EOFError, gzip.BadGzipFile)):
        return f"{name}: cannot read: corrupt compressed data ({exc})"
    return f"{name}: cannot read: {exc}"


def looks_binary(head: bytes) -> bool:
    """True when the start of a (decompressed) file is not text: an executable, an image, a database.

    NUL bytes alone do not decide it: a crashed or preallocating log writer leaves runs of them in a
    text log, and the lines around them must still be read. What is left once NULs are removed must
    be mostly text: control bytes other than tab, CR, LF and ESC in more than 1 of 8 bytes is binary.
    """
    rest = head.replace(b"\0", b"")
    if not rest:
        return False
    controls = sum(rest.count(bytes([c])) for c in _BINARY_CONTROLS)
    return controls * 8 > len(rest)


_BINARY_CONTROLS = [c for c in range(32) if c not in (9, 10, 13, 27)] + [127]


@dataclass
class FileReport:
    """What happened to one file in `check` or `ingest`."""

    path: str
    source: str = ""
    format: str | None = None
    lines: int = 0
    parsed: int = 0
    skipped: int = 0
    rejected: int = 0
    inserted: int = 0
    duplicates: int = 0
    resumed_at: int = 0  # bytes skipped because a checkpoint said they were stored already
    bytes_read: int = 0
    seconds: float = 0.0
    reasons: Counter[str] = field(default_factory=Counter)
    reject_samples: list[tuple[int, str, str]] = field(default_factory=list)  # (line number, reason, line)
    error: str | None = None
    partial_tail: bool = False  # the last line had no newline and was left for later
    nul_lines: int = 0  # lines read after stripping NUL bytes (a crashed writer's leftovers)
    parse_worker: bool = False  # parsed by a worker process while this one stored

    @property
    def lines_per_second(self) -> float:
        return self.lines / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class ParseJob:
    """What a reader needs to parse one file from a position into batches for one source."""

    path: Path
    position: int
    fmt: str
    ctx: parsers.ParseContext | None
    source: str
    file_id: int
    batch_lines: int
    final: bool  # a gzip file is complete; a plain file may have a line still being written


@dataclass
class Batch:
    """Consecutive lines of a file, parsed; `position` is the offset after the last of them."""

    parsed: list[tuple[int, Request]] | SqliteRows
    rejects: list[tuple[int, str, str]]
    skipped: int
    position: int
    lines: int
    nul_lines: int = 0  # lines that had NUL bytes stripped


@dataclass(frozen=True)
class ReadOutcome:
    format: str | None
    position: int
    partial_tail: bool


def read_batches(reader: L.Readable, decoder: LineDecoder, job: ParseJob) -> Iterator[Batch]:
    """Parse the file open in `reader` from `job.position` into batches of about `job.batch_lines`
    lines (the follower's line reader and decoding rule: `monitor.sources.lines`)."""
    parsed: list[tuple[int, Request]] = []
    rejects: list[tuple[int, str, str]] = []
    skipped = lines = nul_lines = 0
    position = job.position
    decode_raw, limit = L.decode_raw, job.batch_lines
    while True:
        chunk, after = L.read_lines(reader, position, max_lines=L.READ_LINES, final=job.final)
        if not chunk:
            break
        last = len(chunk) - 1
        for index, line in enumerate(chunk):
            lines += 1
            result, text, nul = decode_raw(decoder, line)
            if nul:
                nul_lines += 1
            if isinstance(result, Request):
                parsed.append((line[0], result))
            elif isinstance(result, Reject):
                rejects.append((line[0], result.reason, text[:2000]))
            else:
                skipped += 1
            # Never end a batch between the parts of a split Docker record: they would be lost.
            if lines >= limit and not decoder.holding:
                end = after if index == last else chunk[index + 1][0]
                yield Batch(parsed, rejects, skipped, end, lines, nul_lines)
                parsed, rejects, skipped, lines, nul_lines = [], [], 0, 0, 0
        position = after
    if lines:
        yield Batch(parsed, rejects, skipped, position, lines, nul_lines)


def run_inline(job: ParseJob, committer: _Committer, progress: Progress | None) -> ReadOutcome:
    """Read, parse and store in this process."""
    decoder = LineDecoder(job.fmt, job.ctx)
    position = job.position
    reader = open_log(job.path)
    try:
        for batch in read_batches(reader, decoder, job):
            committer.submit(batch)
            if progress:
                progress(batch.position - position)
            position = batch.position
        partial = False if job.final else has_partial_tail(reader, position)
    finally:
        reader.close()
    return ReadOutcome(decoder.detected, position, partial)


class _Committer:
    """Commits the batches of one file, each with the checkpoint that covers it, and counts them."""

    def __init__(
        self, store: Store, report: FileReport, source: str, file_id: int, fp: str, path: str
    ) -> None:
        self.store, self.report = store, report
        self.source, self.file_id, self.fp, self.path = source, file_id, fp, path

    def submit(self, batch: Batch) -> None:
        checkpoint = Checkpoint(self.source, self.fp, batch.position, self.path)
        result = self.store.add_batch(
            self.source, self.file_id, batch.parsed, batch.rejects, checkpoint, skipped=batch.skipped
        )
        report = self.report
        report.lines += batch.lines
        report.parsed += len(batch.parsed)
        report.rejected += len(batch.rejects)
        for _offset, reason, _line in batch.rejects:
            report.reasons[reason] += 1
        report.skipped += batch.skipped
        report.nul_lines += batch.nul_lines
        report.inserted += result.inserted
        report.duplicates += result.duplicates


def _bytes_left(path: Path, position: int, gz: bool) -> int:
    size = path.stat().st_size
    # Positions in a gzip file are in its text, which is some 8 times (or more) its compressed size.
    return size * 8 - position if gz else size - position


def has_partial_tail(reader: L.Readable, position: int) -> bool:
    """True when a plain file holds bytes after `position` (an unfinished last line)."""
    return isinstance(reader, L.PlainFile) and reader.size() > position


def _guard_binary(reader: L.Readable, name: str) -> None:
    if looks_binary(reader.read_at(0, 8192)):
        raise SourceError(f"{name}: looks like a binary file, not a text log; skipped")
