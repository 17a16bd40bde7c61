"""Exposure evidence in the stored requests: clients that reached Ollama directly although a reverse
proxy is configured, unknown sources, management calls from outside, and whether proxied requests are
ever refused with 401.

The SQL lives in `monitor.store.audit_queries`; this module classifies (loopback, known sources,
endpoint categories) and words the findings. A missing or empty database is an info finding, and so
is a database that cannot be opened: the host checks still stand on their own.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from monitor.config import Settings
from monitor.core.endpoints import MANAGEMENT_PATHS, MANAGEMENT_PREFIXES, Category, classify, normalise
from monitor.core.errors import MonitorError
from monitor.core.records import Severity
from monitor.detect.known import KnownSources, Status
from monitor.reports.audit import remedies as fix
from monitor.reports.audit.findings import Finding
from monitor.reports.audit.host import Exposure, exposure_of
from monitor.reports.audit.proxy import ProxySite

SHOWN = 10  # clients listed in a finding's evidence


def sqlite_missing(url: str) -> str | None:
    """Return the database file path when `url` is SQLite and the file does not exist, else None."""
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[1].split("?", 1)[0] if ":///" in url else ""
    if not path or path == ":memory:":
        return None
    return None if os.path.exists(path) else path


def log_findings(
    settings: Settings,
    open_store: Callable[[], Any] | None,
    since: datetime,
    days: int,
    port: int,
    sites: Sequence[ProxySite] = (),
) -> list[Finding]:
    """Findings from the stored requests since `since` (`days` and `port` word them; `sites` are the
    proxy configurations found, which temper the 401 check). Never raises for a missing or broken
    database: that becomes an info finding."""
    if open_store is None:
        return []
    missing = sqlite_missing(settings.database.url)
    if missing is not None:
        return [
            Finding(
                "logs.no-database",
                Severity.INFO,
                "No request database yet: log evidence not checked",
                (f"database file {missing} does not exist",),
                fix.NO_DATA,
            )
        ]
    try:
        store = open_store()
    except MonitorError as exc:
        return [
            Finding(
                "logs.unavailable",
                Severity.INFO,
                "The request database could not be opened: log evidence not checked",
                (str(exc),),
                exc.hint or "",
            )
        ]
    try:
        from monitor.store.audit_queries import shared_totals

        with shared_totals(store):
            return _from_store(settings, store, since, days, port, sites)
    finally:
        store.close()


def _from_store(
    settings: Settings, store: Any, since: datetime, days: int, port: int, sites: Sequence[ProxySite]
) -> list[Finding]:
    from monitor.store import audit_queries as q

    if not q.has_requests(store):
        return [
            Finding(
                "logs.no-data",
                Severity.INFO,
                "The database holds no requests yet: log evidence not checked",
                (),
                fix.NO_DATA,
            )
        ]
    if q.request_count(store, since) == 0:
        return [
            Finding(
                "logs.no-recent-data",
                Severity.INFO,
                f"No requests stored in the last {days} day(s)",
                ("is the daemon running? `ollama-monitor status`",),
            )
        ]
    known = KnownSources(settings.known, [str(a["network"]) for a in store.approvals()])
    findings = _direct_access(settings, store, since, days, port)
    findings += _unknown_sources(store, since, days, known)
    findings += _management(store, since, days, known, port)
    if not findings:
        findings.append(
            Finding(
                "logs.clean",
                Severity.INFO,
                f"No direct access, unknown source or outside management call in the last {days} day(s)",
            )
        )
    return findings + _proxy_statuses(settings, store, since, days, port, sites)


def _when(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%d %H:%M UTC")


def _client_lines(rows: Sequence[Any], known: KnownSources | None = None) -> list[str]:
    lines = []
    for c in rows[:SHOWN]:
        name = known.name(c.client_ip) if known else None
        label = f"{c.client_ip} ({name})" if name else c.client_ip
        lines.append(
            f"{label}: {c.requests} request(s), {c.success} answered 2xx, "
            f"first {_when(c.first_seen)}, last {_when(c.last_seen)}"
        )
    if len(rows) > SHOWN:
        lines.append(f"... and {len(rows) - SHOWN} more")
    return lines


def _direct_access(settings: Settings, store: Any, since: datetime, days: int, port: int) -> list[Finding]:
    from monitor.store import audit_queries as q

    ollama = [s.name for s in settings.sources if s.format == "ollama"]
    proxies = [s.name for s in settings.sources if s.is_proxy]
    if not ollama:
        return []
    remote = [
        c
        for c in q.clients_since(store, since, sources=ollama)
        if exposure_of(c.client_ip) is not Exposure.LOOPBACK
    ]
    if proxies:
        # A proxy that sets X-Forwarded-For makes Gin log the real client: those also appear in the
        # proxy's own log, so only clients the proxy never saw can have come in directly.
        via_proxy = {c.client_ip for c in q.clients_since(store, since, sources=proxies)}
        remote = [c for c in remote if c.client_ip not in via_proxy]
    if not remote:
        return []
    public = any(exposure_of(c.client_ip) is Exposure.PUBLIC for c in remote)
    severity = Severity.CRITICAL if public else Severity.WARNING
    evidence = [f"Ollama's own log ({', '.join(ollama)}), last {days} day(s):", *_client_lines(remote)]
    if proxies:
        title = f"{len(remote)} non-loopback client(s) reached Ollama directly, bypassing the proxy ({', '.join(proxies)})"
        evidence.append(
            "these addresses never appear in the proxy's log (a forged X-Forwarded-For can also cause this)"
        )
        return [
            Finding(
                "logs.direct-access",
                severity,
                title,
                tuple(evidence),
                fix.bind(port) + "\n" + fix.firewall(port),
            )
        ]
    title = f"{len(remote)} non-loopback client(s) reached Ollama with no reverse proxy configured"
    return [
        Finding(
            "logs.remote-clients", severity, title, tuple(evidence), fix.bind(port) + "\n" + fix.proxy(port)
        )
    ]


def _unknown_sources(store: Any, since: datetime, days: int, known: KnownSources) -> list[Finding]:
    from monitor.store import audit_queries as q

    unknown = [c for c in q.clients_since(store, since) if known.status(c.client_ip) is Status.UNKNOWN]
    if not unknown:
        return []
    served_public = [c for c in unknown if exposure_of(c.client_ip) is Exposure.PUBLIC and c.success]
    severity = Severity.CRITICAL if served_public else Severity.WARNING
    title = f"{len(unknown)} unknown source(s) in the last {days} day(s)"
    if served_public:
        title += f", {len(served_public)} public address(es) answered with 2xx"
    return [
        Finding(
            "logs.unknown-sources",
            severity,
            title,
            tuple(_client_lines(unknown, known)),
            fix.approve(unknown[0].client_ip),
        )
    ]


def _management(store: Any, since: datetime, days: int, known: KnownSources, port: int) -> list[Finding]:
    from monitor.store import audit_queries as q

    fragments = sorted(MANAGEMENT_PATHS) + list(MANAGEMENT_PREFIXES)
    per_client: dict[str, dict[str, int]] = {}
    for call in q.calls_matching(store, since, fragments):
        if exposure_of(call.client_ip) is Exposure.LOOPBACK or known.status(call.client_ip) is Status.ADMIN:
            continue
        if classify(call.method, call.path) is not Category.MANAGEMENT:
            continue
        route = f"{call.method or '-'} {normalise(call.path)}"
        routes = per_client.setdefault(call.client_ip, {})
        routes[route] = routes.get(route, 0) + call.requests
    if not per_client:
        return []
    statuses = {ip: known.status(ip) for ip in per_client}
    severity = Severity.CRITICAL if Status.UNKNOWN in statuses.values() else Severity.WARNING
    ranked = sorted(per_client.items(), key=lambda kv: -sum(kv[1].values()))
    evidence = [
        f"{ip} ({statuses[ip].value}): "
        + ", ".join(f"{r} x{n}" for r, n in sorted(routes.items(), key=lambda kv: -kv[1])[:5])
        for ip, routes in ranked[:SHOWN]
    ]
    if len(ranked) > SHOWN:
        evidence.append(f"... and {len(ranked) - SHOWN} more")
    title = f"Management calls (pull/push/create/copy/delete/blobs) from {len(per_client)} non-admin source(s) in the last {days} day(s)"
    return [Finding("logs.management-outside", severity, title, tuple(evidence), fix.least_privilege(port))]


def _proxy_statuses(
    settings: Settings, store: Any, since: datetime, days: int, port: int, sites: Sequence[ProxySite]
) -> list[Finding]:
    """Say whether requests through each proxy source are ever refused with 401 (a sign of auth)."""
    from monitor.store import audit_queries as q

    proxies = [s.name for s in settings.sources if s.is_proxy]
    rows = q.statuses_by_source(store, since, proxies)
    configured_auth = any(s.auth for s in sites)
    findings = []
    for row in rows:
        counts = (
            f"{row.requests} request(s) through {row.source} in the last {days} day(s): {row.unauthorized} x 401, "
            f"{row.forbidden} x 403, {row.success} x 2xx"
        )
        if row.unauthorized:
            findings.append(
                Finding(
                    "proxy.401-seen",
                    Severity.INFO,
                    f"Proxy source {row.source} refuses requests without credentials (401)",
                    (counts,),
                )
            )
        elif configured_auth:
            findings.append(
                Finding(
                    "proxy.no-401",
                    Severity.INFO,
                    f"No 401 through {row.source}, but the proxy configuration asks for credentials",
                    (counts,),
                )
            )
        else:
            findings.append(
                Finding(
                    "proxy.no-401",
                    Severity.WARNING,
                    f"No 401 in {row.requests} request(s) through {row.source}: requests may not be authenticated",
                    (counts,),
                    fix.proxy(port),
                )
            )
    return findings
