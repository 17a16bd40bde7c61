"""The engine: runs every rule of this package over each stored batch, with one set of cooldowns."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from monitor.config import RuleSettings
from monitor.core.endpoints import Category
from monitor.core.records import Alert, Request
from monitor.detect.known import KnownSources
from monitor.detect.rules.auth import AuthFailures
from monitor.detect.rules.base import MAX_TRACKED, Cooldowns, Shared, View
from monitor.detect.rules.direct import DirectAccess
from monitor.detect.rules.forwarded import Forwarded
from monitor.detect.rules.parse_failures import ParseFailures
from monitor.detect.rules.privileged import Privileged
from monitor.detect.rules.probe import Probe
from monitor.detect.rules.recon import Recon
from monitor.detect.rules.unknown import UnknownSources

PRUNE_EVERY = timedelta(minutes=10)


class RulesEngine:
    """Evaluates the immediate rules. Create once; call `evaluate` for every stored batch."""

    def __init__(
        self,
        settings: RuleSettings,
        known: KnownSources,
        *,
        proxy_configured: bool = False,
        trusted_proxies: Iterable[str] = (),
        max_tracked: int = MAX_TRACKED,
    ) -> None:
        self.settings = settings
        self.known = known
        self.proxy_configured = proxy_configured
        self.cooldowns = Cooldowns(settings)
        self.shared = Shared(settings, known, self.cooldowns, max_tracked)
        self.unknown = UnknownSources(self.shared)
        self.recon = Recon(self.shared, self.unknown.in_wave)
        self.auth = AuthFailures(self.shared)
        self.direct = DirectAccess(self.shared, proxy_configured, trusted_proxies)
        self.parse_failures = ParseFailures(self.shared)
        # In the order their alerts come out for one client.
        self._per_client = (
            self.unknown,
            Privileged(self.shared, Category.MANAGEMENT),
            Privileged(self.shared, Category.ACCOUNT),
            self.recon,
            Probe(self.shared),
            self.auth,
            Forwarded(self.shared),
            self.direct,
        )
        self._stateful = (
            self.cooldowns,
            self.unknown,
            self.recon,
            self.auth,
            self.direct,
            self.parse_failures,
        )
        self._last_prune: datetime | None = None

    # --- state ---------------------------------------------------------------------------------
    def seed(self, last_alerts: Mapping[str, tuple[datetime, Mapping[str, object]]]) -> None:
        """Restore cooldowns from stored alerts: dedup key -> (time of the last alert, its details)."""
        self.cooldowns.seed(last_alerts)
        self.unknown.seed(last_alerts)

    def set_known(self, known: KnownSources) -> None:
        """Use new known sources (after an approval or a config reload)."""
        self.known = self.shared.known = known
        self.unknown.set_known(known)

    def state_sizes(self) -> dict[str, int]:
        """How many entries each piece of per-address state holds (for tests and benchmarks)."""
        return {
            **self.unknown.sizes(),
            "cooldowns": len(self.cooldowns.last),
            "recon": len(self.recon.seen),
            "auth": len(self.auth.failures),
            "proxy_seen": len(self.direct.proxy_seen),
            "pending_direct": len(self.direct.pending),
        }

    def enabled(self, rule: str) -> bool:
        return rule not in self.settings.disabled

    def cooldown(self, rule: str) -> timedelta:
        return self.cooldowns.of(rule)

    def gate(self, key: str, rule: str, ts: datetime, minimum: timedelta = timedelta(0)) -> bool:
        """Return True (and start a cooldown) if an alert with this key may be raised at `ts`.

        The cooldown is the rule's (settings), or `minimum` if longer."""
        return self.cooldowns.gate(key, rule, ts, minimum)

    # --- evaluation ----------------------------------------------------------------------------------
    def evaluate(
        self,
        requests: Sequence[Request],
        now: datetime,
        *,
        source: str = "",
        is_proxy: bool = False,
        rejects: Sequence[tuple[int, str, str]] = (),
    ) -> list[Alert]:
        """Given one stored batch from `source` (its requests, and its rejected lines as the store
        keeps them: offset, reason, text), return the alerts it raises (cooldowns applied)."""
        alerts: list[Alert] = []
        if rejects and self.enabled(self.parse_failures.id):
            alerts.extend(self.parse_failures.rejected(source, rejects, now))
        by_ip: dict[str, list[Request]] = {}
        for r in requests:
            by_ip.setdefault(r.client_ip, []).append(r)
        checks = [rule.check for rule in self._per_client if self.enabled(rule.id)]
        for ip, reqs in by_ip.items():
            view = View(ip, reqs, self.known.status(ip), source, is_proxy)
            for check in checks:
                alerts.extend(check(view))
        if self.enabled(self.direct.id):
            alerts.extend(self.direct.after_batch(now))
        alerts.extend(self.flush(now))
        self._prune(now)
        return alerts

    def flush(self, now: datetime) -> list[Alert]:
        """Return alerts held for aggregation (a wave of new unknown sources) that are due by `now`."""
        return self.unknown.after_batch(now)

    def _prune(self, now: datetime) -> None:
        """Forget state that no rule can use any more (keeps memory bounded under a wave of addresses)."""
        if self._last_prune is not None and now - self._last_prune < PRUNE_EVERY:
            return
        self._last_prune = now
        for part in self._stateful:
            part.prune(now)
