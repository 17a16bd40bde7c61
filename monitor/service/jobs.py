"""The daemon's jobs besides following: detection, alert delivery, heartbeat, systemd, retention, metrics.

`Jobs` plugs into `monitor.service.daemon.Daemon` through its hooks:
- `on_stored(source, requests, now)`: the rules run on every committed batch (the pipeline);
- `on_rejects(source, rejects, now)`: a batch's rejected lines go to the rules (parse-failures);
- `tick(now)`: about once a second: close and score windows, retrain when due, flush digests, write the
  heartbeat, tell systemd how we are (`STATUS=`, `WATCHDOG=1`), prune old rows hourly, and follow a
  SIGHUP's new settings (allow-list, alert URLs).

Delivery runs in its own thread: apprise calls can take seconds (timeouts, Slack's throttle), and the
follow loop must never wait for a mail server. The thread wakes when notifications are queued, and
every few seconds for retries. Everything it needs is in the outbox table, so nothing is lost if it dies;
the watchdog is only fed while it is alive.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from monitor.config import Settings, SourceSettings
from monitor.core.errors import database_error
from monitor.core.records import Notification, Request
from monitor.detect.known import KnownSources
from monitor.service.systemd import Notifier

if TYPE_CHECKING:
    from monitor.detect.pipeline import Pipeline
    from monitor.store import Store

log = logging.getLogger("monitor.service.daemon")

HEARTBEAT_SECONDS = 10.0
APPROVALS_SECONDS = 10.0  # `sources approve` on the command line takes effect within this
STATUS_SECONDS = 5.0
PRUNE_EVERY = timedelta(hours=1)
DELIVERY_POLL_SECONDS = 5.0

Echo = Callable[[Notification], None]


def _log_failure(what: str) -> None:
    """Log a failed job: a database error (a full disk, a damaged file) as one line, anything else (a
    bug) with its traceback. Call from an `except` block."""
    import sys

    exc = sys.exc_info()[1]
    store_error = database_error(exc) if exc is not None else None
    if store_error is not None:
        log.error("%s: %s", what, store_error)
    else:
        log.exception(what)


class Jobs:
    """Owns the pipeline, the delivery thread and the service plumbing for one `run`."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        notifier: Notifier | None = None,
        echo: Echo | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.store = store
        self.notifier = notifier or Notifier()
        self.echo = echo
        self.clock = clock
        self.pipeline = self._build_pipeline(settings)
        self._delivery_wake = threading.Event()
        self._delivery_stop = threading.Event()
        self._delivery: threading.Thread | None = None
        self._rates: deque[tuple[float, int]] = deque()  # (monotonic time, lines) for lines/s
        self._lines = 0
        self._last_heartbeat = 0.0
        self._last_status = 0.0
        self._last_watchdog = 0.0
        self._last_prune: datetime | None = None
        self._last_approvals = 0.0
        self._approved = self._approvals()
        self._ready = False
        self.metrics: Metrics | None = None
        self.sources_alive: Callable[[], int] = lambda: len(settings.sources)
        self.workers_alive: Callable[[], bool] = lambda: True

    # --- construction -----------------------------------------------------------------------------
    def _build_pipeline(self, settings: Settings) -> Pipeline:
        from monitor.detect.pipeline import Pipeline, make_dispatcher

        known = KnownSources(settings.known, self._approvals())
        return Pipeline(settings, self.store, make_dispatcher(settings, self.store), known)

    def start(self) -> None:
        self.metrics = Metrics.serve(self.settings.daemon.metrics_address)
        self._delivery = threading.Thread(target=self._deliver_loop, name="delivery", daemon=True)
        self._delivery.start()
        self.store.set_meta("daemon.pid", str(os.getpid()))

    def stop(self, record: bool = True) -> None:
        """Stop delivery and record the stop. `record=False` when the database is gone: writing to the
        path then would only create a fresh file there."""
        self.notifier.stopping()
        if not record:
            self._delivery_stop.set()
            self._delivery_wake.set()
            if self._delivery is not None:
                self._delivery.join(timeout=3.0)
            self.notifier.close()
            return
        try:
            # Release what a digest still holds: queued in the outbox now, delivered at the next start
            # (or by `alerts retry`) if the delivery thread has no time left for it.
            self._release_held()
        except Exception:  # noqa: BLE001 - stopping must not fail on a database hiccup
            _log_failure("could not release held alerts")
        self._delivery_stop.set()
        self._delivery_wake.set()
        if self._delivery is not None:
            self._delivery.join(timeout=3.0)
        try:
            self.store.set_meta("daemon.stopped_at", self.clock().isoformat())
        except Exception:  # noqa: BLE001 - stopping must not fail on a database hiccup
            _log_failure("could not record the stop")
        self.notifier.close()

    def deliver_now(self, budget_seconds: float = 20.0) -> int:
        """Deliver what is due in the outbox now, in this thread (the demo, whose database is temporary,
        calls it after `stop`); return how many attempts failed."""
        outbox = getattr(self.pipeline.dispatcher, "outbox", None)
        if outbox is None:
            return 0
        return sum(1 for a in outbox.deliver(budget_seconds=budget_seconds) if not a.ok)

    # --- hooks ------------------------------------------------------------------------------------
    def on_stored(self, source: SourceSettings, requests: list[Request], now: datetime) -> None:
        self._lines += len(requests)
        if self.metrics is not None:
            self.metrics.requests.labels(source=source.name).inc(len(requests))
        self._emit(self.pipeline.process(source, requests, now))

    def on_rejects(self, source: SourceSettings, rejects: list[tuple[int, str, str]], now: datetime) -> None:
        """Hand a committed batch's rejected lines to the rules (the parse-failures rule)."""
        self._emit(self.pipeline.process(source, [], now, rejects=rejects))

    def tick(self, now: datetime) -> None:
        if not self._ready:
            self._ready = True
            self.notifier.ready(self._status_text())
            log.info("ready")
        self._emit(self.pipeline.tick(now))
        mono = time.monotonic()
        self._rates.append((mono, self._lines))
        while len(self._rates) > 2 and mono - self._rates[0][0] > 60:
            self._rates.popleft()
        if mono - self._last_approvals >= APPROVALS_SECONDS:
            self._last_approvals = mono
            self._refresh_approvals()
        if mono - self._last_heartbeat >= HEARTBEAT_SECONDS:
            self._last_heartbeat = mono
            self.store.set_meta("daemon.heartbeat", now.isoformat())
            self.store.set_meta("daemon.lines_per_second", f"{self.lines_per_second():.2f}")
        if mono - self._last_status >= STATUS_SECONDS:
            self._last_status = mono
            self.notifier.status(self._status_text())
            if self.metrics is not None:
                self.metrics.update(self, now)
        self._feed_watchdog(mono)
        if self._last_prune is None or now - self._last_prune >= PRUNE_EVERY:
            self._last_prune = now
            self._prune(now)

    def settings_changed(self, settings: Settings) -> None:
        """Follow a SIGHUP: new allow-list and approvals, new alert settings (URLs, routes, limits).

        The rules' memory starts afresh (their cooldowns are seeded again from the `alerts` table), and
        an open digest is released first so that nothing it holds is lost.
        """
        self._release_held()
        self.settings = settings
        self.pipeline = self._build_pipeline(settings)
        self._delivery_wake.set()
        log.info(
            "alerting reconfigured: %d alert service(s), %d known network(s)",
            len(settings.alerts.urls),
            len(settings.known.allow) + len(settings.known.admins),
        )

    # --- internals --------------------------------------------------------------------------------
    def _approvals(self) -> list[str]:
        return sorted(a["network"] for a in self.store.approvals())

    def _refresh_approvals(self) -> None:
        """Pick up `sources approve` / `revoke` run while the daemon is running."""
        approved = self._approvals()
        if approved != self._approved:
            self._approved = approved
            self.pipeline.set_known(KnownSources(self.settings.known, approved))
            log.info("approvals changed: %d approved network(s)", len(approved))

    def _release_held(self) -> None:
        now = self.clock()
        self._emit(self.pipeline.tick(now))
        # A digest whose window is still open: close it now rather than lose it.
        self._emit(self.pipeline.dispatcher.flush(now + timedelta(days=1)))

    def _emit(self, notes: list[Notification]) -> None:
        if not notes:
            return
        for note in notes:
            log.warning("alert: [%s] %s (%s)", note.severity.value, note.title, note.rule)
            if self.metrics is not None:
                self.metrics.notifications.labels(rule=note.rule, severity=note.severity.value).inc()
            if self.echo is not None:
                self.echo(note)
        self._delivery_wake.set()

    def lines_per_second(self) -> float:
        if len(self._rates) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self._rates[0], self._rates[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def _status_text(self) -> str:
        from monitor.store.status_queries import outbox_counts

        try:
            pending = outbox_counts(self.store).get("pending", 0)
        except Exception:  # noqa: BLE001
            pending = -1
        model = "model" if getattr(self.pipeline, "detector", None) is not None else "rules only"
        return (
            f"{self.lines_per_second():.1f} lines/s, {self.sources_alive()} source(s), "
            f"{pending} pending alert(s), {model}"
        )

    def _feed_watchdog(self, mono: float) -> None:
        interval = self.notifier.watchdog_seconds
        if interval is None or mono - self._last_watchdog < interval / 2:
            return
        delivery_ok = self._delivery is None or self._delivery.is_alive()
        if delivery_ok and self.workers_alive():
            self._last_watchdog = mono
            self.notifier.watchdog()
        else:
            log.error(
                "a worker died (delivery alive: %s); withholding WATCHDOG=1 so systemd restarts us",
                delivery_ok,
            )

    def _prune(self, now: datetime) -> None:
        r = self.settings.retention
        try:
            counts = self.store.prune(
                now - timedelta(days=r.requests_days),
                now - timedelta(days=r.windows_days),
                rollups_before=now - timedelta(days=r.rollup_days),
            )
        except Exception:  # noqa: BLE001 - retention is housekeeping; the next hour tries again
            _log_failure("pruning old rows failed")
            return
        if any(counts.values()):
            log.info("pruned old rows: %s", ", ".join(f"{k} {v}" for k, v in counts.items() if v))

    def _deliver_loop(self) -> None:
        while not self._delivery_stop.is_set():
            self._delivery_wake.wait(DELIVERY_POLL_SECONDS)
            self._delivery_wake.clear()
            if self._delivery_stop.is_set():
                break
            outbox = getattr(self.pipeline.dispatcher, "outbox", None)
            if outbox is None:
                continue
            try:
                # Wall-clock time: delivery happens now. A slow receiver's send goes on in its own
                # thread past this pass (monitor.alerts.delivery), so the others are served every pass.
                attempts: list[Any] = outbox.deliver(wait_seconds=1.0)
            except Exception:  # noqa: BLE001 - a delivery bug must not kill the thread; rows stay pending
                _log_failure("delivering notifications failed; they stay pending")
                continue
            failed = [a for a in attempts if not a.ok]
            if failed:
                log.warning(
                    "%d notification attempt(s) failed; they will be retried with backoff", len(failed)
                )


class Metrics:
    """Prometheus metrics on a loopback address (`[daemon] metrics_address`), off by default."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ollama_monitor_requests_stored",
            "Requests stored, by source.",
            ["source"],
            registry=self.registry,
        )
        self.notifications = Counter(
            "ollama_monitor_notifications",
            "Notifications released, by rule.",
            ["rule", "severity"],
            registry=self.registry,
        )
        self.lines_per_second = Gauge(
            "ollama_monitor_lines_per_second", "Stored lines per second, last minute.", registry=self.registry
        )
        self.sources = Gauge("ollama_monitor_sources", "Sources being followed.", registry=self.registry)
        self.outbox = Gauge(
            "ollama_monitor_outbox", "Outbox rows by state.", ["state"], registry=self.registry
        )
        self.heartbeat = Gauge(
            "ollama_monitor_heartbeat_timestamp_seconds",
            "Last tick of the daemon loop.",
            registry=self.registry,
        )

    @classmethod
    def serve(cls, address: str) -> Metrics | None:
        if not address:
            return None
        from prometheus_client import start_http_server

        host, _, port = address.rpartition(":")
        metrics = cls()
        start_http_server(int(port), addr=host.strip("[]"), registry=metrics.registry)
        log.info("Prometheus metrics on http://%s/metrics", address)
        return metrics

    def update(self, jobs: Jobs, now: datetime) -> None:
        from monitor.store.status_queries import outbox_counts

        self.lines_per_second.set(jobs.lines_per_second())
        self.sources.set(jobs.sources_alive())
        self.heartbeat.set(now.timestamp())
        try:
            for state, n in outbox_counts(jobs.store).items():
                self.outbox.labels(state=state).set(n)
        except Exception:  # noqa: BLE001 - metrics must never disturb the daemon
            log.debug("outbox metrics unavailable", exc_info=True)
