"""`ollama-monitor status [--json]`: is the daemon alive, how far has it read, what is pending.

The facts and the verdict come from `monitor.reports.status`; this module renders them and maps the
verdict to an exit status.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click
from rich.table import Table

from monitor.cli.common import Env, pass_env
from monitor.core.sanitize import for_terminal
from monitor.reports.status import DaemonState, Health, StatusReport, collect

# Exit statuses: 0 healthy (or nothing configured to follow), 2 stuck or crashed, 3 not running.
EXIT_STUCK = 2
EXIT_NOT_RUNNING = 3
EXIT_STATUS = {Health.OK: 0, Health.STUCK: EXIT_STUCK, Health.NOT_RUNNING: EXIT_NOT_RUNNING}


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_env
def status(env: Env, as_json: bool) -> None:
    """Show the daemon's health, each source's position and lag, the model and the outbox.

    Exit status: 0 running (or nothing to follow), 2 the daemon looks stuck or crashed, 3 not running.
    """
    settings = env.settings
    store = env.open_store()
    try:
        report = collect(store, settings, datetime.now(UTC))
    finally:
        store.close()
    if as_json:
        env.print_json(report.to_dict())
    else:
        _print(env, report)
    code = EXIT_STATUS[report.health]
    if code:
        sys.exit(code)


_COLOUR = {
    DaemonState.RUNNING: "green",
    DaemonState.STUCK: "red",
    DaemonState.STOPPED: "yellow",
    DaemonState.NEVER_RUN: "yellow",
}


def _print(env: Env, report: StatusReport) -> None:
    out = env.out
    d = report.daemon
    rate = f", {d.lines_per_second:.1f} lines/s" if d.lines_per_second is not None else ""
    heartbeat = d.heartbeat.isoformat() if d.heartbeat else "never"
    out.print(f"daemon: [{_COLOUR[d.state]}]{d.state.value}[/] (last heartbeat {heartbeat}{rate})")
    if report.sources:
        table = Table("source", "origin", "position", "lag", "last line", "today", "total", "rejects (24 h)")
        for s in report.sources:
            table.add_row(
                s.name,
                s.origin,
                "-" if s.position is None else f"{s.position:,}",
                "-" if s.lag_bytes is None else f"{s.lag_bytes:,} B",
                s.last_line_ts.isoformat() if s.last_line_ts else "-",
                f"{s.lines_today:,}",
                f"{s.lines_total:,}",
                f"{s.rejects:,} ({sum(s.rejects_24h.values()):,})",
            )
        out.print(table)
        for s in report.sources:
            if s.rejects_24h:
                reasons = ", ".join(f"{for_terminal(r, 60)} x{n:,}" for r, n in s.rejects_24h.items())
                out.print(f"rejects of {s.name} in the last 24 h: {reasons}", markup=False)
    else:
        out.print(
            "sources: none configured (add [[sources]] to the config; see config/monitor.example.toml)",
            markup=False,
        )
    m = report.model
    if m.trained:
        out.print(f"model: trained {m.trained_at} on {m.windows} windows, threshold {m.threshold}")
    else:
        out.print(f"model: {m.note}", markup=False)
    o = report.outbox
    out.print(
        f"outbox: {o.pending} pending, {o.failed} failed, {o.sent} sent; "
        f"alerts in the last 24 h: {report.alerts_last_24h}"
    )
    db = report.database
    size = db.size_bytes
    out.print(
        f"database: {db.url} ({db.requests:,} requests" + (f", {size / 1e6:.1f} MB)" if size else ")"),
        markup=False,
    )


COMMANDS = [status]
