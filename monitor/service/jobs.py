"""The daemon's jobs besides following: detection, alert delivery, heartbeat, systemd, retention, metrics.

`Jobs` plugs into `monitor.service.daemon.Daemon` through its hooks (`monitor.service.app` wires them):
- `on_stored(source, requests, now)`: the rules run on every committed batch (the pipeline);
- `on_rejects(source, rejects, now)`: a batch's rejected lines go to the rules (parse-failures);
- `tick(now)`: about once a second, the table of periodic tasks (`TASKS` below, run by the scheduler of
  `monitor.service.tasks` on the daemon's clock): close and score windows, retrain when due and flush
  digests; sample the lines/s rate; pick up approvals; write the heartbeat; tell systemd how we are
  (`STATUS=`, `WATCHDOG=1`) and update the metrics; prune old rows hourly;
- `settings_changed(settings)`: a SIGHUP's new settings (allow-list, alert URLs): the detection half
  (`monitor.service.detection`) is built again.

Delivery runs in its own thread: apprise calls can take seconds (timeouts, Slack's throttle), and the
follow loop must never wait for a mail server. The thread wakes when notifications are queued, and
every few seconds for retries. Everything it needs is in the outbox table, so nothing is lost if it dies;
the watchdog is only fed while it is alive.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from monitor.config import Settings, SourceSettings
from monitor.core.errors import database_error
from monitor.core.records import Notification, Request
from monitor.detect.known import KnownSources
from monitor.service.detection import BuildDetection, Detection, build_detection
from monitor.service.systemd import Notifier
from monitor.service.tasks import EVERY_CALL, Scheduler, Task

if TYPE_CHECKING:
    from monitor.detect.pipeline import Pipeline
    from monitor.service.metrics import Metrics
    from monitor.store import Store

log = logging.getLogger("monitor.service.daemon")

HEARTBEAT_EVERY = timedelta(seconds=10)
APPROVALS_EVERY = timedelta(seconds=10)  # `sources approve` on the command line takes effect within this
STATUS_EVERY = timedelta(seconds=5)
PRUNE_EVERY = timedelta(hours=1)
RATE_SPAN = timedelta(seconds=60)  # lines/s is measured over the last minute
DELIVERY_POLL_SECONDS = 5.0

Echo = Callable[[Notification], None]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _log_failure(what: str) -> None:
    """Log a failed job: a database error (a full disk, a damaged file) as one line, anything else (a
    bug) with its traceback. Call from an `except` block."""
    exc = sys.exc_info()[1]
    store_error = database_error(exc) if exc is not None else None
    if store_error is not None:
        log.error("%s: %s", what, store_error)
    else:
        log.exception(what)


class Jobs:
    """Owns the detection half, the delivery thread and the service plumbing for one `run`.

    `sources_alive` counts the sources being followed (the daemon's followers; by default the
    configured ones); `build` makes the detection half from settings (tests may pass their own).
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        notifier: Notifier | None = None,
        echo: Echo | None = None,
        clock: Callable[[], datetime] = _utcnow,
        metrics: Metrics | None = None,
        sources_alive: Callable[[], int] | None = None,
        build: BuildDetection = build_detection,
    ) -> None:
        self.settings = settings
        self.store = store
        self.notifier = notifier or Notifier()
        self.echo = echo
        self.clock = clock
        self.metrics = metrics
        self.sources_alive: Callable[[], int] = sources_alive or (lambda: len(self.settings.sources))
        self._build = build
        self._approved = self._approvals()
        self.detection: Detection = build(settings, store, self._approved)
        self._delivery_wake = threading.Event()
        self._delivery_stop = threading.Event()
        self._delivery: threading.Thread | None = None
        self._rates: deque[tuple[datetime, int]] = deque()  # (tick time, lines stored) for lines/s
        self._lines = 0
        self._ready = False
        self.scheduler = Scheduler(self.tasks())

    @property
    def pipeline(self) -> Pipeline:
        return self.detection.pipeline

    def tasks(self) -> list[Task]:
        """The periodic duties, in the order they run within a tick."""
        table = [
            Task("detect", EVERY_CALL, self.detect),
            Task("rate", EVERY_CALL, self.sample_rate),
            Task("approvals", APPROVALS_EVERY, self.refresh_approvals),
            Task("heartbeat", HEARTBEAT_EVERY, self.heartbeat),
            Task("status", STATUS_EVERY, self.report_status),
        ]
        if self.notifier.watchdog_seconds is not None:  # systemd's WatchdogSec=: feed it twice as often
            table.append(
                Task("watchdog", timedelta(seconds=self.notifier.watchdog_seconds / 2), self.feed_watchdog)
            )
        table.append(Task("prune", PRUNE_EVERY, self.prune))
        return table

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        self._delivery = threading.Thread(target=self._deliver_loop, name="delivery", daemon=True)
        self._delivery.start()
        self.store.set_meta("daemon.pid", str(os.getpid()))

    def stop(self, record: bool = True) -> None:
        """Stop delivery and record the stop. `record=False` when the database is gone: writing to the
        path then would only create a fresh file there."""
        self.notifier.stopping()
        if not record:
            self._stop_delivery()
            self.notifier.close()
            return
        try:
            # Release what a digest still holds: queued in the outbox now, delivered at the next start
            # (or by `alerts retry`) if the delivery thread has no time left for it.
            self._release_held()
        except Exception:  # noqa: BLE001 - stopping must not fail on a database hiccup
            _log_failure("could not release held alerts")
        self._stop_delivery()
        try:
            self.store.set_meta("daemon.stopped_at", self.clock().isoformat())
        except Exception:  # noqa: BLE001 - stopping must not fail on a database hiccup
            _log_failure("could not record the stop")
        self.notifier.close()

    def _stop_delivery(self) -> None:
        self._delivery_stop.set()
        self._delivery_wake.set()
        if self._delivery is not None:
            self._delivery.join(timeout=3.0)

    def deliver_now(self, budget_seconds: float = 20.0) -> int:
        """Deliver what is due in the outbox now, in this thread (the demo, whose database is temporary,
        calls it after `stop`); return how many attempts failed."""
        outbox = self.detection.outbox
        if outbox is None:
            return 0
        return sum(1 for a in outbox.deliver(budget_seconds=budget_seconds) if not a.ok)

    # --- hooks ------------------------------------------------------------------------------------
    def on_stored(self, source: SourceSettings, requests: list[Request], now: datetime) -> None:
        self._lines += len(requests)
        if self.metrics is not None:
            self.metrics.requests.labels(source=source.name).inc(len(requests))
        self.emit(self.pipeline.process(source, requests, now))

    def on_rejects(self, source: SourceSettings, rejects: list[tuple[int, str, str]], now: datetime) -> None:
        """Hand a committed batch's rejected lines to the rules (the parse-failures rule)."""
        self.emit(self.pipeline.process(source, [], now, rejects=rejects))

    def tick(self, now: datetime) -> None:
        if not self._ready:
            self._ready = True
            self.notifier.ready(self._status_text())
            log.info("ready")
        self.scheduler.run(now)

    def settings_changed(self, settings: Settings) -> None:
        """Follow a SIGHUP: new allow-list and approvals, new alert settings (URLs, routes, limits).

        The rules' memory starts afresh (their cooldowns are seeded again from the `alerts` table), and
        an open digest is released first so that nothing it holds is lost.
        """
        self._release_held()
        self.settings = settings
        self._approved = self._approvals()
        self.detection = self._build(settings, self.store, self._approved)
        self._delivery_wake.set()
        log.info(
            "alerting reconfigured: %d alert service(s), %d known network(s)",
            len(settings.alerts.urls),
            len(settings.known.allow) + len(settings.known.admins),
        )

    def emit(self, notes: list[Notification]) -> None:
        """Log, count and echo released notifications, and wake the delivery thread."""
        if not notes:
            return
        for note in notes:
            log.warning("alert: [%s] %s (%s)", note.severity.value, note.title, note.rule)
            if self.metrics is not None:
                self.metrics.notifications.labels(rule=note.rule, severity=note.severity.value).inc()
            if self.echo is not None:
                self.echo(note)
        self._delivery_wake.set()

    # --- the periodic duties (the `tasks()` table) ------------------------------------------------
    def detect(self, now: datetime) -> None:
        """Close and score the windows that ended by `now`, retrain when due, flush due digests."""
        self.emit(self.pipeline.tick(now))

    def sample_rate(self, now: datetime) -> None:
        """Record (now, lines stored) for `lines_per_second`, keeping the last minute."""
        if self._rates and now < self._rates[-1][0]:  # the clock went back: start the minute again
            self._rates.clear()
        self._rates.append((now, self._lines))
        while len(self._rates) > 2 and now - self._rates[0][0] > RATE_SPAN:
            self._rates.popleft()

    def refresh_approvals(self, now: datetime | None = None) -> None:
        """Pick up `sources approve` / `revoke` run while the daemon is running."""
        approved = self._approvals()
        if approved != self._approved:
            self._approved = approved
            self.pipeline.set_known(KnownSources(self.settings.known, approved))
            log.info("approvals changed: %d approved network(s)", len(approved))

    def heartbeat(self, now: datetime) -> None:
        """What `status` reads to tell a running daemon from a stuck or stopped one."""
        self.store.set_meta("daemon.heartbeat", now.isoformat())
        self.store.set_meta("daemon.lines_per_second", f"{self.lines_per_second():.2f}")

    def report_status(self, now: datetime) -> None:
        """systemd's STATUS= line and the metrics' gauges."""
        self.notifier.status(self._status_text())
        if self.metrics is not None:
            self.metrics.update(
                lines_per_second=self.lines_per_second(),
                sources=self.sources_alive(),
                store=self.store,
                now=now,
            )

    def feed_watchdog(self, now: datetime) -> bool:
        """WATCHDOG=1 while the delivery thread lives; withheld (and tried again next tick) when it died,
        so that systemd restarts us."""
        delivery_ok = self._delivery is None or self._delivery.is_alive()
        if not delivery_ok:
            log.error(
                "a worker died (delivery alive: %s); withholding WATCHDOG=1 so systemd restarts us",
                delivery_ok,
            )
            return False
        self.notifier.watchdog()
        return True

    def prune(self, now: datetime) -> None:
        """Retention: delete requests, windows and rollups older than `[retention]` keeps."""
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

    # --- internals --------------------------------------------------------------------------------
    def _approvals(self) -> list[str]:
        return sorted(a["network"] for a in self.store.approvals())

    def _release_held(self) -> None:
        now = self.clock()
        self.detect(now)
        # A digest whose window is still open: close it now rather than lose it.
        self.emit(self.detection.dispatcher.flush(now + timedelta(days=1)))

    def lines_per_second(self) -> float:
        if len(self._rates) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self._rates[0], self._rates[-1]
        seconds = (t1 - t0).total_seconds()
        return (n1 - n0) / seconds if seconds > 0 else 0.0

    def _status_text(self) -> str:
        from monitor.store.status_queries import outbox_counts

        try:
            pending = outbox_counts(self.store).get("pending", 0)
        except Exception:  # noqa: BLE001
            pending = -1
        model = "model" if self.pipeline.detector is not None else "rules only"
        return (
            f"{self.lines_per_second():.1f} lines/s, {self.sources_alive()} source(s), "
            f"{pending} pending alert(s), {model}"
        )

    def _deliver_loop(self) -> None:
        while not self._delivery_stop.is_set():
            self._delivery_wake.wait(DELIVERY_POLL_SECONDS)
            self._delivery_wake.clear()
            if self._delivery_stop.is_set():
                break
            outbox = self.detection.outbox
            if outbox is None:
                continue
            try:
                # Wall-clock time: delivery happens now. A slow receiver's send goes on in its own
                # thread past this pass (monitor.alerts.delivery), so the others are served every pass.
                attempts = outbox.deliver(wait_seconds=1.0)
            except Exception:  # noqa: BLE001 - a delivery bug must not kill the thread; rows stay pending
                _log_failure("delivering notifications failed; they stay pending")
                continue
            failed = [a for a in attempts if not a.ok]
            if failed:
                log.warning(
                    "%d notification attempt(s) failed; they will be retried with backoff", len(failed)
                )
