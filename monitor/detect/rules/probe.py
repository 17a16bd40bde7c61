"""scanner-probe: paths only scanners ask for (monitor.core.endpoints.is_probe), from any source."""

from __future__ import annotations

from monitor.core.endpoints import is_probe
from monitor.core.records import Alert, Severity
from monitor.detect.rules import text as rules_text
from monitor.detect.rules.base import Shared, View


class Probe:
    id = "scanner-probe"

    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def check(self, view: View) -> list[Alert]:
        hits = [r for r in view.reqs if is_probe(r.path)]
        if not hits:
            return []
        ip = view.ip
        key = f"scanner-probe:{ip}"
        if not self.shared.cooldowns.gate(key, self.id, hits[0].ts):
            return []
        title, message = rules_text.probe_text(ip, self.shared.who(ip, view.status), view.source, hits)
        details: dict[str, object] = {"source": view.source, "calls": len(hits)}
        return [Alert(hits[0].ts, self.id, Severity.WARNING, title, message, (ip,), key, details)]
