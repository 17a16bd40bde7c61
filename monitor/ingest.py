"""Whole-file reading for `check` (parse only) and `ingest` (backfill into the store).

A file is identified by the fingerprint of its first lines, exactly as the live follower identifies it,
so `ingest access.log.1` after the daemon followed `access.log` resumes from the follower's checkpoint
instead of storing the same lines twice. Rotated `.gz` files are read transparently (positions are
offsets in the decompressed text, and the fingerprint of a compressed file is that of its content).

Lines are read and decoded by the live follower's own code (`monitor.sources.lines`): the same
splitting, the same text (UTF-8 with backslash escapes for invalid bytes, NUL bytes stripped), a line
longer than MAX_LINE_BYTES or one the decoder raises on kept as a reject. Only regular files are read:
a FIFO or a device at the path is refused without blocking.
"""

from __future__ import annotations

import gzip
import os
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from monitor import parsers
from monitor.config import Settings, SourceSettings, tzinfo_for
from monitor.errors import SourceError
from monitor.parsers.decoder import LineDecoder
from monitor.records import Checkpoint, Reject, Request
from monitor.sources import lines as L
from monitor.sources.base import resume_position
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
    for a writer (open() on a FIFO blocks until one comes). Standard input is a stream, not a path:
    read it with `check_stream`.
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


def file_fingerprint(path: Path) -> str | None:
    """Return the fingerprint of the file's first complete lines, or None if it has none yet
    (the same identity the live follower uses, so the two share checkpoints)."""
    reader = open_log(path)
    try:
        head = L.read_head(reader)
        complete = isinstance(reader, L.GzipFile)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise SourceError(read_error(path, exc)) from None
    finally:
        reader.close()
    prefix = L.identity_prefix(head, complete=complete)
    return None if prefix is None else L.fingerprint_of(prefix)


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


def context_for(source: SourceSettings | None) -> parsers.ParseContext:
    if source is None:
        return parsers.ParseContext()
    return parsers.ParseContext.build(
        tz=tzinfo_for(source.timezone),
        trusted_proxies=source.trusted_proxies,
        json_fields=source.json_fields.model_dump(),
    )


def source_for_path(settings: Settings, path: Path) -> SourceSettings | None:
    """Return the configured source a file belongs to: its path, or a rotated sibling of it."""
    resolved = _resolved(path)
    best: SourceSettings | None = None
    for src in settings.sources:
        if not src.path:
            continue
        base = _resolved(Path(src.path))
        related = resolved == base or resolved.startswith((base + ".", base + "-"))
        if related and (best is None or len(str(best.path)) < len(base)):
            best = src
    return best


def _resolved(path: Path) -> str:
    """The real path, or the absolute one for a symlink loop (Python 3.11's resolve() raises
    RuntimeError there): a configured source that loops must not break every `check` and `ingest`."""
    try:
        return str(path.resolve())
    except (OSError, RuntimeError):
        return os.path.abspath(path)


def check_file(
    path: Path, fmt: str = "auto", ctx: parsers.ParseContext | None = None, keep_rejects: int = 50
) -> FileReport:
    """Parse a file without storing anything; count outcomes like fail2ban-regex."""
    report = FileReport(path=str(path))
    start = time.perf_counter()
    try:
        reader = open_log(path)
        try:
            _check_lines(reader, report, fmt, ctx, keep_rejects)
        finally:
            reader.close()
    except SourceError as exc:
        report.error = str(exc)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        report.error = read_error(path, exc)
    report.seconds = time.perf_counter() - start
    return report


def check_stream(
    stream: IO[bytes],
    name: str = "-",
    fmt: str = "auto",
    ctx: parsers.ParseContext | None = None,
    keep_rejects: int = 50,
) -> FileReport:
    """`check_file` for an open binary stream (standard input, a pipe): read to its end, store nothing."""
    report = FileReport(path=name)
    start = time.perf_counter()
    try:
        _check_lines(L.StreamFile(stream), report, fmt, ctx, keep_rejects)
    except SourceError as exc:
        report.error = str(exc)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        report.error = read_error(name, exc)
    report.seconds = time.perf_counter() - start
    return report


def _check_lines(
    reader: L.Readable, report: FileReport, fmt: str, ctx: parsers.ParseContext | None, keep_rejects: int
) -> None:
    _guard_binary(reader, report.path)
    decoder = LineDecoder(fmt, ctx)
    previous = 0
    for lineno, (line, end) in enumerate(L.iter_lines(reader, 0, final=True), 1):
        report.lines += 1
        report.bytes_read += end - previous
        previous = end
        result, text, nul = L.decode_raw(decoder, line)
        report.nul_lines += nul
        if isinstance(result, Request):
            report.parsed += 1
        elif isinstance(result, Reject):
            report.rejected += 1
            report.reasons[result.reason] += 1
            if len(report.reject_samples) < keep_rejects:
                report.reject_samples.append((lineno, result.reason, text[:2000]))
        else:
            report.skipped += 1
    report.format = decoder.detected


def ingest_file(
    store: Store,
    path: Path,
    source: str,
    fmt: str = "auto",
    ctx: parsers.ParseContext | None = None,
    *,
    batch_lines: int = BATCH_LINES,
    progress: Progress | None = None,
    pipeline_min_bytes: int = PIPELINE_MIN_BYTES,
) -> FileReport:
    """Store every request of a file, resuming from its checkpoint; idempotent and never fatal per line.

    Each batch of rows commits with the checkpoint that covers it, so an interrupted ingest resumes
    where it stopped. On SQLite, a file with at least `pipeline_min_bytes` left to read is parsed by a
    worker process one batch ahead of this one's inserts (two cores instead of one).
    """
    report = FileReport(path=str(path), source=source)
    start = time.perf_counter()
    try:
        reader = open_log(path)
        try:
            _guard_binary(reader, str(path))
            gz = isinstance(reader, L.GzipFile)
            prefix = L.identity_prefix(L.read_head(reader), complete=gz)
            size = reader.size() if isinstance(reader, L.PlainFile) else None
        finally:
            reader.close()
        if prefix is None:  # too little in complete lines to tell this file from another: later
            report.seconds = time.perf_counter() - start
            report.partial_tail = path.stat().st_size > 0
            return report
        fp = L.fingerprint_of(prefix)
        saved = resume_position(store, source, fp, prefix, str(path), size)
        file_id = store.file_id(source, fp, str(path))
        position = saved or 0
        report.resumed_at = position
        committer = _Committer(store, report, source, file_id, fp, str(path))
        job = ParseJob(path, position, fmt, ctx, source, file_id, batch_lines, gz)
        if store.is_sqlite and _bytes_left(path, position, gz) >= pipeline_min_bytes:
            from monitor.ingest_worker import run_piped  # a process of its own: only for big files

            outcome = run_piped(job, committer, progress)
        else:
            outcome = run_inline(job, committer, progress)
        report.format = outcome.format
        report.partial_tail = outcome.partial_tail
        position = outcome.position
        report.bytes_read = position - report.resumed_at
    except SourceError as exc:
        report.error = str(exc)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        report.error = read_error(path, exc)
    report.seconds = time.perf_counter() - start
    return report


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
