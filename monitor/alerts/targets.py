"""The one owner of apprise targets: building them from `[alerts]`, routing, and sending on each one's own.

Live alerts (monitor.alerts.delivery), `alerts test|retry` and `summary --send` (monitor.reports.summary.send) all get
their services here, so a URL that works for one works for all, with the same tags, routes and names.
This is the only module that imports apprise.

Targets. Every configured service becomes one `Target` holding its own one-service `Apprise` object.
Services come from `[alerts] urls` (optionally prefixed with tags the way apprise's text config does:
`"email, critical=mailto://..."`) and then from `[alerts] config_file` (apprise text or YAML config,
with tags). A target is named `<scheme>#<index>` (`mailto#0`, `slack#2`) and shown as
`E-Mail (mailto#0)`; URLs hold tokens and are never logged, stored or printed.

Routing. `[alerts] routes` maps a severity to tags (`critical = ["email", "slack"]`): a message goes to
the targets carrying one of its severity's tags (and to targets tagged `always`). A severity without a
route goes to every target; a route that matches no target also goes to every target, with a warning
(a mis-typed tag must not silently swallow alerts). The weekly summary is routed as `info`.

Isolation and deadlines. `Target.start` runs one send in a thread of its own (a daemon thread, one at a
time per target) and returns a `Future`; apprise's process-wide pool is never used (no `timeout=` is
given to `notify`), so a receiver that holds a connection open ties up its own thread and nothing
else. Each target has per-scheme socket timeouts and a deadline after which the caller stops waiting:

| scheme           | connect | read (per reply) | deadline |
| ---------------- | ------- | ---------------- | -------- |
| mailto, mailtos  | 300 s (apprise uses one timeout for every SMTP step) | 300 s | 305 s |
| everything else  | 10 s    | 30 s             | 45 s     |

RFC 5321 (4.5.3.2) asks SMTP clients to wait 5 minutes for most replies and 10 for the reply to the
end of DATA; 5 minutes is long enough for a mail server that scans content and short enough to notice
a dead one. A socket timeout restarts with every byte, so a receiver that drips a byte every few
seconds never times out at the socket: only the deadline ends the wait (the thread itself runs on
until the receiver lets go; the target takes no new send meanwhile).

"Maybe delivered". `SendResult.maybe_delivered` is true when the request had gone out before the
failure: an HTTP read timeout, an SMTP timeout inside the mail transaction, or the deadline passing
while the send still runs. The caller must not blindly send again soon (see monitor.alerts.delivery).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from monitor.config import AlertSettings
from monitor.core.errors import AlertError
from monitor.core.records import Severity
from monitor.core.sanitize import clean

log = logging.getLogger("monitor.alerts.dispatch")

ALWAYS_TAG = "always"
EMAIL_SCHEMES = frozenset({"mailto", "mailtos"})
SMTP_TIMEOUT = 300.0
HTTP_CONNECT_TIMEOUT = 10.0
HTTP_READ_TIMEOUT = 30.0
DEADLINE_MARGIN = 5.0

# `tag1, tag2=scheme://...`: apprise's text-config way of tagging a URL.
_TAGGED_URL = re.compile(
    r"^\s*(?P<tags>[\w][\w ,-]*?)\s*=\s*(?P<url>[a-z][a-z0-9+.-]*://.*)$", re.IGNORECASE | re.DOTALL
)
_URL_IN_TEXT = re.compile(r"[a-z][a-z0-9+.-]*://\S*", re.IGNORECASE)
# apprise logs the same warning for a refused connection and a read timeout (the exception itself is
# logged at DEBUG, which the per-call capture cannot see while apprise's logger is at WARNING), so the
# request is known to have gone out by what is visible: an HTTP connection error that came after the
# connect timeout and the read timeout had both passed (connecting cannot take longer than the first,
# so the connection was up and the request written), or an SMTP failure inside the mail transaction
# ("Sending email to ... failed", logged only once connected) that is not a refused recipient.
_CONNECTION_ERROR = re.compile(r"connection error", re.IGNORECASE)
_SMTP_SEND_FAILED = re.compile(r"sending email to .* failed", re.IGNORECASE)
_SMTP_REFUSED = re.compile(r"was refused", re.IGNORECASE)
_NOTIFY_TYPES = {Severity.INFO: "info", Severity.WARNING: "warning", Severity.CRITICAL: "failure"}


def timeouts_for(scheme: str) -> tuple[float, float]:
    """Return the (connect, read) socket timeouts for a service scheme (see the module doc)."""
    if scheme in EMAIL_SCHEMES:
        return SMTP_TIMEOUT, SMTP_TIMEOUT
    return HTTP_CONNECT_TIMEOUT, HTTP_READ_TIMEOUT


@dataclass(frozen=True)
class SendResult:
    """The outcome of one send. `error` is safe to log (URL-like text removed)."""

    ok: bool
    error: str | None = None
    maybe_delivered: bool = False
    seconds: float = 0.0


@dataclass
class Target:
    """One configured notification service. `name` (`mailto#0`) is safe to log; the URL is not kept."""

    name: str
    service_name: str
    tags: frozenset[str]
    apprise: Any  # an apprise.Apprise holding exactly this one service
    scheme: str = "?"
    connect_timeout: float = HTTP_CONNECT_TIMEOUT
    read_timeout: float = HTTP_READ_TIMEOUT
    deadline: float = HTTP_CONNECT_TIMEOUT + HTTP_READ_TIMEOUT + DEADLINE_MARGIN
    _running: Future[SendResult] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def label(self) -> str:
        """How a person sees this service in logs and reports: `E-Mail (mailto#0)`."""
        return f"{self.service_name} ({self.name})"

    @property
    def is_email(self) -> bool:
        return self.scheme in EMAIL_SCHEMES

    @property
    def busy(self) -> bool:
        """True while a send started earlier is still running (its receiver has not let go)."""
        with self._lock:
            return self._running is not None and not self._running.done()

    def start(
        self,
        title: str,
        body: str,
        severity: Severity = Severity.INFO,
        *,
        body_format: str = "text",
        attach: str | None = None,
    ) -> Future[SendResult]:
        """Start one send in this target's own thread; raise RuntimeError when one is still running."""
        future: Future[SendResult] = Future()
        with self._lock:
            if self._running is not None and not self._running.done():
                raise RuntimeError(f"{self.name}: a send is still running")
            self._running = future
        args = (future, title, body, severity, body_format, attach)
        threading.Thread(target=self._run, args=args, name=f"send-{self.name}", daemon=True).start()
        return future

    def overdue(self) -> SendResult:
        """The result to record when the deadline passed with the send still running."""
        return SendResult(
            False, f"no answer within {self.deadline:.0f} s (may have been delivered)", True, self.deadline
        )

    def _run(
        self,
        future: Future[SendResult],
        title: str,
        body: str,
        severity: Severity,
        body_format: str,
        attach: str | None,
    ) -> None:
        started = time.monotonic()
        try:
            ok, error, messages = self._notify(title, body, severity, body_format, attach)
        except BaseException as exc:  # noqa: BLE001 - a plugin bug must not kill the sender
            ok, error, messages = False, f"{type(exc).__name__} in the {self.service_name} plugin", []
        seconds = time.monotonic() - started
        maybe = not ok and self._sent_before_failing(messages, seconds)
        future.set_result(SendResult(ok, error, maybe, seconds))

    def _sent_before_failing(self, messages: list[str], seconds: float) -> bool:
        """True when the request had gone out before the failure (see `_CONNECTION_ERROR`)."""
        if self.is_email:
            return any(_SMTP_SEND_FAILED.search(m) for m in messages) and not any(
                _SMTP_REFUSED.search(m) for m in messages
            )
        return (
            any(_CONNECTION_ERROR.search(m) for m in messages)
            and seconds > self.connect_timeout
            and seconds >= self.read_timeout * 0.95
        )

    def _notify(
        self, title: str, body: str, severity: Severity, body_format: str, attach: str | None
    ) -> tuple[bool, str | None, list[str]]:
        import apprise

        kwargs: dict[str, Any] = {}
        if attach is not None:
            kwargs["attach"] = apprise.AppriseAttachment(attach)
        result = self.apprise.notify(
            body=body,
            title=title,
            notify_type=_NOTIFY_TYPES.get(severity, "warning"),
            body_format=body_format,
            **kwargs,
        )
        if bool(result):
            return True, None, []
        messages = _messages(result)
        return False, _error_text(result, messages), [m for _, m in messages]


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else "?"


def load_targets(
    settings: AlertSettings,
    *,
    connect_timeout: float | None = None,
    read_timeout: float | None = None,
    throttle: float | None = None,
) -> list[Target]:
    """Build one Target per configured service: `urls` first, then the services of `config_file`.

    Timeouts are per scheme (`timeouts_for`); `connect_timeout`/`read_timeout`, when given, replace
    them for every target (tests). `throttle`, when given, replaces apprise's per-service pause between
    two sends (email 5.5 s, Slack 1.2 s). Raise AlertError listing every entry that is not usable
    (by its key, never the URL).
    """
    import apprise

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
            "; ".join(problems),
            hint="see https://github.com/caronc/apprise/wiki for each service's URL format",
        )
    targets: list[Target] = []
    for index, (scheme, plugin, tags) in enumerate(plugins):
        default_connect, default_read = timeouts_for(scheme)
        cto = default_connect if connect_timeout is None else connect_timeout
        rto = default_read if read_timeout is None else read_timeout
        plugin.socket_connect_timeout = cto
        plugin.socket_read_timeout = rto
        if throttle is not None:
            plugin.request_rate_per_sec = throttle
        one = apprise.Apprise()
        one.add(plugin)
        deadline = (max(cto, rto) if scheme in EMAIL_SCHEMES else cto + rto) + DEADLINE_MARGIN
        targets.append(
            Target(
                f"{scheme}#{index}",
                str(plugin.service_name),
                tags,
                one,
                scheme=scheme,
                connect_timeout=cto,
                read_timeout=rto,
                deadline=deadline,
            )
        )
    return targets


def route(targets: Sequence[Target], severity: Severity, routes: dict[str, list[str]]) -> list[Target]:
    """Return the targets a message of `severity` goes to (see the module doc)."""
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


def _messages(result: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for service_result in result:
        for entry in service_result.logs():
            level = entry.level if isinstance(entry.level, str) else logging.getLevelName(entry.level)
            out.append((str(level).upper(), str(entry.message)))
    return out


def _error_text(result: Any, messages: list[tuple[str, str]]) -> str:
    """A short reason from apprise's per-service logs, with anything URL-like removed (URLs hold tokens)."""
    status = getattr(getattr(result, "status", None), "name", "FAILURE")
    serious = [m for level, m in messages if level in ("WARNING", "ERROR", "CRITICAL")]
    text = serious[-1] if serious else ""
    text = _URL_IN_TEXT.sub("<url>", text)
    return clean(f"{status}: {text}" if text else status, 300)
