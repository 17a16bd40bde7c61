"""The detection pipeline: rules on every stored batch, the detector on every closed window, then alerts.

`Pipeline(settings, store, dispatcher, known)` is what the daemon, `train`, `replay` and the demo all
drive:

- `process(source, requests, now)`: the immediate rules over one stored batch -> alerts -> recorded in
  the `alerts` table -> `dispatcher.submit` -> the notifications released now.
- `tick(now)`: computes features for the windows that closed since the last tick (from the store, so a
  restart loses nothing), scores them with the current model and raises `anomaly` alerts for known
  sources, retrains when `detector.due` says so (once `min_windows` windows exist; before that the
  pipeline runs on rules only and `status` says why), and flushes the dispatcher's digests.

The clock is always an argument (log time in replay, wall time live); the pipeline has no threads, no
loops of its own and no timers. It is a facade over one owner per job:

- `monitor.detect.rules`: the immediate rules and their shared cooldowns;
- `monitor.detect.windows`: the window buffer (which windows changed, when they close, computing,
  scoring and saving them);
- `monitor.detect.lifecycle`: the model's lifecycle (load, retrain when due, save, `status`);
- `monitor.detect.anomaly`: which anomalous windows alert, and the alert's text;
- `monitor.detect.replay`: driving the pipeline over stored requests in log time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from monitor.config import Settings, SourceSettings
from monitor.core.errors import ModelError
from monitor.core.records import Alert, Notification, Request
from monitor.detect.anomaly import AnomalyAlerts
from monitor.detect.known import KnownSources
from monitor.detect.lifecycle import ModelLifecycle
from monitor.detect.rules import REMINDER, RulesEngine
from monitor.detect.windows import GRACE, Windows, floor_time
from monitor.store import Store
from monitor.store import detect_queries as q

if TYPE_CHECKING:
    from monitor.detect.model import Detector

WINDOWS_PER_TICK = 24  # a daemon catching up computes at most this many windows per tick (then follows on)


log = logging.getLogger(__name__)


class DispatcherLike(Protocol):
    def submit(self, alerts: list[Alert], now: datetime) -> list[Notification]: ...

    def flush(self, now: datetime) -> list[Notification]: ...


class Pipeline:
    """Rules -> detector -> dispatcher, driven by `process` and `tick` with an explicit clock."""

    def __init__(
        self, settings: Settings, store: Store, dispatcher: DispatcherLike, known: KnownSources
    ) -> None:
        self.settings = settings
        self.store = store
        self.dispatcher = dispatcher
        self.known = known
        self.window = timedelta(minutes=settings.detector.window_minutes)
        self.history = timedelta(days=settings.detector.history_days)
        proxies = [s for s in settings.sources if s.is_proxy]
        trusted = [n for s in settings.sources for n in s.trusted_proxies]
        self.rules = RulesEngine(
            settings.rules, known, proxy_configured=bool(proxies), trusted_proxies=trusted
        )
        self.model = ModelLifecycle(settings)  # loads the saved model, if there is a usable one
        self.anomalies = AnomalyAlerts(self.window, known, self.rules, self.model)
        self.windows = Windows(settings, store, self.model, self.anomalies)
        self._started = False

    @property
    def detector(self) -> Detector | None:
        """The model in use (None: rules only)."""
        return self.model.detector

    @property
    def status(self) -> dict[str, Any]:
        """What the detector runs on and why (see monitor.detect.lifecycle)."""
        return self.model.status

    def _start(self, now: datetime) -> None:
        """At the first call: seed the rules' cooldowns from the stored alerts and read the history
        features' memory, both as of `now` (log time in replay)."""
        if self._started:
            return
        self._started = True
        horizon = max(
            REMINDER,
            *(timedelta(minutes=self.settings.rules.cooldown_for(r)) for r in self.settings.rules.cooldowns),
            timedelta(minutes=self.settings.rules.cooldown_minutes),
        )
        self.rules.seed(q.last_alerts(self.store, now - horizon))
        self.windows.load_profile(now - self.history)

    def set_known(self, known: KnownSources) -> None:
        """Use new known sources (after `sources approve` or a config reload)."""
        self.known = self.anomalies.known = known
        self.rules.set_known(known)

    # --- the two entry points ---------------------------------------------------------------------
    def process(
        self,
        source: SourceSettings | str,
        requests: Sequence[Request],
        now: datetime,
        *,
        is_proxy: bool | None = None,
        rejects: Sequence[tuple[int, str, str]] = (),
    ) -> list[Notification]:
        """Run the immediate rules over one stored batch; return the notifications released now."""
        self._start(now)
        if isinstance(source, SourceSettings):
            name, proxy = source.name, source.is_proxy if is_proxy is None else is_proxy
        else:
            name, proxy = source, bool(is_proxy)
        self.windows.seen(name, requests, now)
        alerts = self.rules.evaluate(requests, now, source=name, is_proxy=proxy, rejects=rejects)
        return self._emit(alerts, now)

    def tick(self, now: datetime) -> list[Notification]:
        """Score windows closed by `now`, retrain when due, flush digests; return released notifications."""
        out = self.catch_up(now, alert=True, limit=WINDOWS_PER_TICK)
        if self.model.due(now):
            try:
                result = self.train(now)
            except ModelError as exc:  # the training process failed: rules and the current model go on
                log.warning("retraining failed (tried again when the next window closes): %s", exc)
                result = None
            if result is None:  # not enough history yet (or a failure): look again at the next close
                self.model.check_again_at(floor_time(now, self.window) + self.window + GRACE)
        out.extend(self._emit(self.rules.flush(now), now))
        out.extend(self.dispatcher.flush(now))
        return out

    # --- windows and training -----------------------------------------------------------------------
    def catch_up(self, now: datetime, *, alert: bool = False, limit: int | None = None) -> list[Notification]:
        """Compute, score and save the windows closed by `now` that received requests since they were
        computed (or never were), at most `limit` of them, the oldest first; return the notifications
        of their anomaly alerts (with alert=False, for `train`, anomalies are only recorded).
        Windows follow log time: see monitor.detect.windows.Windows.catch_up."""
        self._start(now)
        return self.windows.catch_up(now, self._emit, alert=alert, limit=limit)

    def find_missing(self, now: datetime, since: datetime | None = None) -> int:
        """Mark for computing the windows of [since, now) (default: the trailing history) whose stored
        requests grew since they were computed: rows stored by `ingest` or before a restart. Return how many."""
        return self.windows.find_missing(now, since)

    def pending_windows(self) -> int:
        """Windows with requests not yet computed (open ones included)."""
        return self.windows.pending()

    def train(self, now: datetime, *, rebuild: bool = False) -> dict[str, Any] | None:
        """Train on the trailing history of known sources' windows and save the model.

        Only the windows that are missing (or whose stored requests grew) are computed first, never the
        whole history again; rebuild=True deletes the history's windows and computes them all anew.
        Return the saved metadata, or None (and say why in `status`) when there are too few windows.
        """
        since = now - self.history
        self._start(now)
        if rebuild:
            self.windows.rebuild(since, now)
        self.windows.check_from(now, since)
        self.catch_up(now, alert=False)
        return self.model.train(self.store, self.known, since, now)

    def _emit(self, alerts: list[Alert], now: datetime) -> list[Notification]:
        # The dispatcher records admitted alerts in the `alerts` table when it has a store.
        return self.dispatcher.submit(alerts, now) if alerts else []


def make_dispatcher(settings: Settings, store: Store | None) -> DispatcherLike:
    """Return the dispatcher a pipeline is driven with (monitor.alerts.dispatch.Dispatcher). With a store
    it records every admitted alert in the `alerts` table (which seeds the cooldowns after a restart) and
    queues the outbox."""
    from monitor.alerts.dispatch import Dispatcher

    return Dispatcher(settings.alerts, store)
