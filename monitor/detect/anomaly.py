"""Which anomalous windows become `anomaly` alerts, and what those alerts say.

`AnomalyAlerts(window, known, rules, model).consider(finding, start, now)` returns the alert for one
assessed window, or None: only fresh anomalies (the window ended less than STALE before `now`) of
known sources alert, while the `anomaly` rule is enabled, at most once per source per cooldown and
never for consecutive windows of one episode (the rules' shared cooldowns decide). Unknown sources
are the rules' business (`unknown-source` and friends), not the model's.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from monitor.core.records import Alert, Severity
from monitor.detect.known import KnownSources
from monitor.detect.lifecycle import ModelLifecycle
from monitor.detect.rules import RulesEngine
from monitor.detect.rules.text import block_hint

if TYPE_CHECKING:
    from monitor.detect.model import Finding

STALE = timedelta(hours=6)  # anomalies in windows that ended longer ago than this are recorded, not alerted


class AnomalyAlerts:
    """The `anomaly` alert of an assessed window: whether it is raised, and its text."""

    def __init__(
        self, window: timedelta, known: KnownSources, rules: RulesEngine, model: ModelLifecycle
    ) -> None:
        self.window = window
        self.known = known  # replaced by the pipeline's set_known
        self.rules = rules
        self.model = model

    def consider(self, f: Finding, start: datetime, now: datetime) -> Alert | None:
        """The alert for the finding of the window at `start`, or None when it raises none."""
        recent = start + self.window >= now - STALE
        if not (
            recent and f.anomalous and self.known.is_known(f.client_ip) and self.rules.enabled("anomaly")
        ):
            return None
        found = self.alert(f)
        # One alert per source per cooldown, and never for consecutive windows of one episode.
        if self.rules.gate(found.key, "anomaly", found.ts, minimum=3 * self.window):
            return found
        return None

    def alert(self, f: Finding) -> Alert:
        """The `anomaly` alert for an anomalous finding: who, when, why, and what to do next."""
        assert f.window_start is not None, "the pipeline's frames are indexed by (client_ip, window_start)"
        ip = f.client_ip
        end = f.window_start + self.window
        status = self.known.status(ip).value
        name = self.known.name(ip)
        who = f"{ip} ({name}, {status})" if name else f"{ip} ({status})"
        rows = self.model.training_rows()
        guard = bool(f.guards)
        message = (
            f"A known source behaved unlike itself and the other sources.\nSource: {who}\n"
            f"Window: {f.window_start:%Y-%m-%d %H:%M} to {end:%H:%M} UTC\n"
            f"Why: {f.explanation}.\n"
            f"Typical = the 99th percentile of the {rows} training windows, of all known sources or of this source "
            f"alone, whichever is higher; the score is the isolation forest's (lower is stranger).\n"
            f"Next: check what ran on {ip} at that time. If it was expected, nothing to do (the model retrains daily). "
            f"If not, block it: {block_hint(ip)}"
        )
        severity = (
            Severity.CRITICAL
            if guard and f.top and f.top[0][1] > 10 * max(f.top[0][2], 1)
            else Severity.WARNING
        )
        top = ", ".join(name for name, _a, _p in f.top[:2]) or "feature mix"
        return Alert(
            end,
            "anomaly",
            severity,
            f"Unusual activity from {ip}: {top}",
            message,
            (ip,),
            f"anomaly:{ip}",
            {
                "window_start": f.window_start.isoformat(),
                "score": f.score,
                "guards": list(f.guards),
                "top": [list(t) for t in f.top],
            },
        )
