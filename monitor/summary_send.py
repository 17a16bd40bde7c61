"""Deliver the weekly summary through apprise: the HTML page (charts included) by email, a short
plain-text digest to chat services.

Each configured target (`[alerts] urls`, and the services of `[alerts] config_file`) is sent on its
own, so one failing service does not hide the others' results. Email targets (`mailto://`,
`mailtos://`) get `body_format="html"` with the page as the body (inline SVG charts) and as an
attached `.html` file, for mail clients that strip SVG from bodies. Every other service gets a
compact plain-text digest (`body_format="text"`: the FIELD_NOTES show that markdown mode passes
Slack's `<!channel>` through), made of neutralised log text and capped at 1,900 characters (Discord
takes 2,000). Targets are named by their position and service name, never by URL: URLs hold secrets.

apprise is imported here only (and in monitor.alerts); this module is imported lazily by the CLI.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import apprise
from apprise.plugins.email import NotifyEmail

from monitor.config import AlertSettings
from monitor.errors import AlertError
from monitor.sanitize import cap, safe_text
from monitor.summary_data import Summary
from monitor.summary_html import render_html
from monitor.summary_render import change, count, percent, stamp

CHAT_LIMIT = 1900


@dataclass
class SendReport:
    """Which targets took the summary. Names are `#N service` (position in the config, service name)."""

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


def _targets(settings: AlertSettings) -> list[object]:
    """Return the configured apprise services; raise AlertError when none is configured or one is invalid."""
    if not settings.urls and not settings.config_file:
        raise AlertError(
            "no alert targets configured", hint="add apprise URLs to [alerts] urls in the config"
        )
    services: list[object] = []
    for i, url in enumerate(settings.urls, start=1):
        plugin = apprise.Apprise.instantiate(url)
        if plugin is None:
            # Never echo the URL: it may hold a token or a password.
            raise AlertError(
                f"[alerts] urls[{i - 1}] is not a valid apprise URL",
                hint="see https://github.com/caronc/apprise/wiki",
            )
        services.append(plugin)
    if settings.config_file:
        config = apprise.AppriseConfig()
        if not config.add(settings.config_file):
            raise AlertError(f"cannot read the apprise config file {settings.config_file}")
        services.extend(config.services())
    return services


def send(summary: Summary, settings: AlertSettings) -> SendReport:
    """Send the summary to every configured target; return which ones took it.

    Raise AlertError when no target is configured or a URL is invalid; a target that fails to deliver
    is reported in `failed`, not raised.
    """
    services = _targets(settings)
    report = SendReport()
    title = subject(summary)
    html = render_html(summary)
    text = chat_text(summary)
    with tempfile.TemporaryDirectory(prefix="ollama-monitor-summary-") as tmp:
        page = Path(tmp) / f"ollama-usage-{summary.since:%Y-%m-%d}.html"
        page.write_text(html, encoding="utf-8")
        for i, service in enumerate(services, start=1):
            one = apprise.Apprise()
            one.add(service)  # type: ignore[arg-type]
            name = f"#{i} {getattr(service, 'service_name', 'service')}"
            if isinstance(service, NotifyEmail):
                ok = one.notify(
                    body=html,
                    title=title,
                    body_format=apprise.NotifyFormat.HTML,
                    attach=apprise.AppriseAttachment(str(page)),
                )
            else:
                ok = one.notify(body=text, title=title, body_format=apprise.NotifyFormat.TEXT)
            (report.delivered if ok else report.failed).append(name)
    return report
