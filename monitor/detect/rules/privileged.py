"""management-endpoint (critical) and account-endpoint: privileged calls by anyone not in admins.

Management: pull, push, create, copy, delete, blobs. Account: the ollama.com account and cloud
endpoints (critical for a DELETE). Known, approved and loopback sources included.
"""

from __future__ import annotations

from monitor.core.endpoints import Category, classify
from monitor.core.records import Alert, Severity
from monitor.detect.known import Status
from monitor.detect.rules import text as rules_text
from monitor.detect.rules.base import Shared, View


class Privileged:
    """One of the two rules, by its endpoint category."""

    def __init__(self, shared: Shared, category: Category) -> None:
        self.shared = shared
        self.category = category
        self.id = "management-endpoint" if category is Category.MANAGEMENT else "account-endpoint"

    def check(self, view: View) -> list[Alert]:
        if view.status is Status.ADMIN:
            return []
        cat, ip = self.category, view.ip
        hits = [r for r in view.reqs if classify(r.method, r.path) is cat]
        if not hits:
            return []
        key = f"{self.id}:{ip}"
        ts = hits[0].ts
        if not self.shared.cooldowns.gate(key, self.id, ts):
            return []
        ok = [r for r in hits if r.status is not None and r.status < 400]
        severity = (
            Severity.CRITICAL
            if cat is Category.MANAGEMENT or any(r.method == "DELETE" for r in hits)
            else Severity.WARNING
        )
        title, message = rules_text.privileged_text(
            ip,
            self.shared.who(ip, view.status),
            view.status,
            cat is Category.MANAGEMENT,
            view.source,
            ts,
            hits,
            len(ok),
        )
        details: dict[str, object] = {
            "source": view.source,
            "calls": len(hits),
            "succeeded": len(ok),
            "status": view.status.value,
        }
        return [Alert(ts, self.id, severity, title, message, (ip,), key, details)]
