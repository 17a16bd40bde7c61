"""The window buffer: which detector windows received requests, when each closes, and computing,
scoring and saving the closed ones.

A window is `[start, start + window)` of LOG time for every client of the feature sources. Only
window starts are held between batches, never the requests themselves: a closed window's features
are read back from the store's indexed time range (monitor.detect.scoring.compute_window), so a
restart loses nothing and memory does not grow with traffic.

`Windows(settings, store, model, anomalies)`:

- `seen(source, requests, now)`: mark the windows a stored batch fell in (feature sources only).
- `find_missing(now, since)`: mark the windows whose stored requests grew since they were computed.
- `catch_up(now, emit, alert=..., limit=...)`: compute, score and save the closed windows; the
  anomaly alerts go to `emit` (with alert=False they are only recorded in the table).
- `pending()`: how many windows wait to be computed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from monitor.config import Settings
from monitor.core.records import Alert, Notification, Request
from monitor.detect import scoring as ps
from monitor.detect.anomaly import AnomalyAlerts
from monitor.detect.lifecycle import ModelLifecycle
from monitor.store import Store
from monitor.store import detect_queries as q

if TYPE_CHECKING:
    from monitor.detect.features import Profile
    from monitor.detect.frame import Windows as WindowFrame
    from monitor.detect.model import Finding

GRACE = timedelta(minutes=2)  # lines of a window may be stored a little after it ends
SAVE_ROWS = 20_000  # window rows saved per transaction when many windows are computed at once
_LONG_AGO = datetime(1970, 1, 1, tzinfo=UTC)

Emit = Callable[[list[Alert], datetime], list[Notification]]


def floor_time(ts: datetime, step: timedelta) -> datetime:
    """Floor an aware datetime to a multiple of `step` since the epoch."""
    epoch = datetime(1970, 1, 1, tzinfo=ts.tzinfo)
    return ts - ((ts - epoch) % step)


class Windows:
    """The windows waiting to be computed, and computing them: features, scores, rows, alerts."""

    def __init__(
        self, settings: Settings, store: Store, model: ModelLifecycle, anomalies: AnomalyAlerts
    ) -> None:
        det = settings.detector
        self.store = store
        self.model = model
        self.anomalies = anomalies
        self.window = timedelta(minutes=det.window_minutes)
        self.history = timedelta(days=det.history_days)
        self._window_minutes = det.window_minutes
        self._cap_days = float(det.history_days)
        # The history features' memory (which hours each source is usually active), read from the
        # stored feature rows by `load_profile` before the first window is computed.
        self.profile: Profile | None = None
        # Windows (start -> when last touched, in the caller's clock) that received requests since they
        # were computed. Only window starts are kept between batches, never the requests themselves:
        # a closed window's features are read back from the store's indexed time range.
        self._dirty: dict[datetime, datetime] = {}
        self._frontier: datetime | None = None  # the newest log time seen from a feature source
        self._checked = False  # the stored windows are compared with the stored requests once, at start
        # With a proxy in front of Ollama both logs hold the same requests: windows count the proxy's only.
        self._feature_sources = ps.feature_sources(settings)

    def load_profile(self, since: datetime, until: datetime | None = None) -> None:
        """Read the history features' memory from the feature rows stored in [since, until)."""
        self.profile = ps.build_profile(self.store, since, until)

    def rebuild(self, since: datetime, now: datetime) -> None:
        """Delete the stored windows of [since, now) so that they are computed anew, and read the
        history features' memory from the history before them."""
        q.delete_windows(self.store, floor_time(since, self.window), now)
        self.load_profile(since - self.history, since)

    def seen(self, source: str, requests: Sequence[Request], now: datetime) -> None:
        """Mark the windows of one stored batch of `source` as changed (when its requests count in
        windows), and move the log-time frontier on."""
        if not requests or (self._feature_sources is not None and source not in self._feature_sources):
            return
        newest = max(r.ts for r in requests)
        if self._frontier is None or newest > self._frontier:
            self._frontier = newest
        for start in {floor_time(r.ts, self.window) for r in requests}:
            self._dirty[start] = now

    def pending(self) -> int:
        """Windows with requests not yet computed (open ones included)."""
        return len(self._dirty)

    def find_missing(self, now: datetime, since: datetime | None = None) -> int:
        """Mark for computing the windows of [since, now) (default: the trailing history) whose stored
        requests grew since they were computed: rows stored by `ingest` or before a restart. Return how many."""
        lo, hi = q.request_span(self.store)
        if lo is None or hi is None:
            return 0
        since = max(floor_time(lo, self.window), floor_time(since or now - self.history, self.window))
        until = min(floor_time(now, self.window) + self.window, floor_time(hi, self.window) + self.window)
        todo, _counts = ps.missing_windows(self.store, since, until, self.window)
        for start in todo:
            self._dirty.setdefault(start, _LONG_AGO)
        return len(todo)

    def check_from(self, now: datetime, since: datetime) -> int:
        """`find_missing(now, since)` in place of the comparison over the trailing history that the
        first `catch_up` would make (training compares its own history)."""
        self._checked = True
        return self.find_missing(now, since)

    def _closed(self, start: datetime, touched: datetime, now: datetime) -> bool:
        end = start + self.window + GRACE
        if end > now:
            return False
        return (self._frontier is not None and end <= self._frontier) or touched <= now - GRACE

    def catch_up(
        self, now: datetime, emit: Emit, *, alert: bool = False, limit: int | None = None
    ) -> list[Notification]:
        """Compute, score and save the windows closed by `now` that received requests since they were
        computed (or never were); at most `limit` of them (the oldest first). Return what `emit`
        released for their anomaly alerts, each emitted at its window's end plus GRACE.

        Windows follow LOG time: a window closes once a feature source has logged past its end (plus
        GRACE), or once `now` is past its end and nothing new came for it for GRACE. A daemon catching
        up on a backlog thus closes each window as the backlog passes it, whatever the wall clock says,
        and a request stored late (a backlog, a log ingested again) opens its window again.
        With alert=False (`train`), anomalies are recorded in the table but not alerted.
        `load_profile` must have run first.
        """
        if not self._checked:
            self._checked = True
            self.find_missing(now)
        ready = sorted(s for s, touched in self._dirty.items() if self._closed(s, touched, now))
        if limit is not None:
            ready = ready[:limit]
        out: list[Notification] = []
        rows: list[dict[str, Any]] = []
        states: dict[datetime, int] = {}
        held: list[tuple[datetime, list[Alert]]] = []
        for i, start in enumerate(ready):
            del self._dirty[start]
            found, stored, alerts = self._score_window(start, alert=alert, now=now)
            rows.extend(found)
            states[start] = stored
            held.append((start, alerts))
            if len(rows) >= SAVE_ROWS or i == len(ready) - 1:  # one commit for many windows
                q.save_windows(self.store, rows, states, now)
                for when, alerts in held:
                    out.extend(emit(alerts, when + self.window + GRACE))
                rows, states, held = [], {}, []
        return out

    def _compute(self, start: datetime) -> tuple[WindowFrame, int]:
        """One window's feature frame from the store, and the stored requests it was computed from."""
        assert self.profile is not None, "load_profile first"
        stored = q.count_in(self.store, start, start + self.window)
        before = q.window_clients(self.store, start)
        frame = ps.compute_window(
            self.store,
            start,
            self._window_minutes,
            self._feature_sources,
            self.profile,
            cap_days=self._cap_days,
            update_profile=False,
        )
        for ip in frame.index.get_level_values(0):
            if ip not in before:  # a window computed again must not count twice in the hour profile
                self.profile.add(str(ip), start)
        return frame, stored

    def _score_window(
        self, start: datetime, *, alert: bool, now: datetime
    ) -> tuple[list[dict[str, Any]], int, list[Alert]]:
        """Compute one window from the store and score it; return its rows, the stored requests it was
        computed from, and (with alert=True) the alerts for fresh anomalies of known sources.

        Windows that ended long before `now` (a backlog, a long outage) are recorded with their
        scores but not alerted: that news is stale (monitor.detect.anomaly decides)."""
        frame, stored = self._compute(start)
        findings: list[Finding] = self.model.assess(frame)
        values = frame.to_dict("records")
        rows: list[dict[str, Any]] = []
        alerts: list[Alert] = []
        for i, (ip, _start) in enumerate(frame.index):
            row: dict[str, Any] = {
                "client_ip": ip,
                "window_start": start,
                "features": {k: float(v) for k, v in values[i].items()},
            }
            if findings:
                f = findings[i]
                row.update(score=f.score, anomalous=f.anomalous, explanation=f.explanation)
                if alert:
                    found = self.anomalies.consider(f, start, now)
                    if found is not None:
                        alerts.append(found)
            rows.append(row)
        return rows, stored, alerts
