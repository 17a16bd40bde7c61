"""recon-sequence: an unknown source walking the enumeration endpoints.

`/` + tags, show + tags, version + tags, or three distinct enumeration calls within RECON_WINDOW.
Known sources are exempt (Open WebUI and friends call tags and show all day), and so are wave
members (the wave alert covers them).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import datetime, timedelta

from monitor.core.endpoints import Category, classify, normalise
from monitor.core.records import Alert, Severity
from monitor.detect.known import Status
from monitor.detect.rules import text as rules_text
from monitor.detect.rules.base import Shared, View

RECON_WINDOW = timedelta(minutes=10)


class Recon:
    id = "recon-sequence"

    def __init__(self, shared: Shared, in_wave: Callable[[str], bool]) -> None:
        self.shared = shared
        self.in_wave = in_wave
        self.seen: OrderedDict[str, deque[tuple[datetime, str]]] = OrderedDict()  # clients that enumerate

    def check(self, view: View) -> list[Alert]:
        ip = view.ip
        if view.status is not Status.UNKNOWN or self.in_wave(ip):
            return []
        found = [
            (r.ts, normalise(r.path)) for r in view.reqs if classify(r.method, r.path) is Category.ENUMERATION
        ]
        seen = self.seen.get(ip)
        if seen is None:
            if not found:
                return []
            seen = self.seen[ip] = deque()
            self.shared.cap(self.seen)
        seen.extend(found)
        if not seen:
            return []
        last_ts = seen[-1][0]
        while seen and last_ts - seen[0][0] > RECON_WINDOW:
            seen.popleft()
        paths = {p for _, p in seen}
        tags = "/api/tags" in paths or "/v1/models" in paths
        if not (
            (tags and ("/" in paths or "/api/show" in paths or "/api/version" in paths)) or len(paths) >= 3
        ):
            return []
        key = f"recon-sequence:{ip}"
        if not self.shared.cooldowns.gate(key, self.id, last_ts):
            return []
        title, message = rules_text.recon_text(
            ip, sorted(paths), len(seen), RECON_WINDOW, view.source, seen[0][0], last_ts
        )
        details: dict[str, object] = {"source": view.source, "paths": sorted(paths)}
        return [Alert(last_ts, self.id, Severity.WARNING, title, message, (ip,), key, details)]

    def prune(self, now: datetime) -> None:
        self.seen = OrderedDict((ip, q) for ip, q in self.seen.items() if q and now - q[-1][0] < RECON_WINDOW)
