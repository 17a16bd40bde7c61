"""`ollama-monitor train`, `ollama-monitor score` and `ollama-monitor replay`."""

from __future__ import annotations

import json
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from monitor.cli.common import Env, pass_env
from monitor.config import FORMATS
from monitor.core.errors import ModelError, MonitorError


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
    from monitor.detect.offline import train_history

    settings = env.settings
    trained = train_history(settings, env.open_store, rebuild=rebuild_windows)
    meta = trained.meta
    if meta is None:
        env.out.print(f"not trained: {trained.status['reason']}", markup=False)
        return
    if as_json:
        env.print_json(meta)
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
    from monitor.detect.offline import score_windows

    start = None
    if window_start:
        try:
            start = datetime.fromisoformat(window_start)
        except ValueError:
            raise MonitorError(
                f"--window: not an ISO time: {window_start!r}", hint="e.g. 2026-03-09T03:00"
            ) from None
    rows, meta = score_windows(env.settings, env.open_store, start=start, count=count)
    if as_json:
        env.print_json({"threshold": meta.get("threshold"), "windows": rows})
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
    from monitor.detect.replay import notification_json, run_replay

    notes, summary = run_replay(env.settings, logs, fmt=fmt, db_url=db_url, model_dir=model_dir, send=send)
    lines = [json.dumps(notification_json(n)) for n in notes]
    if json_out is not None:
        if str(json_out) == "-":
            sys.stdout.write("".join(line + "\n" for line in lines))
        else:
            json_out.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    out = env.err if json_out is not None and str(json_out) == "-" else env.out
    if json_out is None:
        for n in notes:
            out.print(
                f"{notification_json(n)['ts']}  {n.severity.value:8} {n.rule:20} {n.title}", markup=False
            )
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


COMMANDS = [train, score, replay]
