"""The detection pipeline: rules on every stored batch, the detector on every closed window, then alerts.

`Pipeline(settings, store, dispatcher, known)` is what the daemon, `replay` and the demo all drive:

- `process(source, requests, now)`: the immediate rules over one stored batch -> alerts -> recorded in
  the `alerts` table -> `dispatcher.submit` -> the notifications released now.
- `tick(now)`: computes features for the windows that closed since the last tick (from the store, so a
  restart loses nothing), scores them with the current model and raises `anomaly` alerts for known
  sources, retrains when `detector.due` says so (once `min_windows` windows exist; before that the
  pipeline runs on rules only and `status` says why), and flushes the dispatcher's digests.

The clock is always an argument (log time in replay, wall time live); the pipeline has no threads, no
loops of its own and no timers. `drive_store` replays stored requests through it in time order.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from monitor.config import Settings, SourceSettings
from monitor.core.records import Alert, Notification, Request, Severity
from monitor.detect import scoring as ps
from monitor.detect.known import KnownSources
from monitor.detect.rules import REMINDER, RulesEngine
from monitor.detect.rules.text import block_hint
from monitor.store import Store, reject_queries
from monitor.store import detect_queries as q

if TYPE_CHECKING:
    from monitor.detect.features import Profile

log = logging.getLogger(__name__)

GRACE = timedelta(minutes=2)  # lines of a window may be stored a little after it ends
STALE = timedelta(hours=6)  # anomalies in windows that ended longer ago than this are recorded, not alerted
SAVE_ROWS = 20_000  # window rows saved per transaction when many windows are computed at once
WINDOWS_PER_TICK = 24  # a daemon catching up computes at most this many windows per tick (then follows on)
_LONG_AGO = datetime(1970, 1, 1, tzinfo=UTC)


class DispatcherLike(Protocol):
    def submit(self, alerts: list[Alert], now: datetime) -> list[Notification]: ...

    def flush(self, now: datetime) -> list[Notification]: ...


def floor_time(ts: datetime, step: timedelta) -> datetime:
    """Floor an aware datetime to a multiple of `step` since the epoch."""
    epoch = datetime(1970, 1, 1, tzinfo=ts.tzinfo)
    return ts - ((ts - epoch) % step)


class Pipeline:
    """Rules -> detector -> dispatcher, driven by `process` and `tick` with an explicit clock."""

    def __init__(
        self, settings: Settings, store: Store, dispatcher: DispatcherLike, known: KnownSources
    ) -> None:
        self.settings = settings
        self.store = store
        self.dispatcher = dispatcher
        self.known = known
        det = settings.detector
        self.window = timedelta(minutes=det.window_minutes)
        self.history = timedelta(days=det.history_days)
        self.model_dir = Path(det.model_dir)
        proxies = [s for s in settings.sources if s.is_proxy]
        trusted = [n for s in settings.sources for n in s.trusted_proxies]
        self.rules = RulesEngine(
            settings.rules, known, proxy_configured=bool(proxies), trusted_proxies=trusted
        )
        self.detector: Any = (
            None  # monitor.detect.model.Detector, imported lazily (scikit-learn is slow to import)
        )
        self.model_meta: dict[str, Any] = {}
        self.last_trained: datetime | None = None
        self.status: dict[str, Any] = {
            "detector": "rules-only",
            "reason": "no model yet",
            "model_dir": str(self.model_dir),
            "min_windows": det.min_windows,
            "windows": 0,
            "warnings": [],
        }
        self._started = False
        self._profile: Profile | None = None
        self._next_train_check: datetime | None = None
        # Windows (start -> when last touched, in the caller's clock) that received requests since they
        # were computed. Only window starts are kept between batches, never the requests themselves:
        # a closed window's features are read back from the store's indexed time range.
        self._dirty: dict[datetime, datetime] = {}
        self._frontier: datetime | None = None  # the newest log time seen from a feature source
        self._checked = False  # the stored windows are compared with the stored requests once, at start
        # With a proxy in front of Ollama both logs hold the same requests: windows count the proxy's only.
        self._feature_sources = ps.feature_sources(settings)
        self._load_model()

    # --- setup ---------------------------------------------------------------------------------
    def _load_model(self) -> None:
        from monitor.core.errors import ModelError
        from monitor.detect import model as dm

        if not dm.exists(self.model_dir):
            return
        try:
            self.detector, self.model_meta = dm.load(self.model_dir)
            saved_window = self.model_meta.get("window_minutes")
            if saved_window is not None and int(saved_window) != self.settings.detector.window_minutes:
                self.detector = None
                raise ModelError(
                    f"the model was trained on {saved_window}-minute windows but [detector] window_minutes is "
                    f"{self.settings.detector.window_minutes}; retrain it with `ollama-monitor train`"
                )
        except ModelError as exc:
            log.warning("detector disabled, running on rules only: %s", exc)
            self.status.update(detector="rules-only", reason=f"model unusable: {exc}", error=str(exc))
            return
        try:
            self.last_trained = datetime.fromisoformat(str(self.model_meta.get("trained_at")))
        except ValueError:  # unknown age: retrain at the first chance
            self.last_trained = None
        self.status.update(
            detector="active",
            reason=f"model trained {self.model_meta.get('trained_at')} on {self.model_meta.get('rows')} windows",
            trained_at=self.model_meta.get("trained_at"),
            threshold=self.model_meta.get("threshold"),
            warnings=self.model_meta.get("warnings", []),
        )

    def _start(self, now: datetime) -> None:
        if self._started:
            return
        self._started = True
        horizon = max(
            REMINDER,
            *(timedelta(minutes=self.settings.rules.cooldown_for(r)) for r in self.settings.rules.cooldowns),
            timedelta(minutes=self.settings.rules.cooldown_minutes),
        )
        self.rules.seed(q.last_alerts(self.store, now - horizon))
        self._profile = ps.build_profile(self.store, now - self.history)

    def set_known(self, known: KnownSources) -> None:
        """Use new known sources (after `sources approve` or a config reload)."""
        self.known = known
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
        if requests and (self._feature_sources is None or name in self._feature_sources):
            newest = max(r.ts for r in requests)
            if self._frontier is None or newest > self._frontier:
                self._frontier = newest
            for start in {floor_time(r.ts, self.window) for r in requests}:
                self._dirty[start] = now
        alerts = self.rules.evaluate(requests, now, source=name, is_proxy=proxy, rejects=rejects)
        return self._emit(alerts, now)

    def tick(self, now: datetime) -> list[Notification]:
        """Score windows closed by `now`, retrain when due, flush digests; return released notifications."""
        out = self.catch_up(now, alert=True, limit=WINDOWS_PER_TICK)
        if self._next_train_check is None or now >= self._next_train_check:
            self._maybe_train(now)
        out.extend(self._emit(self.rules.flush(now), now))
        out.extend(self.dispatcher.flush(now))
        return out

    def catch_up(self, now: datetime, *, alert: bool = False, limit: int | None = None) -> list[Notification]:
        """Compute, score and save the windows closed by `now` that received requests since they were
        computed (or never were); at most `limit` of them (the oldest first). Return the notifications.

        Windows follow LOG time: a window closes once a feature source has logged past its end (plus
        GRACE), or once `now` is past its end and nothing new came for it for GRACE. A daemon catching
        up on a backlog thus closes each window as the backlog passes it, whatever the wall clock says,
        and a request stored late (a backlog, a log ingested again) opens its window again.
        With alert=False (`train`), anomalies are recorded in the table but not alerted.
        """
        self._start(now)
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
                    out.extend(self._emit(alerts, when + self.window + GRACE))
                rows, states, held = [], {}, []
        return out

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

    def _closed(self, start: datetime, touched: datetime, now: datetime) -> bool:
        end = start + self.window + GRACE
        if end > now:
            return False
        return (self._frontier is not None and end <= self._frontier) or touched <= now - GRACE

    def pending_windows(self) -> int:
        """Windows with requests not yet computed (open ones included)."""
        return len(self._dirty)

    def _emit(self, alerts: list[Alert], now: datetime) -> list[Notification]:
        # The dispatcher records admitted alerts in the `alerts` table when it has a store.
        return self.dispatcher.submit(alerts, now) if alerts else []

    # --- windows and the detector -------------------------------------------------------------------
    def _score_window(
        self, start: datetime, *, alert: bool, now: datetime
    ) -> tuple[list[dict[str, Any]], int, list[Alert]]:
        """Compute one window from the store and score it; return its rows, the stored requests it was
        computed from, and the alerts for fresh anomalies of known sources. Windows that ended long before `now` (a backlog, a long outage) are recorded with
        their scores but not alerted: that news is stale."""
        assert self._profile is not None
        det = self.settings.detector
        stored = q.count_in(self.store, start, start + self.window)
        before = q.window_clients(self.store, start)
        windows = ps.compute_window(
            self.store,
            start,
            det.window_minutes,
            self._feature_sources,
            self._profile,
            cap_days=float(det.history_days),
            update_profile=False,
        )
        for ip in windows.index.get_level_values(0):
            if ip not in before:  # a window computed again must not count twice in the hour profile
                self._profile.add(str(ip), start)
        fresh_after = now - STALE
        rows: list[dict[str, Any]] = []
        alerts: list[Alert] = []
        findings = self.detector.assess(windows) if self.detector is not None and len(windows) else []
        values = windows.to_dict("records")
        for i, (ip, _start) in enumerate(windows.index):
            row: dict[str, Any] = {
                "client_ip": ip,
                "window_start": start,
                "features": {k: float(v) for k, v in values[i].items()},
            }
            if findings:
                f = findings[i]
                row.update(score=f.score, anomalous=f.anomalous, explanation=f.explanation)
                recent = start + self.window >= fresh_after
                if (
                    alert
                    and recent
                    and f.anomalous
                    and self.known.is_known(ip)
                    and self.rules.enabled("anomaly")
                ):
                    found = self._anomaly_alert(f)
                    # One alert per source per cooldown, and never for consecutive windows of one episode.
                    if self.rules.gate(found.key, "anomaly", found.ts, minimum=3 * self.window):
                        alerts.append(found)
            rows.append(row)
        return rows, stored, alerts

    def _anomaly_alert(self, f: Any) -> Alert:
        ip = f.client_ip
        end = f.window_start + self.window
        status = self.known.status(ip).value
        name = self.known.name(ip)
        who = f"{ip} ({name}, {status})" if name else f"{ip} ({status})"
        rows = self.model_meta.get("rows") or getattr(self.detector, "n_windows_", "?")
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

    def _maybe_train(self, now: datetime) -> None:
        from monitor.detect import model as dm

        every = timedelta(hours=self.settings.detector.retrain_hours)
        if not dm.due(now, self.last_trained, every):
            self._next_train_check = self.last_trained + every if self.last_trained else None
            return
        from monitor.core.errors import ModelError

        try:
            result = self.train(now)
        except ModelError as exc:  # the training process failed: rules and the current model go on
            log.warning("retraining failed (tried again when the next window closes): %s", exc)
            result = None
        if result is None:  # not enough history yet: look again when the next window has closed
            self._next_train_check = floor_time(now, self.window) + self.window + GRACE

    def train(self, now: datetime, *, rebuild: bool = False) -> dict[str, Any] | None:
        """Train on the trailing history of known sources' windows and save the model.

        Only the windows that are missing (or whose stored requests grew) are computed first, never the
        whole history again; rebuild=True deletes the history's windows and computes them all anew.
        Return the saved metadata, or None (and say why in `status`) when there are too few windows.
        """
        from monitor.core.errors import ModelError
        from monitor.detect import model as dm

        since = now - self.history
        self._start(now)
        if rebuild:
            q.delete_windows(self.store, floor_time(since, self.window), now)
            self._profile = ps.build_profile(self.store, since - self.history, since)
        self._checked = True
        self.find_missing(now, since)
        self.catch_up(now, alert=False)
        frame, groups, info = ps.training_set(self.store, self.known, since, now)
        need = self.settings.detector.min_windows
        self.status["windows"] = len(groups)
        if len(groups) < need:
            self.status.update(reason=ps.too_few_reason(self.store, self.settings, info, since, now))
            if self.detector is None:
                self.status["detector"] = "rules-only"
            return None
        det = self.settings.detector
        from monitor.detect import training  # fits in a child process: no scikit-learn here

        params = {"threshold_quantile": det.threshold_quantile, "guard_factor": det.guard_factor}
        model = training.fit(frame, groups, {**params, "random_state": det.random_state})
        start, end = info["first"], info["last"] + self.window
        rows = groups
        try:
            meta = dm.save(
                model,
                self.model_dir,
                trained_at=now,
                window_start=start,
                window_end=end,
                window_minutes=det.window_minutes,
            )
        except ModelError as exc:  # keep using it in memory; say it could not be saved
            log.warning("%s", exc)
            meta = {
                "rows": len(rows),
                "threshold": model.threshold_,
                "trained_at": now.isoformat(),
                "training_window": {"start": start.isoformat(), "end": end.isoformat()},
                "saved": False,
                "warnings": [str(exc)],
            }
        self.detector, self.model_meta, self.last_trained = model, meta, now
        self.status.update(
            detector="active",
            reason=f"model trained {now.isoformat()} on {len(rows)} windows",
            trained_at=now.isoformat(),
            threshold=model.threshold_,
            warnings=meta.get("warnings", []),
        )
        self.status.pop("error", None)
        return meta


def make_dispatcher(settings: Settings, store: Store | None) -> DispatcherLike:
    """Return the alerts engineer's Dispatcher (monitor.alerts.dispatch). With a store it records every admitted
    alert in the `alerts` table (which seeds the cooldowns after a restart) and queues the outbox."""
    from monitor.alerts.dispatch import Dispatcher

    return Dispatcher(settings.alerts, store)


# --- replaying stored requests -----------------------------------------------------------------------
def drive_store(
    pipeline: Pipeline, proxies: dict[str, bool], *, step: timedelta = timedelta(minutes=1)
) -> list[Notification]:
    """Replay every stored request through the pipeline in time order, the clock taken from the lines.

    Requests are handed over in batches of `step` of log time per source (as the daemon's wake-ups
    would), and the pipeline ticks at every `step` in between, gaps included, so windows close, models
    retrain and digests flush at the log times they would have live. Return every notification.
    """
    out: list[Notification] = []
    batch: dict[str, list[Request]] = {}
    current: datetime | None = None
    last_ts: datetime | None = None
    rejected = reject_queries.rejects_by_slot(pipeline.store, step, floor_time)  # (source, slot) -> rejects
    for source, req in q.iter_stored_requests(pipeline.store):
        slot = floor_time(req.ts, step)
        if current is not None and slot != current:
            for name, reqs in batch.items():
                rj = rejected.pop((name, current), ())
                out.extend(
                    pipeline.process(name, reqs, reqs[-1].ts, is_proxy=proxies.get(name, False), rejects=rj)
                )
            batch = {}
            t = current + step
            while t <= slot:
                out.extend(pipeline.tick(t))
                t += step
        current = slot
        last_ts = req.ts
        batch.setdefault(source, []).append(req)
    for name, reqs in batch.items():
        rj = rejected.pop((name, current), ()) if current else ()
        out.extend(pipeline.process(name, reqs, reqs[-1].ts, is_proxy=proxies.get(name, False), rejects=rj))
    for (name, slot), rj in sorted(rejected.items(), key=lambda kv: kv[0][1]):  # files without requests
        out.extend(pipeline.process(name, [], slot + step, is_proxy=proxies.get(name, False), rejects=rj))
    if last_ts is not None:  # let the last window close and the last digest flush
        end = (
            floor_time(last_ts, pipeline.window)
            + pipeline.window
            + GRACE
            + timedelta(seconds=pipeline.settings.alerts.digest_seconds)
        )
        t = (current or last_ts) + step
        while t <= end:
            out.extend(pipeline.tick(t))
            t += step
    return out


def notification_json(n: Notification) -> dict[str, Any]:
    """The JSON object `replay --json-out` writes for one notification."""
    return {
        "ts": n.ts.isoformat().replace("+00:00", "Z"),
        "rule": n.rule,
        "severity": n.severity.value,
        "client_ips": list(n.client_ips),
        "title": n.title,
        "message": n.message,
        "id": n.id,
        "alerts": n.alerts,
    }
