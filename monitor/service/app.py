"""The composition root: the daemon's parts built from the settings, the same for `run` and `demo`.

`App(settings, store, ...)` builds, in this order:
- the metrics (`[daemon] metrics_address`; None when off), served when the app starts;
- the jobs (`monitor.service.jobs`), which build the detection half (`monitor.service.detection`: known
  sources, dispatcher, outbox, pipeline) and rebuild it on a reload;
- the daemon (`monitor.service.daemon`), which starts the sources and hands every committed batch, every
  tick and every reloaded configuration to the jobs (`on_stored`, `on_rejects`, `tick`, `on_reload`).

`App.run()` starts the metrics server and the delivery thread, runs the follow loop until SIGTERM,
SIGINT or `request_stop()`, stops the jobs and returns the exit status. `run_daemon` is `ollama-monitor
run`: the daemon lock around an `App` on the configured database.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from monitor.config import Settings
from monitor.service.daemon import Daemon
from monitor.service.jobs import Echo, Jobs
from monitor.service.metrics import Metrics
from monitor.service.systemd import Notifier

if TYPE_CHECKING:
    from monitor.detect.pipeline import Pipeline
    from monitor.store import Store


def _utcnow() -> datetime:
    return datetime.now(UTC)


class App:
    """One daemon and its jobs on `store`, wired once. `load_settings` re-reads the configuration on
    SIGHUP (None: no file to re-read); `guard` is checked before every commit and tick (the daemon
    lock's check); `echo` sees every released notification (the demo prints them)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        load_settings: Callable[[], Settings] | None = None,
        guard: Callable[[], None] | None = None,
        echo: Echo | None = None,
        notifier: Notifier | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.store = store
        self.metrics = Metrics.build(settings.daemon.metrics_address)
        self.jobs = Jobs(
            settings,
            store,
            notifier=notifier,
            echo=echo,
            clock=clock,
            metrics=self.metrics,
            sources_alive=self.sources_alive,
        )
        self.daemon = Daemon(
            settings,
            store,
            load_settings=load_settings,
            on_stored=self.jobs.on_stored,
            on_rejects=self.jobs.on_rejects,
            tick=self.jobs.tick,
            on_reload=self.jobs.settings_changed,
            now=clock,
            guard=guard,
        )

    @property
    def pipeline(self) -> Pipeline:
        return self.jobs.pipeline

    def sources_alive(self) -> int:
        """The sources being followed now (a source that cannot start is configured, not alive)."""
        return len(self.daemon.followers)

    def run(self, before_stop: Callable[[], None] | None = None) -> int:
        """Follow until stopped; return the exit status (`daemon.fatal` says why when it is not 0).
        `before_stop` runs after the loop ended and before the jobs stop (they release what digests
        hold): the demo closes its last window there."""
        if self.metrics is not None:
            self.metrics.serve()
        self.jobs.start()
        try:
            code = self.daemon.run()
            if before_stop is not None:
                before_stop()
        finally:
            self.jobs.stop(record=self.daemon.fatal is None)
        return code


def run_daemon(settings: Settings, store: Store, load_settings: Callable[[], Settings] | None) -> int:
    """`ollama-monitor run`: hold the daemon lock on `store`, run an `App`, close the store; return
    the exit status. A lost database (`DatabaseReplaced`) or a second daemon raise their StoreError."""
    from monitor.store.engine import DaemonLock

    lock = DaemonLock(store.engine)
    try:
        lock.acquire()  # a second daemon on this database stops here (exit 73)
        lock.refuse_if_replaced(bool(store.checkpoints()))
        app = App(settings, store, load_settings=load_settings, guard=lock.check)
        code = app.run()
        if app.daemon.fatal is not None:
            raise app.daemon.fatal  # one line on stderr and its exit status, as for every command
    finally:
        lock.release()
        store.close()
    return code
