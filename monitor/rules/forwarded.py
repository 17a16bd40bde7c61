"""forwarded-mismatch: a forwarded-for value from a peer that is not a trusted proxy, naming another
address (a spoofing attempt, or trusted_proxies is missing the proxy)."""

from __future__ import annotations

from monitor import rules_text
from monitor.records import Alert, Request, Severity
from monitor.rules.base import Shared, View


class Forwarded:
    id = "forwarded-mismatch"

    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def check(self, view: View) -> list[Alert]:
        from monitor.parsers import first_forwarded

        ip = view.ip
        hits: list[tuple[Request, str]] = []
        for r in view.reqs:
            if r.forwarded_for and r.peer_ip is None:
                claimed = first_forwarded(r.forwarded_for)
                if claimed is not None and claimed != ip:
                    hits.append((r, claimed))
        if not hits:
            return []
        key = f"forwarded-mismatch:{ip}"
        ts = hits[0][0].ts
        if not self.shared.cooldowns.gate(key, self.id, ts):
            return []
        claimed_ips = sorted({c for _, c in hits})
        title, message = rules_text.forwarded_text(
            ip, self.shared.who(ip), view.source, ts, len(hits), claimed_ips
        )
        details: dict[str, object] = {"source": view.source, "claimed": claimed_ips[:20]}
        return [Alert(ts, self.id, Severity.WARNING, title, message, (ip,), key, details)]
