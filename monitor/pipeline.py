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
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from monitor import features as feat
from monitor.config import Settings, SourceSettings
from monitor.known import KnownSources
from monitor.records import Alert, Notification, Request, Severity
from monitor.rules import REMINDER, RulesEngine
from monitor.rules_text import block_hint
from monitor.store import Store, reject_queries
from monitor.store import detect_queries as q

log = logging.getLogger(__name__)

GRACE = timedelta(minutes=2)  # lines of a window may be stored a little after it ends
SCORE_CHUNK = timedelta(days=1)
STALE = timedelta(
    hours=6
)  # anomalies in windows that ended longer ago than this are recorded, not alerted  # catching up after downtime: at most a day of requests in memory at once


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
            None  # monitor.detector.Detector, imported lazily (scikit-learn is slow to import)
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
        self._scored_until: datetime | None = None
        self._profile: feat.Profile | None = None
        self._next_train_check: datetime | None = None
        # Requests handed to `process` and not yet in a scored window: scoring reads them from here
        # instead of the store for windows that start at or after `_buffer_from` (complete in memory).
        self._buffer: list[Request] = []
        # With a proxy in front of Ollama both logs hold the same requests: windows count the proxy's only.
        self._feature_sources: set[str] | None = {p.name for p in proxies} or None
        self._buffer_from: datetime | None = None
        self._load_model()

    # --- setup ---------------------------------------------------------------------------------
    def _load_model(self) -> None:
        from monitor import detector as dm
        from monitor.errors import ModelError

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
        pairs, first = q.window_activity(self.store, now - self.history)
        self._profile = feat.Profile.from_windows(pairs, first)
        saved = self.store.get_meta("detector.scored_until")
        if saved:
            self._scored_until = datetime.fromisoformat(saved)

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
        if requests:
            if self._buffer_from is None:
                first = min(r.ts for r in requests)
                start = floor_time(first, self.window)
                earlier = next(self.store.iter_requests(since=start, until=first, limit=1), None)
                self._buffer_from = start if earlier is None else start + self.window
            if self._feature_sources is None or name in self._feature_sources:
                self._buffer.extend(requests)
        alerts = self.rules.evaluate(requests, now, source=name, is_proxy=proxy, rejects=rejects)
        return self._emit(alerts, now)

    def tick(self, now: datetime) -> list[Notification]:
        """Score windows closed by `now`, retrain when due, flush digests; return released notifications."""
        out = self.catch_up(now, alert=True)
        if self._next_train_check is None or now >= self._next_train_check:
            self._maybe_train(now)
        out.extend(self._emit(self.rules.flush(now), now))
        out.extend(self.dispatcher.flush(now))
        return out

    def catch_up(self, now: datetime, *, alert: bool = False) -> list[Notification]:
        """Compute, score and save the windows closed by `now` that are not yet in the `windows` table.

        With alert=False (`train`), anomalies are recorded in the table but not alerted.
        """
        self._start(now)
        closed = floor_time(now - GRACE, self.window)
        if self._scored_until is None:
            lo, _hi = q.request_span(self.store)
            latest = q.latest_window_start(self.store)
            self._scored_until = (
                latest + self.window if latest else (floor_time(lo, self.window) if lo else None)
            )
        if self._scored_until is not None and closed > self._scored_until:
            return self._score_until(closed, alert=alert, now=now)
        return []

    def _emit(self, alerts: list[Alert], now: datetime) -> list[Notification]:
        # The dispatcher records admitted alerts in the `alerts` table when it has a store.
        return self.dispatcher.submit(alerts, now) if alerts else []

    # --- windows and the detector -------------------------------------------------------------------
    def _score_until(
        self, closed: datetime, *, alert: bool = True, now: datetime | None = None
    ) -> list[Notification]:
        """Score [scored_until, closed). Windows that ended long before `now` (a first start on old
        data, a long outage) are recorded with their scores but not alerted: that news is stale."""
        fresh_after = (now or closed) - STALE
        assert self._scored_until is not None and self._profile is not None
        out: list[Notification] = []
        while self._scored_until < closed:
            lo = self._scored_until
            hi = min(closed, lo + SCORE_CHUNK)
            if self._buffer_from is not None and lo >= self._buffer_from:
                frame = feat.requests_frame([r for r in self._buffer if lo <= r.ts < hi])
                self._buffer = [r for r in self._buffer if r.ts >= hi]
            else:
                wanted = self._feature_sources
                stored = self.store.iter_requests(since=lo, until=hi)
                frame = feat.requests_frame(r for r in stored if wanted is None or r["source"] in wanted)
            windows = feat.compute(
                frame,
                self.settings.detector.window_minutes,
                self._profile,
                cap_days=float(self.settings.detector.history_days),
            )
            rows: list[dict[str, Any]] = []
            alerts: list[Alert] = []
            findings = self.detector.assess(windows) if self.detector is not None and len(windows) else []
            values = windows.to_dict("records")
            for i, (ip, start) in enumerate(windows.index):
                row: dict[str, Any] = {
                    "client_ip": ip,
                    "window_start": start.to_pydatetime(),
                    "features": {k: float(v) for k, v in values[i].items()},
                }
                if findings:
                    f = findings[i]
                    row.update(score=f.score, anomalous=f.anomalous, explanation=f.explanation)
                    recent = start.to_pydatetime() + self.window >= fresh_after
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
            q.save_windows(self.store, rows)
            self._scored_until = hi
            self.store.set_meta("detector.scored_until", hi.isoformat())
            out.extend(self._emit(alerts, hi + GRACE))
        return out

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
        from monitor import detector as dm

        every = timedelta(hours=self.settings.detector.retrain_hours)
        if not dm.due(now, self.last_trained, every):
            self._next_train_check = self.last_trained + every if self.last_trained else None
            return
        result = self.train(now)
        if result is None:  # not enough history yet: look again when the next window has closed
            self._next_train_check = floor_time(now, self.window) + self.window + GRACE

    def train(self, now: datetime) -> dict[str, Any] | None:
        """Train on the trailing history of known sources' windows and save the model.

        Return the saved metadata, or None (and say why in `status`) when there are too few windows.
        """
        import pandas as pd

        from monitor import detector as dm
        from monitor.errors import ModelError

        stored = q.load_windows(self.store, now - self.history, now)
        rows = [r for r in stored if self.known.is_known(r["client_ip"]) and not r.get("anomalous")]
        need = self.settings.detector.min_windows
        self.status["windows"] = len(rows)
        if len(rows) < need:
            left_out = len(stored) - len(rows)
            self.status.update(
                reason=f"rules only: {len(rows)} of {need} windows of history needed to train the detector"
                + (
                    f" ({left_out} windows of unknown sources or anomalies are never used)"
                    if left_out
                    else ""
                )
            )
            if self.detector is None:
                self.status["detector"] = "rules-only"
            return None
        frame = pd.DataFrame([r["features"] for r in rows]).reindex(
            columns=list(feat.FEATURE_NAMES), fill_value=0.0
        )
        det = self.settings.detector
        model = dm.Detector(
            threshold_quantile=det.threshold_quantile,
            guard_factor=det.guard_factor,
            random_state=det.random_state,
        ).fit(frame, groups=[r["client_ip"] for r in rows])
        start, end = rows[0]["window_start"], rows[-1]["window_start"] + self.window
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
    """Return the alerts engineer's Dispatcher (monitor.alerts). With a store it records every admitted
    alert in the `alerts` table (which seeds the cooldowns after a restart) and queues the outbox."""
    from monitor.alerts import Dispatcher

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
