"""`ollama-monitor summary`: the weekly usage report as text, Markdown, HTML or JSON, and its delivery.

pandas and apprise are imported inside the command, so other commands never pay for them.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from monitor.cli.common import Env, pass_env

FORMATS = ("text", "markdown", "html", "json")


@click.command("summary")
@click.option(
    "--since",
    metavar="DATE",
    help="First day of the period, from midnight UTC: YYYY-MM-DD, or -Nd for N days ago (the weekly timer "
    "runs `--since -7d` early on Mondays). Default: the DAYS x 24 hours up to now.",
)
@click.option(
    "--days",
    type=click.IntRange(1, 366),
    default=None,
    metavar="N",
    help="Length of the period in days (default: [summary] days, 7).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="Output format. Default: text on the terminal; with --output, the file's extension "
    "(.txt .md .html .json) or [summary] format.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="Write the summary to FILE (atomically) instead of standard output.",
)
@click.option(
    "--send",
    is_flag=True,
    help="Deliver through apprise ([alerts] urls): HTML with charts by email, a short text digest to chat.",
)
@pass_env
def summary(
    env: Env, since: str | None, days: int | None, fmt: str | None, output: Path | None, send: bool
) -> None:
    """Summarise who used the server, how much, and what looked wrong (by default over the last 7 days).

    Per source: status (admin, known, approved, unknown), friendly name, requests, inference,
    enumeration and management calls, error rate, p50/p95 latency, bytes, active hours, first and last
    seen. Then totals with the change on the previous period, activity per day and hour (UTC), the
    busiest endpoints, new sources, every alert of the period and the detector's state.

    Exit status: 0, or 1 when --send could not deliver to every target.
    """
    from monitor.reports.summary import build as summary_mod
    from monitor.reports.summary.render import render, text_renderables

    settings = env.settings
    first_day = summary_mod.parse_since(since, datetime.now(UTC).date()) if since else None
    start, end = summary_mod.period(days or settings.summary.days, first_day)
    store = env.open_store()
    try:
        result = summary_mod.build(store, settings, start, end)
    finally:
        store.close()

    if output is not None:
        from monitor.reports.summary.output import format_for, write_atomically

        chosen = format_for(output, fmt, settings.summary.format)
        write_atomically(output, render(result, chosen))
        env.err.print(f"wrote the {chosen} summary to {output}", markup=False, highlight=False)
    elif not send or fmt is not None:
        chosen = fmt or "text"
        if chosen == "text":
            for item in text_renderables(result):
                env.out.print(item)
        else:
            env.out.print(
                render(result, chosen), markup=False, highlight=False, emoji=False, soft_wrap=True, end=""
            )

    if send:
        from monitor.reports.summary.send import send as deliver

        report = deliver(result, settings.alerts)
        for name in report.delivered:
            env.err.print(f"sent the summary to {name}", markup=False, highlight=False)
        for name in report.failed:
            env.err.print(
                f"ollama-monitor: error: could not send the summary to {name}", markup=False, highlight=False
            )
        if report.failed:
            sys.exit(1)


COMMANDS = [summary]
