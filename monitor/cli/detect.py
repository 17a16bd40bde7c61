"""`ollama-monitor train`, `ollama-monitor score` and `ollama-monitor replay`."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from monitor.cli.common import Env, pass_env
from monitor.config import FORMATS, Settings, SourceSettings
from monitor.core.errors import ModelError, MonitorError, SourceError
from monitor.core.records import Alert, Notification


class _Silent:
    """A dispatcher that notifies nobody (for `train`, which only computes windows)."""

    def submit(self, alerts: list[Alert], now: datetime) -> list[Notification]:
        return []

    def flush(self, now: datetime) -> list[Notification]:
        return []


def _known(settings: Settings, store: Any) -> Any:
    from monitor.detect.known import KnownSources

    return KnownSources(settings.known, [a["network"] for a in store.approvals()])


@click.command("train")
@click.option("--json", "as_json", is_flag=True, help="Print the model metadata as JSON.")
@click.option(
    "--rebuild-windows",
    is_flag=True,
    help="Delete the history's per-window features and compute them again from the stored requests.",
)
@pass_env
def train(env: Env, as_json: bool, rebuild_windows: bool) -> None:
    """Train the anomaly detector on the stored history and save it in [detector] model_dir.

    Uses the `history_days` before the newest stored request, so that it also works on logs ingested
    with `ollama-monitor ingest`. Computes only the windows that are missing (or received requests
    since they were computed) before training. With fewer than `min_windows` windows it trains nothing
    and says why (the daemon runs on rules only until then).
    """
    from monitor.detect.pipeline import Pipeline
    from monitor.detect.windows import GRACE, floor_time
    from monitor.store import detect_queries as q

    settings = env.settings
    store = env.open_store()
    try:
        _lo, hi = q.request_span(store)
        if hi is None:
            raise MonitorError(
                "no requests stored yet", hint="run the daemon, or `ollama-monitor ingest LOG...` first"
            )
        pipeline = Pipeline(settings, store, _Silent(), _known(settings, store))
        window = timedelta(minutes=settings.detector.window_minutes)
        # The end of the newest window, plus the grace a window gets for late lines: it is included too.
        now = floor_time(hi, window) + window + GRACE
        meta = pipeline.train(now, rebuild=rebuild_windows)
    finally:
        store.close()
    if meta is None:
        env.out.print(f"not trained: {pipeline.status['reason']}", markup=False)
        return
    if as_json:
        env.out.print_json(json.dumps(meta, default=str))
        return
    where = f"saved in {settings.detector.model_dir}" if meta.get("saved", True) else "NOT saved"
    env.out.print(
        f"trained on {meta['rows']} windows ({meta['training_window']['start']} to "
        f"{meta['training_window']['end']}); threshold {meta['threshold']:.4f}; {where}",
        markup=False,
    )
    for warning in meta.get("warnings", []):
        env.err.print(f"ollama-monitor: warning: {warning}", markup=False)
    if not meta.get("saved", True):
        sys.exit(ModelError.exit_code)


@click.command("score")
@click.option(
    "--window",
    "window_start",
    metavar="START",
    help="Window start (ISO time, UTC), e.g. 2026-03-09T03:00. Default: the newest windows.",
)
@click.option("--count", default=3, show_default=True, help="How many of the newest windows to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_env
def score(env: Env, window_start: str | None, count: int, as_json: bool) -> None:
    """Score windows with the saved model: per source, the score, the verdict and why."""
    from monitor.detect import model as dm
    from monitor.detect.scoring import score_recent
    from monitor.detect.windows import floor_time
    from monitor.store import detect_queries as q

    settings = env.settings
    model, meta = dm.load(settings.detector.model_dir)
    window = timedelta(minutes=settings.detector.window_minutes)
    store = env.open_store()
    try:
        known = _known(settings, store)
        if window_start:
            try:
                start = datetime.fromisoformat(window_start)
            except ValueError:
                raise MonitorError(
                    f"--window: not an ISO time: {window_start!r}", hint="e.g. 2026-03-09T03:00"
                ) from None
            start = floor_time(start if start.tzinfo else start.replace(tzinfo=UTC), window)
            starts = [start]
        else:
            _lo, hi = q.request_span(store)
            if hi is None:
                raise MonitorError("no requests stored yet")
            last = floor_time(hi, window)
            starts = [last - i * window for i in range(max(1, count))][::-1]
        rows = score_recent(store, settings, model, starts)
    finally:
        store.close()
    for r in rows:
        r["status"] = known.status(r["client_ip"]).value
    if as_json:
        env.out.print_json(json.dumps({"threshold": meta.get("threshold"), "windows": rows}))
        return
    if not rows:
        env.out.print("no requests in the chosen window(s)", markup=False)
        return
    table = Table("window (UTC)", "source", "status", "requests", "score", "verdict", "why")
    for r in rows:
        table.add_row(
            r["window_start"][:16],
            r["client_ip"],
            r["status"],
            f"{r['requests']:,}",
            f"{r['score']:.3f}",
            "ANOMALY" if r["anomalous"] else "ok",
            r["explanation"] if r["anomalous"] else "",
        )
    env.out.print(table)
    env.out.print(f"threshold {meta.get('threshold'):.4f} (lower scores are stranger)", markup=False)


@click.command("replay")
@click.argument("logs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="Log format (default: the matching source's, else auto-detected).",
)
@click.option(
    "--json-out",
    type=click.Path(path_type=Path),
    help="Write every notification as a JSON line here ('-': stdout).",
)
@click.option("--send", is_flag=True, help="Really send the notifications (default: only show them).")
@click.option(
    "--db", "db_url", metavar="URL", help="Database to replay into (default: a temporary SQLite file)."
)
@click.option(
    "--model-dir",
    type=click.Path(path_type=Path),
    help="Where models trained during the replay go (default: temporary).",
)
@pass_env
def replay(
    env: Env,
    logs: tuple[Path, ...],
    fmt: str | None,
    json_out: Path | None,
    send: bool,
    db_url: str | None,
    model_dir: Path | None,
) -> None:
    """Run the daemon's pipeline over historical LOGS, the clock taken from the log lines.

    The same rules, cooldowns, digests and training schedule as live; every notification it would have
    sent is listed (and written as JSON lines with --json-out). Nothing is sent without --send.
    """
    with tempfile.TemporaryDirectory(prefix="ollama-monitor-replay-") as tmp:
        notes, summary = run_replay(
            env.settings,
            logs,
            fmt=fmt,
            db_url=db_url or f"sqlite:///{tmp}/replay.db",
            model_dir=model_dir or Path(tmp) / "models",
            send=send,
        )
    lines = [json.dumps(_note_json(n)) for n in notes]
    if json_out is not None:
        if str(json_out) == "-":
            sys.stdout.write("".join(line + "\n" for line in lines))
        else:
            json_out.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    out = env.err if json_out is not None and str(json_out) == "-" else env.out
    if json_out is None:
        for n in notes:
            out.print(f"{_note_json(n)['ts']}  {n.severity.value:8} {n.rule:20} {n.title}", markup=False)
    by_rule = Counter(n.rule for n in notes)
    out.print(
        f"replayed {summary['requests']:,} requests from {len(logs)} file(s) in {summary['seconds']:.1f} s: "
        f"{len(notes)} notification(s)"
        + (f" ({', '.join(f'{r} {c}' for r, c in sorted(by_rule.items()))})" if notes else ""),
        markup=False,
    )
    out.print(f"detector: {summary['status']['detector']} ({summary['status']['reason']})", markup=False)
    if send:
        _report_sent(env, summary, kept=db_url)


def _report_sent(env: Env, summary: dict[str, Any], *, kept: str | None) -> None:
    """Say what `replay --send` delivered and what not; exit 1 when something was not delivered (it
    stays queued in the --db database, or is dropped with the temporary one: said plainly)."""
    queued, undelivered = summary.get("queued", 0), summary.get("undelivered", 0)
    env.out.print(f"sent: {queued - undelivered} of {queued} deliveries", markup=False)
    if not undelivered:
        return
    if kept:
        where = "they stay queued in the --db database; `ollama-monitor alerts retry` with that database sends them"
    else:
        where = "they are DROPPED with the temporary database (give --db to keep them for `alerts retry`)"
    env.err.print(
        f"ollama-monitor: error: {undelivered} of {queued} deliveries failed: {where}", markup=False
    )
    sys.exit(1)


def _note_json(n: Notification) -> dict[str, Any]:
    from monitor.detect.replay import notification_json

    return notification_json(n)


def run_replay(
    settings: Settings,
    logs: tuple[Path, ...] | list[Path],
    *,
    fmt: str | None,
    db_url: str,
    model_dir: Path,
    send: bool = False,
) -> tuple[list[Notification], dict[str, Any]]:
    """Ingest LOGS into the store at db_url and drive the pipeline over them; return (notifications, summary)."""
    from monitor.alerts.dispatch import Dispatcher
    from monitor.detect.pipeline import Pipeline
    from monitor.detect.replay import drive_store
    from monitor.ingest.backfill import context_for, ingest_file, source_for_path
    from monitor.store import Store

    started = time.perf_counter()
    store = Store.open(db_url)
    try:
        replay_sources: list[SourceSettings] = []
        for path in logs:
            if not path.is_file():
                raise SourceError(f"{path}: no such log file")
            src = source_for_path(settings, path)
            name = src.name if src else f"replay:{path.name}"
            report = ingest_file(store, path, name, fmt or (src.format if src else "auto"), context_for(src))
            if report.error:
                raise SourceError(report.error)
            detected = report.format or (src.format if src else "auto")
            proxy = src.is_proxy if src else detected not in ("ollama", "auto")
            replay_sources.append(
                SourceSettings.model_validate(
                    {
                        "name": name,
                        "path": str(path),
                        "format": detected if detected in FORMATS else "auto",
                        "proxy": proxy,
                        "trusted_proxies": src.trusted_proxies if src else [],
                    }
                )
            )
        unique = {s.name: s for s in replay_sources}
        rsettings = settings.model_copy(
            update={
                "sources": list(unique.values()),
                "detector": settings.detector.model_copy(update={"model_dir": str(model_dir)}),
            }
        )
        dispatcher = Dispatcher(settings.alerts, store if send else None)
        pipeline = Pipeline(rsettings, store, dispatcher, _known(settings, store))
        notes = drive_store(pipeline, {s.name: s.is_proxy for s in unique.values()})
        summary: dict[str, Any] = {
            "requests": store.count_requests(),
            "status": dict(pipeline.status),
            "seconds": time.perf_counter() - started,
        }
        if send and dispatcher.outbox is not None:
            from monitor.store import outbox_queries as oq

            attempts = dispatcher.outbox.deliver()
            summary["sent"] = sum(1 for a in attempts if a.ok)
            summary["failed"] = sum(1 for a in attempts if not a.ok)
            # What a failing service did not get: every row of these notifications still queued,
            # not only the one attempt per service that failed (the rest were never tried).
            ids = {n.id for n in notes}
            rows = oq.rows(store, states=(oq.PENDING, oq.SENDING, oq.FAILED), limit=1_000_000)
            summary["undelivered"] = sum(1 for r in rows if r["notification_id"] in ids)
            summary["queued"] = sum(1 for r in oq.rows(store, limit=1_000_000) if r["notification_id"] in ids)
    finally:
        store.close()
    return notes, summary


COMMANDS = [train, score, replay]
