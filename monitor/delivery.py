"""Alert delivery with apprise, through a durable outbox in the database.

Targets. Every configured service becomes one `Target` holding its own one-service `Apprise` object,
so each service has its own outcome, throttle and retry state. Services come from `[alerts] urls`
(optionally prefixed with tags the way apprise's text config does: `"email, critical=mailto://..."`)
and then from `[alerts] config_file` (apprise text or YAML config, with tags). A target is named
`<scheme>#<index>` (`mailto#0`, `slack#2`): that name is stored in the outbox and used in every log
line and report. URLs hold tokens and are never logged, stored or printed.

Routing. `[alerts] routes` maps a severity to tags (`critical = ["email", "slack"]`, `info =
["slack"]`): a notification goes to the targets carrying one of its severity's tags (and to targets
tagged `always`). A severity without a route goes to every target. A route that matches no target
also goes to every target, with a warning: a mis-typed tag must not silently swallow alerts.

Outbox. `Outbox.enqueue` stores one row per (notification, target) BEFORE anything is sent; the
unique (notification_id, service) key makes enqueueing the same notification again (a replay, a
restart) harmless. `Outbox.deliver` then sends the due rows: claim (one UPDATE that counts the attempt
and takes a lease), send, and record the outcome (one UPDATE: sent, or pending again with
exponential backoff, or failed once the row is older than `retry_max_hours`).

The crash window, and the choice made. A process can die after a service accepted a message and
before the database recorded it. Nothing can close that window (the receiver and the database do not
share a transaction), so one must choose: at-most-once (count the row as done when it is claimed; a
crash then loses the message) or at-least-once (a row whose sender died is sent again when its lease
runs out). This outbox is at-least-once per attempt: a duplicate alert is a nuisance, a lost one is
a miss. The window is one HTTP/SMTP exchange (bounded by the connect/read timeouts), so in practice
every notification arrives exactly once: across receiver outages, restarts and concurrent senders
(the claim is atomic, so the daemon and `alerts retry` never both send a row).

Promptness. Each attempt is bounded by short connect/read timeouts (`cto`/`rto`), and a service that
fails once is skipped for the rest of that pass and its other queued rows wait for the same retry
time, so a dead receiver costs one timeout per retry, not one per queued message. `deliver(budget_seconds=...)` stops starting new attempts when the budget is
spent; whatever is left stays pending for the next pass.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from monitor.config import AlertSettings
from monitor.errors import AlertError
from monitor.records import Notification, Severity
from monitor.sanitize import cap, clean, neutralise
from monitor.store import Store, utcnow
from monitor.store import outbox_queries as q

log = logging.getLogger("monitor.alerts")

TITLE_MAX = 200  # email subjects and chat titles; one line
BODY_MAX = 1900  # Discord caps a message at 2,000 characters, the tightest common limit
CONNECT_TIMEOUT = 4.0
READ_TIMEOUT = 4.0
BACKOFF_FIRST = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=1)
LEASE_MARGIN = timedelta(seconds=60)
PASS_LIMIT = 2000  # rows read per delivery pass
ALWAYS_TAG = "always"

# `tag1, tag2=scheme://...`: apprise's text-config way of tagging a URL.
_TAGGED_URL = re.compile(
    r"^\s*(?P<tags>[\w][\w ,-]*?)\s*=\s*(?P<url>[a-z][a-z0-9+.-]*://.*)$", re.IGNORECASE | re.DOTALL
)
_URL_IN_TEXT = re.compile(r"[a-z][a-z0-9+.-]*://\S*", re.IGNORECASE)


@dataclass
class Target:
    """One configured notification service. `name` (`mailto#0`) is safe to log; the URL is not kept."""

    name: str
    service_name: str
    tags: frozenset[str]
    apprise: Any  # an apprise.Apprise holding exactly this one service

    @property
    def label(self) -> str:
        """How a person sees this service in logs and reports: `E-Mail (mailto#0)`."""
        return f"{self.service_name} ({self.name})"


@dataclass(frozen=True)
class Attempt:
    """The outcome of one delivery attempt (or of giving up on a row without one)."""

    notification_id: str
    service: str
    label: str
    ok: bool
    attempts: int
    error: str | None = None
    gave_up: bool = False
    next_attempt_at: datetime | None = None


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else "?"


def load_targets(
    settings: AlertSettings,
    *,
    connect_timeout: float = CONNECT_TIMEOUT,
    read_timeout: float = READ_TIMEOUT,
    throttle: float | None = None,
) -> list[Target]:
    """Build one Target per configured service: `urls` first, then the services of `config_file`.

    `connect_timeout`/`read_timeout` bound every attempt (apprise's `cto`/`rto`, also the SMTP
    timeout). `throttle`, when given, replaces apprise's per-service pause between two sends (email
    5.5 s, Slack 1.2 s). Raise AlertError naming the entry (never the URL) when one is not usable.
    """
    import apprise

    targets: list[Target] = []
    problems: list[str] = []
    plugins: list[tuple[str, Any, frozenset[str]]] = []
    for i, entry in enumerate(settings.urls):
        tags: frozenset[str] = frozenset()
        url = entry.strip()
        m = _TAGGED_URL.match(url)
        if m:
            tags = frozenset(t.strip().lower() for t in m.group("tags").split(",") if t.strip())
            url = m.group("url").strip()
        plugin = apprise.Apprise.instantiate(url)
        if plugin is None:
            problems.append(
                f"alerts.urls[{i}]: not a usable apprise URL (scheme {_scheme(url)!r}; check its syntax)"
            )
            continue
        plugins.append((_scheme(url), plugin, tags))
    if settings.config_file:
        config = apprise.AppriseConfig()
        if not config.add(settings.config_file):
            problems.append(f"alerts.config_file: cannot read apprise config {settings.config_file!r}")
        else:
            services = config.services()
            if not services:
                problems.append(f"alerts.config_file: no usable service in {settings.config_file!r}")
            for plugin in services:
                scheme = _scheme(plugin.url(privacy=True))
                plugins.append((scheme, plugin, frozenset(str(t).lower() for t in plugin.tags)))
    if problems:
        raise AlertError(
            problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
            hint="see https://github.com/caronc/apprise/wiki for each service's URL format",
        )
    for index, (scheme, plugin, tags) in enumerate(plugins):
        plugin.socket_connect_timeout = connect_timeout
        plugin.socket_read_timeout = read_timeout
        if throttle is not None:
            plugin.request_rate_per_sec = throttle
        one = apprise.Apprise()
        one.add(plugin)
        targets.append(Target(f"{scheme}#{index}", str(plugin.service_name), tags, one))
    return targets


def route(targets: Sequence[Target], severity: Severity, routes: dict[str, list[str]]) -> list[Target]:
    """Return the targets a notification of `severity` goes to (see the module doc)."""
    wanted = {t.lower() for t in routes.get(severity.value, [])}
    if not wanted:
        return list(targets)
    chosen = [t for t in targets if t.tags & wanted or ALWAYS_TAG in t.tags]
    if not chosen:
        log.warning(
            "alerts.routes.%s matches no configured service (tags %s); sending to all",
            severity.value,
            sorted(wanted),
        )
        return list(targets)
    return chosen


def backoff(attempts: int) -> timedelta:
    """Delay before the next try after `attempts` failed ones: 30 s, 1 min, 2 min, ... capped at 1 h."""
    return min(BACKOFF_FIRST * (2 ** max(0, min(attempts - 1, 20))), BACKOFF_MAX)


_NOTIFY_TYPES = {Severity.INFO: "info", Severity.WARNING: "warning", Severity.CRITICAL: "failure"}


def render_title(title: str) -> str:
    """One line, no control characters, no mentions or links, at most TITLE_MAX characters."""
    return cap(neutralise(clean(title, TITLE_MAX * 2)), TITLE_MAX)


def render_body(body: str) -> str:
    """Lines kept, no control characters, no mentions or links, at most BODY_MAX characters."""
    return cap(neutralise(clean(body, BODY_MAX * 2, keep_newlines=True)), BODY_MAX)


class Outbox:
    """The durable queue between the dispatcher and the services (see the module doc).

    Given the alert settings and an open Store; `targets` defaults to `load_targets(settings, ...)`.
    Times are wall-clock UTC (delivery happens now, even when the alerts came from a replay).
    """

    def __init__(
        self,
        settings: AlertSettings,
        store: Store,
        *,
        targets: Sequence[Target] | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        throttle: float | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.targets = (
            list(targets)
            if targets is not None
            else load_targets(
                settings, connect_timeout=connect_timeout, read_timeout=read_timeout, throttle=throttle
            )
        )
        self._by_name = {t.name: t for t in self.targets}
        # A claimed row's lease must outlast its attempt, or a second sender could take it mid-send.
        self.lease = timedelta(seconds=2 * (connect_timeout + read_timeout)) + LEASE_MARGIN
        self._call_timeout = connect_timeout + read_timeout + 1.0
        if not self.targets:
            log.warning("no alert service configured ([alerts] urls / config_file): alerts are only logged")

    # --- enqueue -----------------------------------------------------------------------------
    def enqueue(
        self,
        notifications: Iterable[Notification],
        now: datetime | None = None,
        *,
        targets: Sequence[Target] | None = None,
    ) -> int:
        """Store one row per (notification, routed target), sanitised; return rows added (known ones are skipped)."""
        now = now or utcnow()
        rows = []
        for n in notifications:
            for target in (
                targets if targets is not None else route(self.targets, n.severity, self.settings.routes)
            ):
                rows.append(
                    {
                        "notification_id": n.id,
                        "service": target.name,
                        "severity": n.severity.value,
                        "title": render_title(n.title),
                        "body": render_body(n.message),
                        "created_at": now,
                        "next_attempt_at": now,
                    }
                )
        return q.enqueue(self.store, rows)

    # --- deliver -----------------------------------------------------------------------------
    def deliver(
        self,
        now: datetime | None = None,
        *,
        force: bool = False,
        budget_seconds: float | None = None,
        notification_ids: Iterable[str] | None = None,
    ) -> list[Attempt]:
        """Attempt every due row once, oldest first; return what happened to each.

        `force` ignores backoff (every pending row is due: `alerts retry`). A service that fails is not
        tried again in this pass. With `budget_seconds`, no new attempt starts once it is spent.
        `notification_ids` limits the pass to those notifications.
        """
        start = time.monotonic()
        now = now or utcnow()
        only = set(notification_ids) if notification_ids is not None else None
        failed_services: set[str] = set()
        results: list[Attempt] = []
        give_up_before = now - timedelta(hours=self.settings.retry_max_hours)
        # One read per pass; rows beyond the limit wait for the next pass.
        for row in q.due(self.store, now, force=force, limit=PASS_LIMIT):
            elapsed = time.monotonic() - start
            if budget_seconds is not None and elapsed >= budget_seconds:
                break
            if (only is not None and row["notification_id"] not in only) or row["service"] in failed_services:
                continue
            attempt = self._attempt(row, now + timedelta(seconds=elapsed), force, give_up_before)
            if attempt is None:
                continue
            results.append(attempt)
            if not attempt.ok and not attempt.gave_up:
                failed_services.add(row["service"])
                if attempt.next_attempt_at is not None:
                    q.defer(self.store, row["service"], attempt.next_attempt_at)
        return results

    def _attempt(
        self, row: dict[str, Any], now: datetime, force: bool, give_up_before: datetime
    ) -> Attempt | None:
        service, nid = row["service"], row["notification_id"]
        target = self._by_name.get(service)
        if target is None:
            reason = "service no longer configured"
            if q.give_up(self.store, row["id"], reason):
                log.warning("alert %s for %s: %s; dropped", nid, service, reason)
                return Attempt(nid, service, service, False, row["attempts"], reason, gave_up=True)
            return None
        if row["created_at"] < give_up_before:
            reason = f"undelivered after {self.settings.retry_max_hours} h"
            if q.give_up(self.store, row["id"], reason):
                log.error("alert %s to %s: %s; giving up", nid, target.label, reason)
                return Attempt(nid, service, target.label, False, row["attempts"], reason, gave_up=True)
            return None
        if not q.claim(self.store, row["id"], now, now + self.lease, force=force):
            return None  # another sender took it
        attempts = row["attempts"] + 1
        ok, error = self._send(target, row)
        if ok:
            q.finish(self.store, row["id"], sent=True, now=now)
            log.info("alert %s sent to %s", nid, target.label)
            return Attempt(nid, service, target.label, True, attempts)
        retry_at = now + backoff(attempts)
        q.finish(self.store, row["id"], sent=False, now=now, next_attempt_at=retry_at, error=error)
        log.warning(
            "alert %s to %s failed (attempt %d, next try at %s): %s",
            nid,
            target.label,
            attempts,
            retry_at.strftime("%H:%M:%S UTC"),
            error,
        )
        return Attempt(nid, service, target.label, False, attempts, error, next_attempt_at=retry_at)

    def _send(self, target: Target, row: dict[str, Any]) -> tuple[bool, str | None]:
        try:
            severity = Severity(row["severity"])
        except ValueError:
            severity = Severity.WARNING
        try:
            result = target.apprise.notify(
                body=row["body"],
                title=row["title"],
                notify_type=_NOTIFY_TYPES[severity],
                body_format="text",
                timeout=self._call_timeout,
            )
        except Exception as exc:  # a plugin bug must not kill the sender; the row stays pending
            return False, f"{type(exc).__name__} in the {target.service_name} plugin"
        if bool(result):
            return True, None
        return False, _error_text(result)


def _error_text(result: Any) -> str:
    """A short reason from apprise's per-service logs, with anything URL-like removed (URLs hold tokens)."""
    status = getattr(getattr(result, "status", None), "name", "FAILURE")
    messages: list[str] = []
    for service_result in result:
        for entry in service_result.logs():
            if entry.level in (
                "WARNING",
                "ERROR",
                "CRITICAL",
                logging.WARNING,
                logging.ERROR,
                logging.CRITICAL,
            ):
                messages.append(str(entry.message))
    text = messages[-1] if messages else ""
    text = _URL_IN_TEXT.sub("<url>", text)
    return clean(f"{status}: {text}" if text else status, 300)


def send_test(
    outbox: Outbox, now: datetime | None = None, *, budget_seconds: float | None = None
) -> list[Attempt]:
    """Queue a test notification for EVERY configured target (ignoring routes) and attempt it now.

    What fails stays pending: the daemon or `alerts retry` delivers it once the service works.
    """
    now = now or utcnow()
    note = Notification(
        id=f"test-{now.strftime('%Y%m%dT%H%M%S%fZ')}",
        ts=now,
        rule="test",
        severity=Severity.INFO,
        title="[TEST] ollama-monitor can reach this channel",
        message=(
            "This is a test notification from ollama-monitor (`ollama-monitor alerts test`).\n"
            f"Sent: {now.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S UTC')}\n"
            "If you can read this, alerts will reach you here. Nothing needs to be done."
        ),
        client_ips=(),
    )
    outbox.enqueue([note], now, targets=outbox.targets)
    return outbox.deliver(now, force=True, budget_seconds=budget_seconds, notification_ids=[note.id])
