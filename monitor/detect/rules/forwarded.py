"""forwarded-mismatch: a forwarded-for value from a peer that is not a trusted proxy, naming another
address (a spoofing attempt, or trusted_proxies is missing the proxy); or a forwarded-for chain from a
trusted proxy whose next hop is not an address (`unknown`, `garbage`, `010.000.000.005`), which hides
the sender behind that proxy."""

from __future__ import annotations

from monitor.core.records import Alert, Request, Severity
from monitor.detect.rules import text as rules_text
from monitor.detect.rules.base import Shared, View


class Forwarded:
    id = "forwarded-mismatch"

    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def check(self, view: View) -> list[Alert]:
        from monitor.parsers import first_forwarded, forwarded_unreadable

        ip = view.ip
        hits: list[tuple[Request, str]] = []
        unreadable: list[Request] = []  # a trusted proxy forwarded a hop that is no address
        for r in view.reqs:
            if r.forwarded_for and r.peer_ip is None:
                claimed = first_forwarded(r.forwarded_for)
                if claimed is not None and claimed != ip:
                    hits.append((r, claimed))
            elif r.forwarded_for and forwarded_unreadable(r.client_ip, r.peer_ip):
                unreadable.append(r)
        ts = hits[0][0].ts if hits else unreadable[0].ts if unreadable else None
        key = f"forwarded-mismatch:{ip}"
        if ts is None or not self.shared.cooldowns.gate(key, self.id, ts):
            return []
        claimed_ips = sorted({c for _, c in hits})
        who = self.shared.who(ip)
        values = sorted({r.forwarded_for or "" for r in unreadable})
        title, message = (
            rules_text.forwarded_text(ip, who, view.source, ts, len(hits), claimed_ips)
            if hits
            else rules_text.forwarded_unreadable_text(ip, who, view.source, ts, len(unreadable), values)
        )
        details: dict[str, object] = {"source": view.source, "claimed": claimed_ips[:20]}
        return [Alert(ts, self.id, Severity.WARNING, title, message, (ip,), key, details)]
