"""auth-failures: a burst of 401/403 responses to one source behind an authenticating proxy.

Proxy sources only: Ollama itself answers 403 to CORS rejections.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from datetime import datetime, timedelta

from monitor.core.records import Alert, Severity
from monitor.detect.rules import text as rules_text
from monitor.detect.rules.base import Shared, View

AUTH_WINDOW = timedelta(minutes=10)


class AuthFailures:
    id = "auth-failures"

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.failures: OrderedDict[str, deque[datetime]] = OrderedDict()  # only clients that failed

    def check(self, view: View) -> list[Alert]:
        if not view.is_proxy:
            return []
        ip = view.ip
        failed = [r.ts for r in view.reqs if r.status in (401, 403)]
        q = self.failures.get(ip)
        if q is None:
            if not failed:
                return []
            q = self.failures[ip] = deque()
            self.shared.cap(self.failures)
        q.extend(failed)
        while q and q[-1] - q[0] > AUTH_WINDOW:
            q.popleft()
        threshold = self.shared.settings.auth_failures_threshold
        if len(q) < threshold:
            return []
        key = f"auth-failures:{ip}"
        if not self.shared.cooldowns.gate(key, self.id, q[-1]):
            return []
        title, message = rules_text.auth_text(ip, self.shared.who(ip), view.source, q, AUTH_WINDOW, threshold)
        details: dict[str, object] = {"source": view.source, "failures": len(q)}
        return [Alert(q[-1], self.id, Severity.WARNING, title, message, (ip,), key, details)]

    def prune(self, now: datetime) -> None:
        self.failures = OrderedDict(
            (ip, q) for ip, q in self.failures.items() if q and now - q[-1] < AUTH_WINDOW
        )
