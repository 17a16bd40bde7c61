"""From alerts to notifications: severity filter, dedup, storm digests, a global rate limit, and the text.

The rules engine already applies a cooldown per rule and source. The `Dispatcher` adds, in order:

1. `min_severity`: alerts below it are logged (with a store) but never notified.
2. Dedup: an alert whose `key` was admitted less than `dedup_seconds` ago is dropped.
3. Digests: in any window of `digest_seconds`, at most `digest_threshold - 1` alerts (at least one) go
   out on their own; the rest fold into ONE digest, sent when the window closes (it names the count,
   the rules and the top sources; its `client_ips` lists every source it covers). While a storm goes
   on (alerts within a window of the last digest), alerts fold straight into the next digest. So a
   burst costs at most `digest_threshold` messages per window: 1,000 unknown sources in a minute are
   4 messages and one digest with the default settings.
4. Rate limit: never more than `max_per_hour` messages in any hour. An alert over the limit folds
   into the digest, and a digest that would exceed it waits (and keeps counting) until a slot frees:
   the excess is delayed and summarised, never dropped silently.

Time is always passed in (`now`: wall time in the daemon, log time in a replay), so the whole thing
is deterministic. Memory is bounded whatever the input: the dedup table keeps at most
`MAX_DEDUP_KEYS` keys (oldest evicted first), a digest counts at most `MAX_DIGEST_SOURCES` distinct
sources (the rest are counted together) and `MAX_DIGEST_RULES` rules.

Notification ids are derived from content and time (`a-...` for one alert, `d-...` for a digest), so
replaying the same alerts yields the same ids and the outbox's unique key stores them once.

With a Store, `submit` also logs every admitted alert to the `alerts` table and stores the released
notifications in the outbox (stored before sent, see monitor.alerts.delivery); an open digest lives in memory
only, but its alerts are already in the `alerts` table, so a crash loses the digest message, not the
record. Without a Store (dry runs, replays without --send) it only computes.
"""

from __future__ import annotations

import hashlib
import socket
from collections import Counter, OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from monitor.config import AlertSettings
from monitor.core.records import Alert, Notification, Severity
from monitor.core.sanitize import cap, safe_text

if TYPE_CHECKING:
    from monitor.alerts.delivery import Outbox
    from monitor.store import Store

DEDUP_SECONDS = 600
MAX_DEDUP_KEYS = 20_000
MAX_DIGEST_SOURCES = 10_000
MAX_DIGEST_RULES = 50
TOP_SOURCES = 10
TITLE_MAX = 200
FIELD_MAX = 200
MESSAGE_MAX = 1500  # the delivery layer caps whole bodies at 1,900 (Discord's 2,000 limit)
IP_MAX = 64  # longest plausible address text; anything longer is cut before it is counted
HOUR = timedelta(hours=1)
_RANK = {s: s.rank for s in Severity}  # Severity.rank builds a dict per call; this is the hot path

# What a person should do next, by rule. Shown under "Next:" in every notification.
NEXT_STEPS: dict[str, str] = {
    "unknown-source": "If you do not know this address, block it at the firewall and check that Ollama is not "
    "exposed (`ollama-monitor audit`). If it is yours: `ollama-monitor sources approve {source}`.",
    "management-endpoint": "A model was pulled, pushed, created, copied or deleted. If you did not do it, block the "
    "source, review `ollama list` and restrict the bind address (OLLAMA_HOST).",
    "account-endpoint": "Account endpoints were called (they can reveal or sign out the signed-in account). "
    "Block the source and check the account at ollama.com.",
    "recon-sequence": "Someone is enumerating your models (the usual prelude to free-riding or exfiltration). "
    "Block the source; do not expose Ollama without an authenticating proxy.",
    "scanner-probe": "An Internet scanner found the server. Make sure port 11434 is not reachable from outside "
    "(`ollama-monitor audit`).",
    "auth-failures": "Many requests were refused (401/403): someone is guessing credentials or probing. "
    "Block the source at the proxy or firewall.",
    "direct-access": "Ollama was reached directly, around the reverse proxy. Bind Ollama to 127.0.0.1 "
    "(OLLAMA_HOST) so only the proxy can reach it.",
    "forwarded-mismatch": "A client sent its own X-Forwarded-For: the logged address may be forged. Configure "
    "trusted_proxies and have the proxy overwrite the header.",
    "anomaly": "Traffic unlike this server's history. Review it with `ollama-monitor alerts list` and the "
    "request log; approve the source if it is expected.",
}
DEFAULT_NEXT = "Review it with `ollama-monitor alerts list`; block the source if you do not recognise it."


def _utc_text(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _digest_id(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "replace")).hexdigest()[:32]


def _host() -> str:
    try:
        return safe_text(socket.gethostname(), 64) or "this host"
    except OSError:
        return "this host"


def _sources_text(ips: Sequence[str], shown: int = 5) -> str:
    if not ips:
        return "(none recorded)"
    names = ", ".join(safe_text(ip, IP_MAX) for ip in ips[:shown])
    return names + (f" (+{len(ips) - shown} more)" if len(ips) > shown else "")


def notification_for(alert: Alert, now: datetime, host: str | None = None) -> Notification:
    """Return the notification for one alert: a one-line title, and a body that says what happened,
    from which source, when, why, and what to do next. Every alert field is treated as hostile text."""
    severity = alert.severity
    title = cap(f"[{severity.value.upper()}] " + safe_text(alert.title, TITLE_MAX), TITLE_MAX)
    message = safe_text(alert.message, MESSAGE_MAX, keep_newlines=True)
    if ("\nSource:" in message or "\nSources:" in message) and "\nNext:" in message:
        # The rule already wrote what, where, when, why and what next: do not say it twice.
        nid = "a-" + _digest_id("alert", alert.rule, alert.key, alert.ts.astimezone(UTC).isoformat())
        body = f"{message}\n-- ollama-monitor on {host or _host()}"
        return Notification(nid, now, alert.rule, severity, title, body, tuple(alert.client_ips), 1)
    lines = [message or safe_text(alert.title, FIELD_MAX), ""]
    lines.append(f"What:   {safe_text(alert.rule, 64)} ({severity.value})")
    lines.append(f"Source: {_sources_text(alert.client_ips)}")
    lines.append(f"When:   {_utc_text(alert.ts)} (log time)")
    for name, value in list(alert.details.items())[:8]:
        if isinstance(value, str | int | float | bool) or value is None:
            lines.append(f"  {safe_text(name, 40)}: {safe_text(value, FIELD_MAX)}")
    first_source = safe_text(alert.client_ips[0], IP_MAX) if alert.client_ips else "ADDRESS"
    lines.append(f"Next:   {NEXT_STEPS.get(alert.rule, DEFAULT_NEXT).replace('{source}', first_source)}")
    lines.append(f"-- ollama-monitor on {host or _host()}")
    nid = "a-" + _digest_id("alert", alert.rule, alert.key, alert.ts.astimezone(UTC).isoformat())
    return Notification(nid, now, alert.rule, severity, title, "\n".join(lines), tuple(alert.client_ips), 1)


@dataclass
class Digest:
    """Alerts folded together while a storm lasts. Memory is bounded (see the module doc)."""

    opened_at: datetime
    closes_at: datetime
    count: int = 0
    by_source: dict[str, int] = field(default_factory=dict)
    untracked: int = 0  # source mentions beyond MAX_DIGEST_SOURCES distinct sources
    by_rule: Counter[str] = field(default_factory=Counter)
    severity: Severity = Severity.INFO
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    first: Alert | None = None
    rate_limited: int = 0  # alerts folded because of max_per_hour
    held: bool = False  # the digest itself waited for the hourly limit

    def add(self, alert: Alert, rate_limited: bool) -> None:
        self.count += 1
        if self.first is None:
            self.first = alert
        self.rate_limited += rate_limited
        if _RANK[alert.severity] > _RANK[self.severity]:
            self.severity = alert.severity
        self.first_ts = alert.ts if self.first_ts is None else min(self.first_ts, alert.ts)
        self.last_ts = alert.ts if self.last_ts is None else max(self.last_ts, alert.ts)
        rule = alert.rule[:64]
        if rule in self.by_rule or len(self.by_rule) < MAX_DIGEST_RULES:
            self.by_rule[rule] += 1
        else:
            self.by_rule["(other rules)"] += 1
        for ip in alert.client_ips:
            ip = ip[:IP_MAX]
            if ip in self.by_source:
                self.by_source[ip] += 1
            elif len(self.by_source) < MAX_DIGEST_SOURCES:
                self.by_source[ip] = 1
            else:
                self.untracked += 1

    def notification(self, now: datetime, settings: AlertSettings, host: str | None = None) -> Notification:
        """Return the digest message: the count, the time span, the rules and the top sources."""
        if self.count == 1 and self.first is not None:
            return notification_for(self.first, now, host)  # a "digest" of one is just that alert, late
        sources = sorted(self.by_source.items(), key=lambda kv: (-kv[1], kv[0]))
        n_sources = len(sources)
        more_sources = "+" if self.untracked else ""
        title = (
            f"[{self.severity.value.upper()}] Digest: {self.count:,} alerts from "
            f"{n_sources:,}{more_sources} source{'s' if n_sources != 1 else ''}"
        )
        first, last = self.first_ts or self.opened_at, self.last_ts or self.opened_at
        why = f"more than {settings.digest_threshold} alerts in {settings.digest_seconds} s"
        if self.rate_limited or self.held:
            why += f"; held back by the limit of {settings.max_per_hour} messages per hour"
        lines = [
            f"{self.count:,} alerts between {_utc_text(first)} and {_utc_text(last)} (log time) were folded "
            f"into this one message ({why}).",
            "",
            "By rule:",
        ]
        for rule, n in self.by_rule.most_common(8):
            lines.append(f"  {safe_text(rule, 64)}: {n:,}")
        lines.append("Top sources:")
        for ip, n in sources[:TOP_SOURCES]:
            lines.append(f"  {safe_text(ip, IP_MAX)}: {n:,}")
        if n_sources > TOP_SOURCES:
            lines.append(f"  ... and {n_sources - TOP_SOURCES:,} more sources")
        if self.untracked:
            lines.append(f"  ... and {self.untracked:,} alerts from further sources (not listed)")
        since = first.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(
            f"Next:   see every alert with `ollama-monitor alerts list --since {since}`. A storm from "
            "many unknown sources usually means the port is exposed to the Internet: check it with "
            "`ollama-monitor audit`."
        )
        lines.append(f"-- ollama-monitor on {host or _host()}")
        first_key = self.first.key if self.first else ""
        nid = "d-" + _digest_id(
            "digest", self.opened_at.astimezone(UTC).isoformat(), first_key, str(self.count)
        )
        return Notification(
            nid,
            now,
            "digest",
            self.severity,
            title,
            "\n".join(lines),
            tuple(ip for ip, _ in sources),
            self.count,
        )


@dataclass
class DispatchStats:
    received: int = 0
    below_severity: int = 0
    duplicates: int = 0
    released: int = 0
    digested: int = 0
    digests: int = 0


class Dispatcher:
    """Noise control between the rules and the outbox (see the module doc).

    Given the `[alerts]` settings and optionally a Store (with a Store, admitted alerts are logged and
    released notifications are queued in the outbox; `outbox` may be passed in, else it is built from
    the settings here, so a bad apprise URL raises AlertError at construction, not at the first
    alert). Not thread-safe: call it from one thread.
    """

    def __init__(
        self,
        settings: AlertSettings,
        store: Store | None = None,
        *,
        dedup_seconds: int = DEDUP_SECONDS,
        outbox: Outbox | None = None,
        host: str | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        if outbox is None and store is not None:
            from monitor.alerts.delivery import Outbox

            outbox = Outbox(settings, store)
        self.outbox: Outbox | None = outbox
        self.dedup_window = timedelta(seconds=dedup_seconds)
        self.window = timedelta(seconds=settings.digest_seconds)
        self.solo_slots = max(1, settings.digest_threshold - 1)
        self.min_rank = Severity(settings.min_severity).rank
        self.host = host or _host()
        self.stats = DispatchStats()
        self._seen: OrderedDict[str, datetime] = OrderedDict()  # key -> when admitted, oldest first
        self._recent: deque[datetime] = deque()  # messages sent in the last digest window
        self._hour: deque[datetime] = deque()  # messages sent in the last hour
        self._digest: Digest | None = None
        self._storm_until: datetime | None = None

    @property
    def open_digest(self) -> Digest | None:
        return self._digest

    def submit(self, alerts: Sequence[Alert], now: datetime) -> list[Notification]:
        """Take new alerts at time `now`; return the notifications released now (a digest whose window
        has closed included). With a Store, they are already in the outbox when this returns."""
        out = self._flush(now)
        admitted: list[Alert] = []
        for alert in alerts:
            self.stats.received += 1
            if self._is_duplicate(alert, now):
                self.stats.duplicates += 1
                continue
            admitted.append(alert)
            if _RANK[alert.severity] < self.min_rank:
                self.stats.below_severity += 1
                continue
            note = self._admit(alert, now)
            if note is not None:
                out.append(note)
        if self.store is not None and admitted:
            from monitor.store.outbox_queries import record_alerts

            record_alerts(self.store, admitted)
        self._queue(out)
        return out

    def flush(self, now: datetime) -> list[Notification]:
        """Return the digest whose window has closed by `now` (if the hourly limit allows sending it)."""
        out = self._flush(now)
        self._queue(out)
        return out

    # --- internals -------------------------------------------------------------------------------
    def _queue(self, notes: list[Notification]) -> None:
        if notes and self.outbox is not None:
            self.outbox.enqueue(notes)

    def _is_duplicate(self, alert: Alert, now: datetime) -> bool:
        seen = self._seen
        horizon = now - self.dedup_window
        while seen:
            oldest_key = next(iter(seen))
            if seen[oldest_key] > horizon:
                break
            del seen[oldest_key]
        when = seen.get(alert.key)
        if when is not None and when > horizon:
            return True
        seen[alert.key] = now
        seen.move_to_end(alert.key)
        while len(seen) > MAX_DEDUP_KEYS:
            seen.popitem(last=False)
        return False

    def _prune(self, now: datetime) -> None:
        while self._recent and self._recent[0] <= now - self.window:
            self._recent.popleft()
        while self._hour and self._hour[0] <= now - HOUR:
            self._hour.popleft()

    def _admit(self, alert: Alert, now: datetime) -> Notification | None:
        self._prune(now)
        rate_full = len(self._hour) >= self.settings.max_per_hour
        storm = self._digest is not None or (self._storm_until is not None and now < self._storm_until)
        if storm or rate_full or len(self._recent) >= self.solo_slots:
            if self._digest is None:
                self._digest = Digest(now, now + self.window)
            self._digest.add(alert, rate_limited=rate_full and not storm)
            self.stats.digested += 1
            return None
        self._sent(now)
        self.stats.released += 1
        return notification_for(alert, now, self.host)

    def _sent(self, now: datetime) -> None:
        self._recent.append(now)
        self._hour.append(now)

    def _flush(self, now: datetime) -> list[Notification]:
        digest = self._digest
        if digest is None or now < digest.closes_at:
            return []
        self._prune(now)
        if len(self._hour) >= self.settings.max_per_hour:
            # Over the hourly limit: keep collecting until the oldest message of the hour ages out.
            digest.closes_at = max(digest.closes_at, self._hour[0] + HOUR)
            digest.held = True
            return []
        self._digest = None
        self._sent(now)
        self.stats.digests += 1
        if digest.count > 1:
            self._storm_until = now + self.window
        return [digest.notification(now, self.settings, self.host)]
