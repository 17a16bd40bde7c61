"""The detector outside the daemon: `train` on the stored history and `score` chosen windows.

- `train_history(settings, open_store, rebuild=...)`: train on the `history_days` before the newest
  stored request (so it also works on logs loaded with `ingest`), computing only the windows that are
  missing or grew first; return the saved metadata (None: too few windows) and the detector's status.
- `score_windows(settings, open_store, start=..., count=...)`: assess one window, or the newest
  `count`, with the saved model through the daemon's scoring path (monitor.detect.scoring).
- `known_sources(settings, store)`: the configured known sources plus the approvals stored.

`open_store` opens the configured database; it is called after the cheap checks, and the store is
closed before returning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from monitor.config import Settings
from monitor.core.errors import MonitorError
from monitor.core.records import Alert, Notification
from monitor.detect.known import KnownSources
from monitor.detect.lifecycle import load_saved
from monitor.detect.pipeline import Pipeline
from monitor.detect.scoring import score_recent
from monitor.detect.windows import GRACE, floor_time
from monitor.store import Store
from monitor.store import detect_queries as q


def known_sources(settings: Settings, store: Store) -> KnownSources:
    """The known sources of [known] plus the networks approved with `sources approve`."""
    return KnownSources(settings.known, [a["network"] for a in store.approvals()])


class Silent:
    """A dispatcher that notifies nobody (for `train`, which only computes windows)."""

    def submit(self, alerts: list[Alert], now: datetime) -> list[Notification]:
        return []

    def flush(self, now: datetime) -> list[Notification]:
        return []


@dataclass(frozen=True)
class Trained:
    meta: dict[str, Any] | None  # the saved model's metadata; None: not trained (status["reason"] says why)
    status: dict[str, Any]  # the detector's status after training (monitor.detect.lifecycle)


def train_history(settings: Settings, open_store: Callable[[], Store], *, rebuild: bool = False) -> Trained:
    """Train the detector on the stored history and save it in [detector] model_dir.

    The clock is the end of the newest stored window. rebuild=True computes the history's windows
    anew. Raise MonitorError when no request is stored yet.
    """
    store = open_store()
    try:
        _lo, hi = q.request_span(store)
        if hi is None:
            raise MonitorError(
                "no requests stored yet", hint="run the daemon, or `ollama-monitor ingest LOG...` first"
            )
        pipeline = Pipeline(settings, store, Silent(), known_sources(settings, store))
        window = pipeline.window
        # The end of the newest window, plus the grace a window gets for late lines: it is included too.
        now = floor_time(hi, window) + window + GRACE
        meta = pipeline.train(now, rebuild=rebuild)
    finally:
        store.close()
    return Trained(meta, dict(pipeline.status))


def score_windows(
    settings: Settings, open_store: Callable[[], Store], *, start: datetime | None = None, count: int = 3
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Assess the window at `start` (floored to the window; a naive time is UTC), or else the `count`
    newest windows, with the saved model. Return (one row per window and source, oldest first, with
    `status` the source's known status; the model's metadata).

    Raise ModelError without a usable saved model, MonitorError when no request is stored yet.
    """
    model, meta = load_saved(settings.detector.model_dir)
    window = timedelta(minutes=settings.detector.window_minutes)
    store = open_store()
    try:
        known = known_sources(settings, store)
        if start is not None:
            starts = [floor_time(start if start.tzinfo else start.replace(tzinfo=UTC), window)]
        else:
            _lo, hi = q.request_span(store)
            if hi is None:
                raise MonitorError("no requests stored yet")
            last = floor_time(hi, window)
            starts = [last - i * window for i in range(max(1, count))][::-1]
        rows = score_recent(store, settings, model, starts)
    finally:
        store.close()
    for r in rows:
        r["status"] = known.status(r["client_ip"]).value
    return rows, meta
