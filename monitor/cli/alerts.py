"""`ollama-monitor alerts test|list|retry`: check the alert channels, read the alert log, flush the outbox.

The commands that send (`test`, `retry`) make their attempts with short timeouts and return: what
fails stays pending in the outbox for the daemon or the next `alerts retry`. Services are named by
apprise service name and target id (`E-Mail (mailto#0)`), never by URL: URLs hold tokens.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from monitor.cli.common import Env, pass_env
from monitor.core.errors import MonitorError
from monitor.core.sanitize import for_terminal

CLI_BUDGET = 30.0  # no new attempt starts after this many seconds, nor is a running one waited for longer

_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """Parse `--since`: a duration back from now (`30m`, `12h`, `7d`, `2w`) or an ISO date/time
    (`2025-03-21`, `2025-03-21T08:00`, with or without offset; no offset means UTC)."""
    now = now or datetime.now(UTC)
    m = _RELATIVE.match(text)
    if m:
        return now - timedelta(**{_UNITS[m.group(2).lower()]: int(m.group(1))})
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise MonitorError(
            f"--since: cannot read {for_terminal(text, 60)!r}",
            hint="use e.g. 30m, 12h, 7d or 2025-03-21T08:00",
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _iso(value: Any) -> Any:
    return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else value


def _short_time(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


@contextmanager
def _quiet_delivery_log() -> Iterator[None]:
    """The command reports every attempt itself: keep the delivery log's warnings off the terminal."""
    logger = logging.getLogger("monitor.alerts.dispatch")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _attempt_json(a: Any) -> dict[str, Any]:
    return {
        "notification_id": a.notification_id,
        "service": a.service,
        "label": a.label,
        "ok": a.ok,
        "attempts": a.attempts,
        "error": a.error,
        "gave_up": a.gave_up,
        "next_attempt_at": _iso(a.next_attempt_at),
        "maybe_delivered": a.maybe_delivered,
        "in_flight": a.in_flight,
    }


def _print_attempts(env: Env, attempts: list[Any]) -> None:
    table = Table(box=None, pad_edge=False)
    for col in ("service", "result", "notification", "detail"):
        table.add_column(col)
    for a in attempts:
        if a.ok:
            result, detail = Text("sent", style="green"), ""
        elif a.gave_up:
            result, detail = Text("gave up", style="red"), a.error or ""
        elif a.in_flight:
            result, detail = (
                Text("no answer yet", style="yellow"),
                "still sending: maybe delivered, not sent again for 30 min",
            )
        elif a.maybe_delivered:
            when = _short_time(a.next_attempt_at)
            result, detail = (
                Text("maybe sent", style="yellow"),
                f"{a.error or ''} (not sent again before {when} UTC)",
            )
        else:
            when = _short_time(a.next_attempt_at)
            result, detail = Text("failed", style="red"), f"{a.error or ''} (pending; next try {when} UTC)"
        table.add_row(
            Text(for_terminal(a.label)), result, Text(a.notification_id), Text(for_terminal(detail))
        )
    env.out.print(table)


@click.group("alerts")
def alerts() -> None:
    """Test the alert channels, list alerts, and send queued notifications."""


@alerts.command("test")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@pass_env
def test_cmd(env: Env, as_json: bool) -> None:
    """Send a test notification to every configured service and report each one's result.

    A service that fails keeps the test message pending; the daemon or `alerts retry` delivers it once
    the service works. Exit status 1 when a service failed.
    """
    from monitor.alerts.manual import check_channels

    with env.open_store() as store, _quiet_delivery_log():
        result = check_channels(env.settings.alerts, store, CLI_BUDGET)
    attempts, untried = result.attempts, result.not_tried
    if as_json:
        click.echo(
            json.dumps({"attempts": [_attempt_json(a) for a in attempts], "not_tried": untried}, indent=2)
        )
    else:
        _print_attempts(env, attempts)
        for label in untried:
            env.out.print(
                f"{for_terminal(label)}: not tried (time budget spent); the message stays pending",
                markup=False,
            )
        ok = sum(a.ok for a in attempts)
        env.out.print(f"{ok} of {result.services} service(s) reached", markup=False)
    if not result.ok:
        sys.exit(1)


@alerts.command("retry")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report.")
@pass_env
def retry_cmd(env: Env, as_json: bool) -> None:
    """Send every pending notification now, regardless of backoff.

    Each service is tried until it fails once; what fails stays pending. Exit status 1 when something
    could not be sent.
    """
    from monitor.alerts.manual import retry_pending

    with env.open_store() as store, _quiet_delivery_log():
        result = retry_pending(env.settings.alerts, store, CLI_BUDGET)
    attempts, pending = result.attempts, result.pending
    if as_json:
        click.echo(
            json.dumps({"attempts": [_attempt_json(a) for a in attempts], "pending": pending}, indent=2)
        )
    else:
        if attempts:
            _print_attempts(env, attempts)
        sent = sum(a.ok for a in attempts)
        env.out.print(f"{sent} sent, {len(attempts) - sent} failed, {pending} still pending", markup=False)
    if not result.ok:
        sys.exit(1)


@alerts.command("list")
@click.option(
    "--since", metavar="WHEN", help="Only alerts since WHEN: 30m, 12h, 7d, or an ISO date/time (UTC)."
)
@click.option("--pending", is_flag=True, help="List notifications waiting for delivery instead of alerts.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_env
def list_cmd(env: Env, since: str | None, pending: bool, limit: int, as_json: bool) -> None:
    """List recorded alerts (newest first), or with --pending the undelivered notifications."""
    from monitor.store import outbox_queries as q

    since_ts = parse_since(since) if since else None
    with env.open_store() as store:
        if pending:
            rows = q.rows(store, states=(q.PENDING, q.SENDING), since=since_ts, limit=limit)
        else:
            rows = q.list_alerts(store, since=since_ts, limit=limit)
    if as_json:
        keys = (
            (
                "id",
                "notification_id",
                "service",
                "severity",
                "state",
                "attempts",
                "next_attempt_at",
                "last_error",
                "created_at",
                "title",
            )
            if pending
            else (
                "id",
                "ts",
                "rule",
                "severity",
                "key",
                "client_ips",
                "title",
                "message",
                "details",
                "created_at",
            )
        )
        click.echo(json.dumps([{k: _iso(r.get(k)) for k in keys} for r in rows], indent=2, default=str))
        return
    if not rows:
        env.out.print("no pending notifications" if pending else "no alerts", markup=False)
        return
    table = Table(box=None, pad_edge=False)
    if pending:
        for col in (
            "created (UTC)",
            "service",
            "severity",
            "attempts",
            "next try (UTC)",
            "title",
            "last error",
        ):
            table.add_column(col)
        for r in rows:
            table.add_row(
                Text(_short_time(r["created_at"])),
                Text(for_terminal(r["service"])),
                Text(r["severity"]),
                Text(str(r["attempts"])),
                Text(_short_time(r["next_attempt_at"])),
                Text(for_terminal(r["title"], 80)),
                Text(for_terminal(r["last_error"] or "", 80)),
            )
    else:
        for col in ("time (UTC)", "severity", "rule", "sources", "title"):
            table.add_column(col)
        for r in rows:
            ips = r["client_ips"] if isinstance(r["client_ips"], list) else []
            shown = ", ".join(str(ip) for ip in ips[:3]) + (f" +{len(ips) - 3}" if len(ips) > 3 else "")
            table.add_row(
                Text(_short_time(r["ts"])),
                Text(str(r["severity"])),
                Text(for_terminal(r["rule"])),
                Text(for_terminal(shown, 60)),
                Text(for_terminal(r["title"], 100)),
            )
    env.out.print(table)


COMMANDS = [alerts]
