"""Deliver the weekly summary: the HTML page (charts included) by email, a short plain-text digest to chat.

The services are the live alerts' own (monitor.alerts.targets): the same `[alerts] urls` (tagged ones too,
`"chat=json://..."`) and `config_file`, the same names (`E-Mail (mailto#0)`), and the same routing:
the summary is an `info` message, so `[alerts] routes.info` chooses its services (every service when
there is no such route). Each target is sent on its own, in its own thread with its own deadline, so
one failing or stalling service does not hide the others' results. Email targets get
`body_format="html"` with the page as the body (inline SVG charts) and as an attached `.html` file,
for mail clients that strip SVG from bodies. Every other service gets a compact plain-text digest
(`body_format="text"`: markdown mode passes Slack's `<!channel>` through), made of neutralised log
text and capped at 1,900 characters (Discord takes 2,000). URLs hold secrets and are never shown.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from monitor.alerts.targets import Target, load_targets, route
from monitor.config import AlertSettings
from monitor.core.errors import AlertError
from monitor.core.records import Severity
from monitor.core.sanitize import cap, safe_text
from monitor.reports.summary.cells import change, count, percent, stamp
from monitor.reports.summary.data import Summary
from monitor.reports.summary.html import render_html

CHAT_LIMIT = 1900


@dataclass
class SendReport:
    """Which targets took the summary, by the live alerts' names (`E-Mail (mailto#0)`)."""

    delivered: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and bool(self.delivered)


def subject(summary: Summary) -> str:
    alerts = len(summary.alerts)
    return (
        f"Ollama usage {summary.since:%Y-%m-%d} to {summary.until:%Y-%m-%d}: "
        f"{summary.totals.requests:,} requests, {alerts} alert{'s' if alerts != 1 else ''}"
    )


def chat_text(summary: Summary, limit: int = CHAT_LIMIT) -> str:
    """A short plain-text digest for chat services; log text is cleaned and neutralised."""
    t = summary.totals
    unknown = [s for s in summary.sources if s.status == "unknown"]
    lines = [
        f"Ollama usage {stamp(summary.since)} to {stamp(summary.until)} UTC",
        f"Requests: {count(t.requests)} ({change(summary.change('requests'))}), sources: {count(t.sources)} "
        f"({count(len(unknown))} unknown, {count(len(summary.new_sources))} new)",
        f"Inference: {count(t.inference)}, management: {count(t.management)}, errors: {percent(t.error_rate)}",
        "",
        "Top sources:",
    ]
    for s in summary.sources[:5]:
        name = f" ({safe_text(s.name, 30)})" if s.name else ""
        lines.append(
            f"- {safe_text(s.client_ip, 45)}{name} [{s.status}]: {count(s.requests)} requests, "
            f"{count(s.inference)} inference"
        )
    if summary.new_sources:
        lines += [
            "",
            f"New sources ({len(summary.new_sources)}): "
            + ", ".join(safe_text(s.client_ip, 45) for s in summary.new_sources[:8])
            + (" ..." if len(summary.new_sources) > 8 else ""),
        ]
    lines += ["", f"Alerts ({len(summary.alerts)}):"]
    for a in summary.alerts[:8]:
        lines.append(
            f"- {stamp(a.ts)} {safe_text(a.severity, 10)} {safe_text(a.rule, 24)}: {safe_text(a.title, 120)}"
        )
    if len(summary.alerts) > 8:
        lines.append(f"- ... and {len(summary.alerts) - 8} more")
    if not summary.alerts:
        lines[-1] = "Alerts: none"
    return cap("\n".join(lines), limit)


def _targets(settings: AlertSettings) -> list[Target]:
    """Return the services the summary goes to; raise AlertError when none is configured or one is invalid."""
    if not settings.urls and not settings.config_file:
        raise AlertError(
            "no alert targets configured", hint="add apprise URLs to [alerts] urls in the config"
        )
    return route(load_targets(settings), Severity.INFO, settings.routes)


def send(summary: Summary, settings: AlertSettings) -> SendReport:
    """Send the summary to every configured target; return which ones took it.

    Raise AlertError when no target is configured or a URL is invalid; a target that fails to deliver
    is reported in `failed`, not raised.
    """
    targets = _targets(settings)
    report = SendReport()
    title = subject(summary)
    html = render_html(summary)
    text = chat_text(summary)
    with tempfile.TemporaryDirectory(prefix="ollama-monitor-summary-") as tmp:
        page = Path(tmp) / f"ollama-usage-{summary.since:%Y-%m-%d}.html"
        page.write_text(html, encoding="utf-8")
        futures = [
            (
                target,
                target.start(title, html, body_format="html", attach=str(page))
                if target.is_email
                else target.start(title, text, body_format="text"),
            )
            for target in targets
        ]
        for target, future in futures:
            try:
                ok = future.result(timeout=target.deadline).ok
            except TimeoutError:
                ok = False
            (report.delivered if ok else report.failed).append(target.label)
    return report
