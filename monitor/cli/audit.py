"""`ollama-monitor audit`: is this host's Ollama exposed, and how to fix it.

Prints findings (rich sections, or `--json`) and exits 0 when nothing is above info, 1 with warnings,
2 with anything critical. Everything shown that came from the system or the logs goes through
`_clean` (control characters and ANSI escapes stripped, lengths capped).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from monitor.cli.common import Env, pass_env
from monitor.core.sanitize import clean
from monitor.reports.audit.report import HostProbe, Report, run_audit

TEXT_CAP = 300
LINES_CAP = 60

# CSI (colours, cursor moves), OSC (titles, hyperlinks) and any other escape sequence.
# C0/C1 controls, DEL, zero-width and bidirectional overrides (which can reorder what a reader sees).


def _clean(text: object, cap: int = TEXT_CAP) -> str:
    """Make one line of untrusted text safe to print: no escapes, no control characters, capped."""
    return clean(text, cap)


def _clean_block(text: str) -> str:
    """Clean a multi-line text line by line, keeping its line breaks and indentation."""
    lines = [_clean(line) for line in text.splitlines()[:LINES_CAP]]
    return "\n".join(lines)


def _clean_data(value: Any) -> Any:
    if isinstance(value, str):
        return _clean_block(value) if "\n" in value else _clean(value)
    if isinstance(value, list):
        return [_clean_data(v) for v in value]
    if isinstance(value, dict):
        return {k: _clean_data(v) for k, v in value.items()}
    return value


_STYLE = {"critical": "bold red", "warning": "bold yellow", "info": "cyan"}


def _render(env: Env, report: Report) -> None:
    from rich.table import Table  # only the text output draws tables: --json does not import them
    from rich.text import Text

    out = env.out
    ports = ", ".join(map(str, report.ports))
    out.print(
        Text.assemble(
            ("Ollama exposure audit", "bold"),
            f" of {_clean(report.host)}: port(s) {ports}, logs since {report.since:%Y-%m-%d %H:%M} UTC",
        )
    )
    table = Table(show_header=True, header_style="bold", expand=False)
    table.add_column("severity")
    table.add_column("finding")
    table.add_column("id", style="dim")
    for f in report.findings:
        table.add_row(
            Text(f.severity.value, style=_STYLE[f.severity.value]), Text(_clean(f.title)), Text(f.id)
        )
    out.print(table)
    first_with: dict[str, str] = {}  # remediation text -> id of the finding that printed it
    for f in report.findings:
        # Info findings' advice repeats what the warnings say; it stays in --json.
        advice = f.remediation if f.severity.value != "info" else ""
        if not f.evidence and not advice:
            continue
        out.print()
        out.print(
            Text.assemble(
                (f.severity.value.upper(), _STYLE[f.severity.value]),
                "  ",
                (_clean(f.title), "bold"),
                ("  [" + f.id + "]", "dim"),
            )
        )
        for line in f.evidence:
            out.print(Text("  - " + _clean(line)))
        if advice and advice in first_with:
            out.print(Text(f"  fix: as for [{first_with[advice]}] above", style="dim"))
        elif advice:
            first_with[advice] = f.id
            out.print(Text("  fix:", style="dim"))
            for line in _clean_block(advice).splitlines():
                out.print(Text("    " + line))
    counts = report.counts()
    out.print()
    out.print(
        Text(
            f"{counts['critical']} critical, {counts['warning']} warning(s), {counts['info']} info "
            f"-> exit status {report.exit_status}",
            style=_STYLE[["info", "warning", "critical"][report.exit_status]],
        )
    )


@click.command("audit")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (schema in README: 'audit').")
@click.option(
    "--port",
    "ports",
    type=click.IntRange(1, 65535),
    multiple=True,
    metavar="PORT",
    help="Ollama port to check; repeatable. Default: 11434 plus any port OLLAMA_HOST names.",
)
@click.option(
    "--days",
    type=click.IntRange(1, 3660),
    default=7,
    show_default=True,
    help="Days of stored logs to examine.",
)
@click.option(
    "--proc-root",
    envvar="OLLAMA_MONITOR_PROC_ROOT",
    default="/proc",
    hidden=True,
    type=click.Path(path_type=Path),
)
@click.option(
    "--etc-root",
    envvar="OLLAMA_MONITOR_ETC_ROOT",
    default="/etc",
    hidden=True,
    type=click.Path(path_type=Path),
)
@pass_env
def audit(
    env: Env, as_json: bool, ports: tuple[int, ...], days: int, proc_root: Path, etc_root: Path
) -> None:
    """Check whether this host's Ollama is reachable from other machines, and say how to fix it.

    Read-only: looks at listening sockets, the ollama systemd unit and process environment (OLLAMA_HOST,
    OLLAMA_ORIGINS), Docker port publishes, the reverse proxy's configuration, the firewall and the
    stored request logs. Works without root (what it cannot read is reported as info).

    Exit status: 0 nothing above info, 1 warnings, 2 critical findings.
    """
    settings = env.settings
    probe = HostProbe(proc_root=proc_root, etc_root=etc_root)
    report = run_audit(probe, settings, ports=ports or None, days=days, open_store=env.open_store)
    if as_json:
        click.echo(json.dumps(_clean_data(report.to_dict()), indent=2))
    else:
        _render(env, report)
    click.get_current_context().exit(report.exit_status)


COMMANDS = [audit]
