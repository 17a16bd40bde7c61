"""`ollama-monitor check` (parse without storing) and `ollama-monitor ingest` (backfill the store)."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

import click
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from monitor.cli.common import Env, pass_env
from monitor.config import FORMATS
from monitor.core.errors import SourceError
from monitor.core.sanitize import for_terminal
from monitor.ingest.backfill import (
    PIPELINE_MIN_BYTES,
    FileReport,
    check_file,
    ingest_file,
    plan_file,
)

format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="Log format (default: the matching source's format, else auto-detected per file).",
)


STDIN = Path("-")


@contextmanager
def _stdin_spooled(files: tuple[Path, ...]) -> Iterator[tuple[Path, ...]]:
    """Replace `-` in FILES by a private copy of standard input (read once, to its end), so that the
    file readers (gzip detection, fingerprint, resumable batches) work on it unchanged."""
    if STDIN not in files:
        yield files
        return
    with tempfile.TemporaryDirectory(prefix="ollama-monitor-stdin-") as tmp:
        spool = Path(tmp) / "stdin"
        with spool.open("wb") as out:
            shutil.copyfileobj(sys.stdin.buffer, out, 1024 * 1024)
        yield tuple(spool if p == STDIN else p for p in files)


@click.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, readable=False))
@format_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@click.option("--show-rejects", is_flag=True, help="List rejected lines, escaped for the terminal.")
@pass_env
def check(env: Env, files: tuple[Path, ...], fmt: str | None, as_json: bool, show_rejects: bool) -> None:
    """Parse log FILES without storing anything and report what was read (like fail2ban-regex).

    `-` reads standard input (`docker logs ollama 2>&1 | ollama-monitor check -`).
    Exit status: 0 when every file was read, 1 when one could not be read.
    """
    reports = []
    with _stdin_spooled(files) as paths:
        for given, path in zip(files, paths, strict=True):
            plan = plan_file(None if given == STDIN else env.settings, path, fmt=fmt)
            report = check_file(path, plan.format, plan.context)
            if given == STDIN:
                report.path = "-"
                report.error = report.error and report.error.replace(str(path), "-")
            reports.append(report)
    if as_json:
        env.print_json({"files": [_report_json(r, rejects=show_rejects) for r in reports]})
    else:
        for r in reports:
            _print_check(env, r, show_rejects)
    if any(r.error for r in reports):
        sys.exit(1)


@click.command("ingest")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, readable=False))
@format_option
@click.option(
    "--source",
    "source_name",
    metavar="NAME",
    help="Source name stored with each request "
    "(default: the configured source whose path matches, else the file name).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@click.option(
    "--serial",
    is_flag=True,
    help="Parse and store in this one process, on one core (by default a file of 8 MiB or more "
    "going into SQLite is parsed by a second process while this one stores).",
)
@pass_env
def ingest(
    env: Env,
    files: tuple[Path, ...],
    fmt: str | None,
    source_name: str | None,
    as_json: bool,
    serial: bool,
) -> None:
    """Backfill log FILES (plain or .gz) into the database. `-` reads standard input (source name
    "stdin" unless --source says otherwise).

    Idempotent: a line already stored is never stored again, and a file read before resumes where it
    stopped. Malformed lines are counted and kept as rejects. Exit status 1 when a file could not be read
    (66 when none of the files exists).
    """
    missing = [p for p in files if p != STDIN and not p.exists()]
    if len(missing) == len(files):
        # Fail before opening the database: a typo should not create one.
        raise SourceError(
            f"{missing[0]}: no such file" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    store = env.open_store()
    reports: list[FileReport] = []
    try:
        show_progress = env.err.is_terminal and not as_json
        with _progress(env, show_progress) as progress, _stdin_spooled(files) as paths:
            for given, path in zip(files, paths, strict=True):
                settings = None if given == STDIN else env.settings  # standard input: no configured source
                plan = plan_file(settings, path, source_name=source_name, fmt=fmt)
                task = None
                if progress is not None:
                    size = path.stat().st_size if path.is_file() else None
                    task = progress.add_task(str(path.name), total=size)
                    advance = _advancer(progress, task, path)
                else:
                    advance = None
                report = ingest_file(
                    store,
                    path,
                    plan.name,
                    plan.format,
                    plan.context,
                    progress=advance,
                    pipeline_min_bytes=sys.maxsize if serial else PIPELINE_MIN_BYTES,
                )
                if progress is not None and task is not None:
                    progress.update(task, completed=progress.tasks[task].total or 0)
                if given == STDIN:
                    report.path = "-"
                reports.append(report)
    finally:
        store.close()
    if as_json:
        env.print_json({"files": [_report_json(r) for r in reports]})
    else:
        for r in reports:
            _print_ingest(env, r)
    if any(r.error for r in reports):
        sys.exit(1)


def _progress(env: Env, enabled: bool) -> AbstractContextManager[Progress | None]:
    if not enabled:
        return nullcontext(None)
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=env.err,
        transient=True,
    )


def _advancer(progress: Progress, task: TaskID, path: Path) -> Callable[[int], None]:
    compressed = path.suffix == ".gz"

    def advance(nbytes: int) -> None:
        # .gz positions count decompressed bytes; the bar shows the compressed size, so it only moves at the end.
        if not compressed:
            progress.advance(task, nbytes)

    return advance


def _report_json(r: FileReport, rejects: bool = False) -> dict[str, object]:
    out: dict[str, object] = {
        "path": r.path,
        "format": r.format,
        "lines": r.lines,
        "parsed": r.parsed,
        "skipped": r.skipped,
        "rejected": r.rejected,
        "reject_reasons": dict(r.reasons),
        "seconds": round(r.seconds, 3),
        "lines_per_second": round(r.lines_per_second),
        "error": r.error,
    }
    if r.source:
        out.update(
            source=r.source,
            inserted=r.inserted,
            duplicates=r.duplicates,
            resumed_at=r.resumed_at,
            partial_tail=r.partial_tail,
            parse_worker=r.parse_worker,
        )
    if rejects:
        out["rejects"] = [{"line": n, "reason": reason, "text": text} for n, reason, text in r.reject_samples]
    return out


def _print_check(env: Env, r: FileReport, show_rejects: bool) -> None:
    out = env.out
    if r.error:
        env.err.print(f"ollama-monitor: error: {for_terminal(r.error)}", markup=False)
        return
    requestish = r.parsed + r.rejected
    rate = 100.0 * r.parsed / requestish if requestish else 100.0
    out.print(f"{for_terminal(r.path)}", markup=False, style="bold")
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_row("format", r.format or "(none detected)")
    table.add_row("lines read", f"{r.lines:,}")
    table.add_row("parsed", f"{r.parsed:,}  ({rate:.1f}% of request lines)")
    table.add_row("skipped", f"{r.skipped:,}  (not requests: startup, debug, other messages)")
    table.add_row("rejected", f"{r.rejected:,}")
    for reason, count in r.reasons.most_common():
        table.add_row("", f"{count:,}  {for_terminal(reason)}")
    table.add_row("speed", f"{r.lines_per_second:,.0f} lines/s")
    out.print(table)
    if show_rejects and r.reject_samples:
        out.print("rejected lines:", markup=False)
        for lineno, reason, text in r.reject_samples:
            out.print(f"  {lineno}: [{for_terminal(reason)}] {for_terminal(text)}", markup=False)
    elif r.rejected and not show_rejects:
        out.print("  (use --show-rejects to list them)", markup=False, style="dim")


def _print_ingest(env: Env, r: FileReport) -> None:
    if r.error:
        env.err.print(f"ollama-monitor: error: {for_terminal(r.error)}", markup=False)
        return
    resumed = f", resumed at byte {r.resumed_at:,}" if r.resumed_at else ""
    env.out.print(
        f"{for_terminal(r.path)}: {r.lines:,} lines -> {r.inserted:,} stored, {r.duplicates:,} already stored, "
        f"{r.skipped:,} skipped, {r.rejected:,} rejected (source {for_terminal(r.source)}, format "
        f"{r.format or 'none'}{resumed}) in {r.seconds:.1f}s, {r.lines_per_second:,.0f} lines/s",
        markup=False,
    )
    if r.partial_tail:
        env.out.print(
            "  note: the last line has no newline yet; it will be read once it is complete", markup=False
        )
    if r.lines == 0 and not r.resumed_at:
        env.out.print("  note: no complete lines in this file", markup=False)


COMMANDS = [check, ingest]
