"""Whole-file reading for `check` (parse only) and `ingest` (backfill into the store).

A file is identified by the fingerprint of its first line, exactly as the live follower identifies it,
so `ingest access.log.1` after the daemon followed `access.log` resumes from the follower's checkpoint
instead of storing the same lines twice. Rotated `.gz` files are read transparently (positions are
offsets in the decompressed text, and the fingerprint of a compressed file is that of its content).

Bytes become text as UTF-8 with backslash escapes for invalid bytes, the rule every reader here
follows; a line longer than MAX_LINE_BYTES is kept as a reject, not parsed.
"""

from __future__ import annotations

import gzip
import io
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
from monitor.records import Checkpoint, ParseResult, Reject, Request, Skip
from monitor.sources.lines import (
    FINGERPRINT_BYTES,
    MAX_LINE_BYTES,
    decode_line,
    fingerprint_of,
    identity_prefix,
)
from monitor.store.rows import SqliteRows

if TYPE_CHECKING:
    from monitor.store import Store

BATCH_LINES = 50_000
# Starting the parse worker costs about 0.4 s (a fresh interpreter importing the parsers) and saves
# about 10 µs a line, so it pays from roughly 40,000 lines (4 MB); 8 MiB leaves a margin.
PIPELINE_MIN_BYTES = 8 * 1024 * 1024

Progress = Callable[[int], None]  # called with bytes read since the last call


def is_gzip(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def open_log(path: Path) -> IO[bytes]:
    """Open a log for binary reading, decompressing gzip; raise SourceError with a clear message."""
    try:
        if path.is_dir():
            raise SourceError(f"{path}: is a directory, not a log file")
        if is_gzip(path):
            return gzip.open(path, "rb")  # type: ignore[return-value]
        return path.open("rb", buffering=1024 * 1024)
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except PermissionError:
        raise SourceError(
            f"{path}: permission denied", hint="run as a user that can read it (e.g. in the adm group)"
        ) from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror}") from None


def file_fingerprint(path: Path) -> str | None:
    """Return the fingerprint of the file's first complete line, or None if it has none yet
    (the same identity the live follower uses, so the two share checkpoints)."""
    with open_log(path) as fh:
        try:
            head = fh.read(FINGERPRINT_BYTES)
        except (OSError, EOFError, zlib.error) as exc:
            raise SourceError(f"{path}: cannot read: {exc}") from None
    prefix = identity_prefix(head)
    return None if prefix is None else fingerprint_of(prefix)


def looks_binary(path: Path) -> bool:
    """True when the start of the (decompressed) file holds NUL bytes in most of its lines: not a log."""
    with open_log(path) as fh:
        try:
            head = fh.read(8192)
        except (zlib.error, EOFError, gzip.BadGzipFile) as exc:
            raise SourceError(f"{path}: corrupt compressed data ({exc})") from None
        except OSError:
            return True
    if not head:
        return False
    if b"\0" not in head:
        return False
    lines = head.split(b"\n")
    with_nul = sum(1 for line in lines if b"\0" in line)
    return with_nul * 2 >= len(lines) or head.count(b"\0") > len(head) // 8


def iter_lines(fh: IO[bytes], start: int = 0, *, final: bool = True) -> Iterator[tuple[int, bytes, int]]:
    """Yield (offset, raw line without its newline, offset of the next line) from byte `start`.

    With final=False a last line without a newline is not yielded (a writer may still be on it).
    """
    if start:
        fh.seek(start)  # a gzip file seeks by decompressing: correct, and only paid once
    offset = start
    for raw in fh:
        end = offset + len(raw)
        if raw.endswith(b"\n"):
            line = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
        elif not final:
            return
        else:
            line = raw
        yield offset, line, end
        offset = end


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
        _guard_binary(path)
        decoder = LineDecoder(fmt, ctx)
        with open_log(path) as fh:
            for lineno, (_offset, raw, _end) in enumerate(iter_lines(fh), 1):
                report.lines += 1
                report.bytes_read += len(raw) + 1
                result = _decode(decoder, raw)
                if isinstance(result, Request):
                    report.parsed += 1
                elif isinstance(result, Skip) or result is None:
                    report.skipped += 1
                else:
                    report.rejected += 1
                    report.reasons[result.reason] += 1
                    if len(report.reject_samples) < keep_rejects:
                        report.reject_samples.append((lineno, result.reason, decode_line(raw[:2000])))
        report.format = decoder.detected
    except SourceError as exc:
        report.error = str(exc)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        report.error = f"{path}: cannot read: {exc}"
    report.seconds = time.perf_counter() - start
    return report


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
        _guard_binary(path)
        fp = file_fingerprint(path)
        if fp is None:
            report.seconds = time.perf_counter() - start
            report.partial_tail = path.stat().st_size > 0
            return report
        file_id = store.file_id(source, fp, str(path))
        saved = store.checkpoint(source, fp)
        position = saved.position if saved else 0
        report.resumed_at = position
        gz = is_gzip(path)
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
        report.error = f"{path}: cannot read: {exc}"
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


@dataclass(frozen=True)
class ReadOutcome:
    format: str | None
    position: int
    partial_tail: bool


def read_batches(fh: IO[bytes], decoder: LineDecoder, job: ParseJob) -> Iterator[Batch]:
    """Parse the file open in `fh` from `job.position` into batches of about `job.batch_lines` lines."""
    parsed: list[tuple[int, Request]] = []
    rejects: list[tuple[int, str, str]] = []
    skipped = lines = 0
    position = job.position
    for offset, raw, end in iter_lines(fh, position, final=job.final):
        lines += 1
        if len(raw) > MAX_LINE_BYTES:
            result: ParseResult | None = Reject("line too long")
        else:
            result = _decode(decoder, raw)
        if isinstance(result, Request):
            parsed.append((offset, result))
        elif isinstance(result, Reject):
            rejects.append((offset, result.reason, decode_line(raw[:2000])))
        else:
            skipped += 1
        position = end
        # Never end a batch between the parts of a split Docker record: they would be lost.
        if lines >= job.batch_lines and not decoder.holding:
            yield Batch(parsed, rejects, skipped, position, lines)
            parsed, rejects, skipped, lines = [], [], 0, 0
    if lines:
        yield Batch(parsed, rejects, skipped, position, lines)


def run_inline(job: ParseJob, committer: _Committer, progress: Progress | None) -> ReadOutcome:
    """Read, parse and store in this process."""
    decoder = LineDecoder(job.fmt, job.ctx)
    position = job.position
    with open_log(job.path) as fh:
        for batch in read_batches(fh, decoder, job):
            committer.submit(batch)
            if progress:
                progress(batch.position - position)
            position = batch.position
        partial = False if job.final else has_partial_tail(fh, position)
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
        report.inserted += result.inserted
        report.duplicates += result.duplicates


def _bytes_left(path: Path, position: int, gz: bool) -> int:
    size = path.stat().st_size
    # Positions in a gzip file are in its text, which is some 8 times (or more) its compressed size.
    return size * 8 - position if gz else size - position


def has_partial_tail(fh: IO[bytes], position: int) -> bool:
    try:
        fh.seek(0, io.SEEK_END)
        return fh.tell() > position
    except OSError:
        return False


def _decode(decoder: LineDecoder, raw: bytes) -> ParseResult | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", "backslashreplace")
    return decoder.decode(text)


def _guard_binary(path: Path) -> None:
    if looks_binary(path):
        raise SourceError(f"{path}: looks like a binary file (NUL bytes), not a text log; skipped")
