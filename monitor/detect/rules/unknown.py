"""unknown-source: a source that is not known (allow-list, admins, approvals), and waves of them.

One alert when an address is first seen; after that only when it escalates (touches a more dangerous
endpoint category) once the cooldown has passed, or as a daily reminder while it stays active, so a
slow drip of one request an hour gives a few alerts, not one an hour. More than WAVE_THRESHOLD new
addresses within WAVE_WINDOW form a wave: one alert for all, at most every WAVE_WINDOW. The count is
kept per minute of log time, so each address costs constant work, and at most `max_tracked`
addresses are remembered (least recently active first out), so no flood grows the memory.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from monitor.core.endpoints import Category, classify
from monitor.core.records import Alert, Request, Severity
from monitor.detect.known import KnownSources, Status
from monitor.detect.rules import text as rules_text
from monitor.detect.rules.base import RANK, REMINDER, Shared, View, floor_minute

WAVE_WINDOW = timedelta(minutes=10)  # new unknown sources within this span count towards a wave
WAVE_THRESHOLD = 3  # more new unknown sources than this in WAVE_WINDOW: one wave alert, not one each
WAVE_BUCKET = timedelta(minutes=1)  # new unknown sources are counted per minute of log time
WAVE_LISTED = 1_000  # addresses a wave alert lists (client_ips); the rest are counted


@dataclass(slots=True)
class _SourceMemory:
    """What the rule remembers about one unknown address (a few fixed-size fields)."""

    first_seen: datetime
    last_alert: datetime | None = None
    worst: int = -1  # highest category rank alerted so far
    seen_rank: int = -1  # highest category rank seen so far
    requests: int = 0
    in_wave: bool = False
    unlisted: int = -1  # the wave alert (generation) that counts it without listing it


class UnknownSources:
    id = "unknown-source"

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.memory: OrderedDict[str, _SourceMemory] = OrderedDict()  # order = recency
        # Wave detection, linear in the number of new addresses: first sightings counted per minute of
        # log time, and the recent ones that are not wave members yet (at most WAVE_THRESHOLD + a few).
        self._new_per_minute: dict[datetime, int] = {}
        self._candidates: deque[tuple[datetime, str]] = deque()
        self._window_minute: datetime | None = None  # the minute whose window sum is _window_count
        self._window_count = 0
        # Wave members not yet reported: ip -> (first seen, requests, log source); at most WAVE_LISTED,
        # the others counted in _wave_more (members, requests, last time) under generation _wave_gen.
        self._wave: dict[str, tuple[datetime, int, str]] = {}
        self._wave_more: list[int] = [0, 0]
        self._wave_more_last: datetime | None = None
        self._wave_gen = 0
        self._last_wave: datetime | None = None

    # --- state ---------------------------------------------------------------------------------
    def seed(self, last_alerts: Mapping[str, tuple[datetime, Mapping[str, object]]]) -> None:
        for key, (ts, details) in last_alerts.items():
            if key.startswith("unknown-source:"):
                first = details.get("first_seen")
                worst = details.get("worst_rank", -1)
                self.memory[key.split(":", 1)[1]] = _SourceMemory(
                    first_seen=datetime.fromisoformat(first) if isinstance(first, str) else ts,
                    last_alert=ts,
                    worst=worst if isinstance(worst, int) else -1,
                )
        self.shared.cap(self.memory)

    def set_known(self, known: KnownSources) -> None:
        for ip in [ip for ip in self.memory if known.is_known(ip)]:
            del self.memory[ip]

    def in_wave(self, ip: str) -> bool:
        mem = self.memory.get(ip)
        return mem is not None and mem.in_wave

    def sizes(self) -> dict[str, int]:
        return {
            "unknown": len(self.memory),
            "wave_listed": len(self._wave),
            "wave_candidates": len(self._candidates),
        }

    def prune(self, now: datetime) -> None:
        cd = self.shared.cooldowns
        horizon = max(REMINDER, cd.of("unknown-source"), cd.of("management-endpoint"))
        self.memory = OrderedDict(
            (ip, m)
            for ip, m in self.memory.items()
            if m.last_alert is None or now - m.last_alert < horizon * 2
        )

    # --- waves ---------------------------------------------------------------------------------
    def _count_new(self, ts: datetime) -> int:
        """Count a first sighting at `ts`; return the first sightings in the WAVE_WINDOW up to `ts`
        (whole minutes: the current one and the 9 before it). At most a dozen buckets are kept."""
        minute = floor_minute(ts)
        buckets = self._new_per_minute
        buckets[minute] = buckets.get(minute, 0) + 1
        if minute == self._window_minute:  # the common case: the window's sum is known
            self._window_count += 1
            return self._window_count
        if len(buckets) > WAVE_WINDOW // WAVE_BUCKET + 2:
            newest = max(buckets)
            for old in [m for m in buckets if newest - m >= WAVE_WINDOW]:
                del buckets[old]
        self._window_minute = minute
        self._window_count = sum(n for m, n in buckets.items() if timedelta(0) <= minute - m < WAVE_WINDOW)
        return self._window_count

    def _join_wave(self, ip: str, mem: _SourceMemory, ts: datetime, source: str) -> None:
        """Make `ip` a wave member; one not alerted before is reported by the next wave alert."""
        mem.in_wave = True
        if mem.last_alert is not None:
            return
        mem.last_alert, mem.worst = ts, mem.seen_rank
        if len(self._wave) < WAVE_LISTED:
            self._wave[ip] = (mem.first_seen, mem.requests, source)
        else:  # counted, not listed: a flood must not grow one alert without bound
            mem.unlisted = self._wave_gen
            self._wave_more[0] += 1
            self._wave_more[1] += mem.requests
            self._wave_more_last = max(ts, self._wave_more_last or ts)

    def after_batch(self, now: datetime) -> list[Alert]:
        """Return the wave alert due by `now` (members held for aggregation), if any."""
        if not self._wave or (self._last_wave is not None and now - self._last_wave < WAVE_WINDOW):
            return []
        members, self._wave = self._wave, {}
        (more, more_requests), self._wave_more = self._wave_more, [0, 0]
        more_last, self._wave_more_last = self._wave_more_last, None
        self._wave_gen += 1
        self._last_wave = now
        ips = tuple(sorted(members, key=lambda ip: members[ip][0]))
        first = min(ts for ts, _n, _s in members.values())
        last = max([ts for ts, _n, _s in members.values()] + ([more_last] if more_last else []))
        total = sum(n for _ts, n, _s in members.values()) + more_requests
        sources = sorted({src for _ts, _n, src in members.values() if src})
        title, message = rules_text.wave_text(ips, total, sources, first, last, more)
        return [
            Alert(
                last,  # log time of the newest member, not the flush (processing) time
                "unknown-source",
                Severity.WARNING,
                title,
                message,
                ips,
                f"unknown-source:wave:{first.isoformat()}",
                {"reason": "wave", "sources": len(ips) + more},
            )
        ]

    # --- one client --------------------------------------------------------------------------------
    def check(self, view: View) -> list[Alert]:
        if view.status is not Status.UNKNOWN:
            return []
        ip, reqs, source = view.ip, view.reqs, view.source
        ts = reqs[0].ts
        rank = max(RANK[classify(r.method, r.path)] for r in reqs)
        known_before = self.memory.get(ip)
        if known_before is not None:
            self.memory.move_to_end(ip)  # the order is recency
        mem = known_before or _SourceMemory(first_seen=ts)
        if known_before is None:
            self.memory[ip] = mem
            self.shared.cap(self.memory)
        if known_before is None:
            self._candidates.append((ts, ip))
            while self._candidates and ts - self._candidates[0][0] > WAVE_WINDOW:
                self._candidates.popleft()
            if self._count_new(ts) > WAVE_THRESHOLD:
                # Part of a wave: reported together (after_batch). The recent first sightings join it
                # too, each once: it leaves the candidates as it joins, so the work per address is constant.
                while self._candidates:
                    _t, member = self._candidates.popleft()
                    m = self.memory.get(member)
                    if m is not None and not m.in_wave:
                        self._join_wave(member, m, ts, source)
        mem.requests += len(reqs)
        in_wave = mem.in_wave
        if in_wave and ip in self._wave:
            ts0, n, src = self._wave[ip]
            self._wave[ip] = (ts0, n + len(reqs), src)
        elif in_wave and mem.unlisted == self._wave_gen:
            self._wave_more[1] += len(reqs)
        mem.seen_rank = max(mem.seen_rank, rank)
        cooldown = self.shared.cooldowns.of("unknown-source")
        if mem.last_alert is None:
            reason = "first seen"
        elif rank > mem.worst and ts - mem.last_alert >= cooldown:
            reason = "escalated"  # wave members too: a scanner that starts using the API is news
        elif not in_wave and ts - mem.last_alert >= max(REMINDER, cooldown):
            reason = "still active"
        else:
            return []
        mem.last_alert = ts
        mem.worst = max(mem.worst, rank)
        key = f"unknown-source:{ip}"
        self.shared.cooldowns.last[key] = ts
        return [self._alert(ip, reqs, source, reason, mem, rank, key)]

    def _alert(
        self, ip: str, reqs: list[Request], source: str, reason: str, mem: _SourceMemory, rank: int, key: str
    ) -> Alert:
        ts = reqs[0].ts
        inference = sum(1 for r in reqs if classify(r.method, r.path) is Category.INFERENCE)
        severity = Severity.CRITICAL if rank >= RANK[Category.INFERENCE] else Severity.WARNING
        title, message = rules_text.unknown_source_text(
            ip, reason, source, ts, mem.first_seen, mem.requests, reqs, inference
        )
        return Alert(
            ts,
            "unknown-source",
            severity,
            title,
            message,
            (ip,),
            key,
            {
                "source": source,
                "reason": reason,
                "requests": mem.requests,
                "first_seen": mem.first_seen.isoformat(),
                "worst_rank": mem.worst,
            },
        )
