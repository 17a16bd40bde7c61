"""direct-access: Ollama's own log shows a non-loopback client that no proxy source saw, while a proxy
source is configured: someone bypasses the proxy.

A Gin line may be stored before the proxy's line for the same request, so a client is decided
DIRECT_GRACE after its first request; it went around the proxy if no proxy source saw it within
PROXY_SEEN of that request.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime, timedelta

from monitor.core.records import Alert, Request, Severity
from monitor.detect.rules import text as rules_text
from monitor.detect.rules.base import Shared, View

DIRECT_GRACE = timedelta(minutes=2)
PROXY_SEEN = timedelta(minutes=10)


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


class DirectAccess:
    id = "direct-access"

    def __init__(self, shared: Shared, proxy_configured: bool, trusted_proxies: Iterable[str]) -> None:
        self.shared = shared
        self.proxy_configured = proxy_configured
        self._trusted = tuple(ipaddress.ip_network(n, strict=False) for n in trusted_proxies)
        self.proxy_seen: OrderedDict[str, datetime] = OrderedDict()  # client ip -> last seen by a proxy
        self.pending: OrderedDict[str, tuple[datetime, Request, str]] = OrderedDict()

    def _is_trusted_proxy(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in n for n in self._trusted)

    def check(self, view: View) -> list[Alert]:
        ip, reqs = view.ip, view.reqs
        if view.is_proxy:
            seen = self.proxy_seen.get(ip)
            if seen is None:
                self.proxy_seen[ip] = reqs[-1].ts
                self.shared.cap(self.proxy_seen)
            else:
                self.proxy_seen[ip] = max(seen, reqs[-1].ts)
                self.proxy_seen.move_to_end(ip)
        elif (
            self.proxy_configured
            and ip not in self.pending
            and not _is_loopback(ip)
            and not self._is_trusted_proxy(ip)
        ):
            self.pending[ip] = (reqs[0].ts, reqs[0], view.source)
            self.shared.cap(self.pending)
        return []

    def after_batch(self, now: datetime) -> list[Alert]:
        out: list[Alert] = []
        for ip, (ts, req, source) in list(self.pending.items()):
            if now - ts < DIRECT_GRACE:
                continue
            del self.pending[ip]
            seen = self.proxy_seen.get(ip)
            if seen is not None and abs(seen - ts) <= PROXY_SEEN:
                continue
            key = f"direct-access:{ip}"
            if not self.shared.cooldowns.gate(key, self.id, ts):
                continue
            title, message = rules_text.direct_text(ip, self.shared.who(ip), source, ts, req)
            out.append(Alert(ts, self.id, Severity.WARNING, title, message, (ip,), key, {"source": source}))
        return out

    def prune(self, now: datetime) -> None:
        self.proxy_seen = OrderedDict(
            (ip, t) for ip, t in self.proxy_seen.items() if now - t < PROXY_SEEN * 2
        )
