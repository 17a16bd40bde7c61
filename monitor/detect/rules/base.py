"""What every rule shares: the cooldowns, the view of one client's requests in a batch, bounded maps.

A rule is a class with `check(view) -> list[Alert]` (one client's requests of one stored batch),
optionally `after_batch(now) -> list[Alert]` (work that is not per client) and `prune(now)` (forget
what no alert can use any more); `monitor.detect.rules.engine` runs them all. The clock is always an
argument; nothing here does I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from monitor.config import RuleSettings
from monitor.core.endpoints import Category
from monitor.core.records import Request
from monitor.detect.known import KnownSources, Status
from monitor.detect.rules import text as rules_text

REMINDER = timedelta(hours=24)
MAX_TRACKED = 50_000  # per-address entries a rule keeps; the least recently active go first
RANK = {
    Category.OTHER: 0,
    Category.ENUMERATION: 1,
    Category.INFERENCE: 2,
    Category.ACCOUNT: 3,
    Category.MANAGEMENT: 4,
}


class Cooldowns:
    """One alert per dedup key per cooldown: key -> the time of its last alert."""

    def __init__(self, settings: RuleSettings) -> None:
        self.settings = settings
        self.last: dict[str, datetime] = {}
        self._of: dict[str, timedelta] = {}

    def of(self, rule: str) -> timedelta:
        """The cooldown of `rule` (the settings are frozen: computed once per rule)."""
        found = self._of.get(rule)
        if found is None:
            found = self._of[rule] = timedelta(minutes=self.settings.cooldown_for(rule))
        return found

    def gate(self, key: str, rule: str, ts: datetime, minimum: timedelta = timedelta(0)) -> bool:
        """Return True (and start a cooldown) if an alert with this key may be raised at `ts`.

        The cooldown is the rule's (settings), or `minimum` if longer."""
        last = self.last.get(key)
        if last is not None and ts - last < max(self.of(rule), minimum):
            return False
        self.last[key] = ts
        return True

    def seed(self, last_alerts: Mapping[str, tuple[datetime, Mapping[str, object]]]) -> None:
        for key, (ts, _details) in last_alerts.items():
            self.last[key] = max(ts, self.last.get(key, ts))

    def prune(self, now: datetime) -> None:
        horizon = max(REMINDER, self.of("unknown-source"), self.of("management-endpoint"))
        self.last = {
            k: v for k, v in self.last.items() if now - v < max(horizon, self.of(k.split(":", 1)[0]))
        }


@dataclass
class Shared:
    """What the engine hands every rule: the settings, the known sources (replaced on reload) and
    the cooldowns."""

    settings: RuleSettings
    known: KnownSources
    cooldowns: Cooldowns
    max_tracked: int = MAX_TRACKED

    def who(self, ip: str, status: Status | None = None) -> str:
        return rules_text.who(ip, self.known.name(ip), status or self.known.status(ip))

    def cap(self, state: OrderedDict[str, Any]) -> None:
        """Forget the oldest entries (insertion order = least recently active) beyond max_tracked.

        An OrderedDict: popping a plain dict's first entry again and again leaves a run of deleted
        slots that every later `next(iter(d))` walks, which makes a long flood quadratic."""
        while len(state) > self.max_tracked:
            state.popitem(last=False)


@dataclass(frozen=True, slots=True)
class View:
    """One client's requests in one stored batch, with what the rules ask about it."""

    ip: str
    reqs: list[Request]
    status: Status
    source: str
    is_proxy: bool


def floor_minute(ts: datetime) -> datetime:
    return ts.replace(second=0, microsecond=0)
