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

import os
import re
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from monitor import parsers
from monitor.config import Settings, SourceSettings, tzinfo_for
from monitor.core.errors import SourceError
from monitor.core.records import Reject, Request
from monitor.ingest.job import (
    BATCH_LINES,
    PIPELINE_MIN_BYTES,
    FileReport,
    ParseJob,
    Progress,
    _bytes_left,
    _Committer,
    _guard_binary,
    open_log,
    read_error,
    run_inline,
)
from monitor.parsers.decoder import LineDecoder
from monitor.sources import lines as L
from monitor.sources.base import resume_position

if TYPE_CHECKING:
    from monitor.store import Store


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


STDIN_SOURCE = "stdin"


@dataclass(frozen=True)
class FilePlan:
    """How one file given to `check` or `ingest` is read: the source name its rows are stored under,
    its format, and the parse context of the configured source it belongs to (if any)."""

    name: str
    format: str
    context: parsers.ParseContext


def plan_file(
    settings: Settings | None,
    path: Path,
    *,
    source_name: str | None = None,
    fmt: str | None = None,
) -> FilePlan:
    """Decide a file's source name, format and context: what the options say, else the configured
    source whose path (or a rotated sibling's) matches, else the file's own name and `auto`.
    `settings` None is standard input: no configured source, named `stdin`."""
    source = None if settings is None else source_for_path(settings, path)
    default = STDIN_SOURCE if settings is None else default_source_name(path)
    name = source_name or (source.name if source else default)
    return FilePlan(name, fmt or (source.format if source else "auto"), context_for(source))


def default_source_name(path: Path) -> str:
    """access.log, access.log.1, access.log.2.gz, access.log-20250101 -> 'access'."""
    name = path.name.removesuffix(".gz")
    name = re.sub(r"[.-]\d+$", "", name)
    return name.removesuffix(".log") or "ingest"


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
            from monitor.ingest.worker import run_piped  # a process of its own: only for big files

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
