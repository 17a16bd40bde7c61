"""The follow loop: one foreground process following every configured source.

Design: ONE thread runs one loop over all sources (no thread per source). Each wake-up reads a
bounded batch (`daemon.batch_lines`) from every source and commits it (rows and checkpoint in one
transaction) before reading more, so memory stays bounded however fast a log grows, and the hooks
below never run concurrently with each other or with a commit. The loop waits on a self-pipe
(written by watchdog handlers and signal handlers) and on the journalctl pipes, with a timeout of
`daemon.poll_seconds` at most (the polling safety net) and never more than until the next tick.

Hooks for the stages that come after storage (detection, alerts, systemd notify):
- `on_stored(source, requests, now)` after each committed batch that holds requests;
- `on_rejects(source, rejects, now)` after each committed batch that holds rejected lines;
- `tick(now)` about once a second;
- `on_reload(settings)` after a SIGHUP's configuration was applied to the sources.
An exception in a hook is logged and the daemon goes on (the rows are already stored).
`monitor.service.app` is the composition root that builds a daemon and its jobs from the settings.

Signals: SIGTERM/SIGINT finish the batch in hand (committed), close everything and return 0 (within
a few hundred milliseconds); SIGHUP reloads the configuration: added sources start, removed ones stop,
changed ones restart from their checkpoints; an invalid file keeps the old configuration and logs why.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType
from typing import TYPE_CHECKING, Any

from monitor.config import Settings, SourceSettings
from monitor.core.errors import ConfigError, DatabaseReplaced, MonitorError, StoreError, database_error
from monitor.core.records import Request
from monitor.sources import Follower, commit, make_follower

if TYPE_CHECKING:
    from monitor.sources.watch import DirectoryWatcher
    from monitor.store import Store

log = logging.getLogger("monitor.service.daemon")

OnStored = Callable[[SourceSettings, list[Request], datetime], None]
OnRejects = Callable[[SourceSettings, list[tuple[int, str, str]], datetime], None]
Tick = Callable[[datetime], None]
OnReload = Callable[[Settings], None]
FollowerFactory = Callable[[SourceSettings, "Store"], Follower]

TICK_SECONDS = 1.0
ERROR_BACKOFF_SECONDS = 5.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Daemon:
    """Follows `settings.sources` into `store` until `request_stop()` (or SIGTERM/SIGINT)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        load_settings: Callable[[], Settings] | None = None,
        on_stored: OnStored | None = None,
        on_rejects: OnRejects | None = None,
        tick: Tick | None = None,
        on_reload: OnReload | None = None,
        follower_factory: FollowerFactory = make_follower,
        now: Callable[[], datetime] = _utcnow,
        guard: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.on_stored = on_stored
        self.on_rejects = on_rejects
        self.tick = tick
        self.on_reload = on_reload
        self._load_settings = load_settings
        self._factory = follower_factory
        self._now = now
        self.followers: dict[str, Follower] = {}
        self._retry_at: dict[str, float] = {}
        self._stop = False
        self._ended = False
        self._reload = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._watcher: DirectoryWatcher | None = None
        self.stored_lines = 0  # lines committed since start (for status and tests)
        self._stored = threading.Condition()  # notified at each commit and at the end (`wait_stored`)
        # Called before every commit and every tick; raises DatabaseReplaced when the database is not
        # the one we opened (see monitor.store.engine.DaemonLock.check): the daemon then stops.
        self._guard = guard
        self.fatal: StoreError | None = None
        self._logged: dict[str, float] = {}  # message -> when last logged (repeats once a minute)

    # --- control (safe from signal handlers and other threads) -------------------------------------------
    def wake(self) -> None:
        with contextlib.suppress(OSError):  # a full pipe already means "wake up"
            os.write(self._wake_w, b"\0")

    def request_stop(self) -> None:
        self._stop = True
        self.wake()

    def request_reload(self) -> None:
        self._reload = True
        self.wake()

    def wait_stored(self, lines: int, timeout: float) -> bool:
        """Wait until `lines` lines were committed since start (True), or the loop ended or `timeout`
        seconds passed (False). Wakes the loop first, so it reads now rather than at its next poll."""
        self.wake()
        with self._stored:
            self._stored.wait_for(lambda: self.stored_lines >= lines or self._ended, timeout)
            return self.stored_lines >= lines

    # --- the loop ----------------------------------------------------------------------------------------
    def run(self) -> int:
        """Run until stopped; return the exit status (0; 73 when the database was lost under us)."""
        previous = self._install_signals()
        try:
            self._apply_sources(self.settings.sources)
            log.info("following %d source(s)", len(self.followers))
            next_tick = time.monotonic()
            while not self._stop:
                if self._reload:
                    self._reload = False
                    self.reload()
                more = self.step()
                now = time.monotonic()
                if now >= next_tick:
                    next_tick = now + TICK_SECONDS
                    self._run_tick()
                if self._stop:
                    break
                if more:
                    self._drain_wake()
                    continue
                self._wait(max(0.0, min(self.settings.daemon.poll_seconds, next_tick - time.monotonic())))
        finally:
            self.close()
            self._restore_signals(previous)
            with self._stored:
                self._ended = True
                self._stored.notify_all()
        if self.fatal is not None:  # the caller reports it (the CLI: one error line, exit 73)
            return self.fatal.exit_code
        log.info("stopped after storing %d line(s)", self.stored_lines)
        return 0

    def step(self) -> bool:
        """Read and commit one bounded batch from every source; return True when any has more."""
        more = False
        for name, follower in list(self.followers.items()):
            if self._stop:
                break
            if time.monotonic() < self._retry_at.get(name, 0.0):
                continue
            more |= self._step_one(name, follower)
        with self._stored:  # for `wait_stored`
            self._stored.notify_all()
        return more

    def _step_one(self, name: str, follower: Follower) -> bool:
        budget = self.settings.daemon.batch_lines
        try:
            batches = follower.read(budget)
            for batch in batches:
                if self._guard is not None:
                    self._guard()
                commit(self.store, batch)
                self.stored_lines += batch.lines
                if batch.parsed and self.on_stored is not None:
                    self._call_hook("on_stored", self.on_stored, follower.source, batch.requests)
                if batch.rejects and self.on_rejects is not None:
                    self._call_hook("on_rejects", self.on_rejects, follower.source, batch.rejects)
        except DatabaseReplaced as exc:
            self._lost(exc)
            return False
        except Exception as exc:  # noqa: BLE001 - one broken source must not stop the others
            store_error = database_error(exc)
            if store_error is not None:  # one line, not a traceback: the database is the problem
                self._log_once(f"source {name}: {store_error}; retrying in {ERROR_BACKOFF_SECONDS:.0f} s")
            else:
                log.exception("source %s: unexpected error; retrying in %.0f s", name, ERROR_BACKOFF_SECONDS)
            self._failed(name, follower)
            return False
        return follower.more

    def _lost(self, exc: StoreError) -> None:
        """The database is gone: stop now, committing nothing more (what was read stays in the log)."""
        self.fatal = exc
        self.request_stop()

    def _log_once(self, message: str, every: float = 60.0) -> None:
        """Log an error line, but the same line at most once a minute (a full disk fails every tick)."""
        mono = time.monotonic()
        if mono - self._logged.get(message, -every) >= every:
            self._logged[message] = mono
            log.error("%s", message)

    def _failed(self, name: str, follower: Follower) -> None:
        self._retry_at[name] = time.monotonic() + ERROR_BACKOFF_SECONDS
        try:
            follower.rewind()  # what was read but not committed is read again
        except Exception:  # noqa: BLE001
            log.exception("source %s: cannot rewind; restarting it", name)
            self._restart_source(follower.source)

    def _call_hook(
        self,
        name: str,
        hook: Callable[[SourceSettings, Any, datetime], None],
        source: SourceSettings,
        rows: Any,
    ) -> None:
        try:
            hook(source, rows, self._now())
        except Exception as exc:  # noqa: BLE001 - the rows are stored; a hook bug must not stop ingestion
            store_error = database_error(exc)
            if store_error is not None:
                self._log_once(f"source {source.name}: rules and alerts: {store_error}")
            else:
                log.exception("%s hook failed for source %s", name, source.name)

    def _run_tick(self) -> None:
        if self._watcher is not None:
            try:
                self._watcher.ensure_running()
            except Exception:  # noqa: BLE001
                log.exception("file-event watcher supervision failed; polling continues")
        if self._guard is not None:
            try:
                self._guard()
            except DatabaseReplaced as exc:
                self._lost(exc)
                return
        if self.tick is not None:
            try:
                self.tick(self._now())
            except Exception as exc:  # noqa: BLE001
                store_error = database_error(exc)
                if store_error is not None:  # e.g. the heartbeat on a full disk: one line, not a traceback
                    self._log_once(f"heartbeat and housekeeping: {store_error}")
                else:
                    log.exception("tick hook failed")

    def _wait(self, timeout: float) -> None:
        fds = [self._wake_r]
        for follower in self.followers.values():
            fd = follower.fileno()
            if fd is not None:
                fds.append(fd)
        try:
            select.select(fds, [], [], timeout)
        except (OSError, ValueError):  # a descriptor closed under us: wait a little, not spin
            time.sleep(min(timeout, 0.1))
        self._drain_wake()

    def _drain_wake(self) -> None:
        with contextlib.suppress(OSError):
            while os.read(self._wake_r, 4096):
                pass

    # --- sources and reload ---------------------------------------------------------------------------------
    def reload(self) -> None:
        """Re-read the configuration (SIGHUP). Invalid: keep the old one and log every problem."""
        if self._load_settings is None:
            log.warning("reload requested but there is no configuration file to re-read")
            return
        try:
            new = self._load_settings()
        except MonitorError as exc:
            problems = "; ".join(exc.problems) if isinstance(exc, ConfigError) else ""
            log.error(
                "reload failed, keeping the running configuration: %s%s",
                exc,
                f" ({problems})" if problems else "",
            )
            return
        except Exception as exc:  # noqa: BLE001
            log.error("reload failed, keeping the running configuration: %s", exc)
            return
        if new.database.url != self.settings.database.url:
            log.warning("the database url changed; that takes a restart (the running database is kept)")
            new = new.model_copy(update={"database": self.settings.database})
        self.settings = new
        self._apply_sources(new.sources)
        log.info("configuration reloaded: following %d source(s)", len(self.followers))
        if self.on_reload is not None:
            try:
                self.on_reload(new)
            except Exception:  # noqa: BLE001 - the sources follow the new configuration already
                log.exception("applying the reloaded configuration to the jobs failed")

    def _apply_sources(self, sources: list[SourceSettings]) -> None:
        wanted = {s.name: s for s in sources}
        for name in list(self.followers):
            if name not in wanted or wanted[name] != self.followers[name].source:
                log.info("source %s: %s", name, "removed" if name not in wanted else "changed, restarting it")
                self._close_one(name)
        for name, source in wanted.items():
            if name not in self.followers:
                self._start_source(source)
        self._update_watcher()

    def _start_source(self, source: SourceSettings) -> None:
        try:
            self.followers[source.name] = self._factory(source, self.store)
            self._retry_at.pop(source.name, None)
        except MonitorError as exc:
            log.error("source %s: cannot start: %s", source.name, exc)
        except Exception:  # noqa: BLE001
            log.exception("source %s: cannot start", source.name)

    def _restart_source(self, source: SourceSettings) -> None:
        self._close_one(source.name)
        self._start_source(source)

    def _close_one(self, name: str) -> None:
        follower = self.followers.pop(name, None)
        if follower is not None:
            try:
                follower.close()
            except Exception:  # noqa: BLE001
                log.exception("source %s: error while closing", name)

    def _update_watcher(self) -> None:
        from monitor.sources.watch import DirectoryWatcher, wants_polling

        targets: dict[str, set[str]] = {}
        for follower in self.followers.values():
            source = follower.source
            if source.path is None or wants_polling(source.watch, source.path):
                continue
            for directory, prefixes in follower.watch_targets().items():
                targets.setdefault(directory, set()).update(prefixes)
        if targets and self._watcher is None:
            self._watcher = DirectoryWatcher(self.wake)
        if self._watcher is not None:
            self._watcher.set_targets(targets)
            self._watcher.ensure_running()

    def close(self) -> None:
        for name in list(self.followers):
            self._close_one(name)
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None

    # --- signals ------------------------------------------------------------------------------------------
    def _install_signals(self) -> dict[int, object]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def stop(signum: int, _frame: FrameType | None) -> None:
            self.request_stop()

        def hup(_signum: int, _frame: FrameType | None) -> None:
            self.request_reload()

        previous: dict[int, object] = {}
        for signum, handler in ((signal.SIGTERM, stop), (signal.SIGINT, stop), (signal.SIGHUP, hup)):
            previous[signum] = signal.signal(signum, handler)
        return previous

    @staticmethod
    def _restore_signals(previous: dict[int, object]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def __del__(self) -> None:
        for fd in (getattr(self, "_wake_r", -1), getattr(self, "_wake_w", -1)):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
