"""`ollama-monitor demo`: the whole job in about a minute, on a temporary SQLite database, no setup.

1. History: two weeks of simulated normal traffic from 25 known clients is written as an Ollama log,
   ingested (the same path as `ingest`) and the isolation forest is trained on it (as `train`).
2. Live: the real daemon (an `App` of monitor.service.app, exactly what `run` uses) follows a new Ollama log while a
   writer thread appends to it in real time: known clients at work, then an unknown scanner, a model
   pull and delete from an unknown address, and a known client turning hostile. Alerts print as they
   fire (and go to any apprise URL given with --notify).
3. The current window is closed early so the detector scores it (normally this happens on the hour),
   and the demo ends with the summary of what it saw.

The parts are wired by `monitor.service.app.App`, as for `run`; this module adds the history, the
writer thread and the summary. The CLI only calls `run_demo`.
"""

from __future__ import annotations

import logging
import random
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor import config as config_mod
from monitor.core.records import Notification
from monitor.service import simulate
from monitor.service.simulate import Event

if TYPE_CHECKING:
    from monitor.service.daemon import Daemon

log = logging.getLogger("monitor.demo")

SCANNER_IP = "203.0.113.7"
PULLER_IP = "192.0.2.50"
HOSTILE_IP = simulate.HOSTILE_IP
CHAT_UA = "ollama-python/0.4.7 (x86_64 linux) Python/3.12.3"


@dataclass(frozen=True)
class Beat:
    """One step of the live script: at `second`, say `note` and write `events()`."""

    second: float
    note: str
    events: Callable[[datetime, random.Random], list[Event]]


def _ev(
    ts: datetime, ip: str, method: str, path: str, status: int, ms: float, size: int, ua: str, tag: str
) -> Event:
    return Event(ts, ip, method, path, status, ms, size, ua, tag)


def _background(ts: datetime, rng: random.Random) -> list[Event]:
    ip = rng.choice((*simulate.USER_IPS, simulate.WEBUI_IP, simulate.CI_IP))
    roll = rng.random()
    if roll < 0.7:
        return [
            _ev(
                ts,
                ip,
                "POST",
                "/api/chat",
                200,
                rng.uniform(400, 4000),
                rng.randrange(400, 4000),
                CHAT_UA,
                "normal",
            )
        ]
    if roll < 0.85:
        return [
            _ev(
                ts,
                ip,
                "POST",
                "/api/embed",
                200,
                rng.uniform(20, 90),
                rng.randrange(2000, 9000),
                CHAT_UA,
                "normal",
            )
        ]
    return [_ev(ts, ip, "GET", "/api/tags", 200, rng.uniform(0.2, 2), 1800, CHAT_UA, "normal")]


def _scanner(ts: datetime, rng: random.Random) -> list[Event]:
    ua = "Mozilla/5.0 zgrab/0.x"
    return [
        _ev(ts, SCANNER_IP, "GET", "/", 200, 0.03, 17, ua, "recon"),
        _ev(ts, SCANNER_IP, "GET", "/api/version", 200, 0.05, 20, ua, "recon"),
        _ev(ts, SCANNER_IP, "GET", "/api/tags", 200, 0.4, 1800, ua, "recon"),
        _ev(ts, SCANNER_IP, "POST", "/api/show", 200, 3.1, 5200, ua, "recon"),
    ]


def _freeload(ts: datetime, rng: random.Random) -> list[Event]:
    return [
        _ev(
            ts,
            SCANNER_IP,
            "POST",
            "/v1/chat/completions",
            200,
            rng.uniform(2000, 9000),
            3000,
            "python-requests/2.31",
            "freeload",
        )
    ]


def _pull(ts: datetime, rng: random.Random) -> list[Event]:
    return [
        _ev(ts, PULLER_IP, "POST", "/api/pull", 200, 61_000, 900, "Go-http-client/1.1", "management"),
        _ev(ts, PULLER_IP, "DELETE", "/api/delete", 200, 2.0, 0, "Go-http-client/1.1", "management"),
    ]


def _hostile(ts: datetime, rng: random.Random) -> list[Event]:
    out = []
    for _ in range(40):
        path = rng.choice(("/api/tags", "/api/show", "/api/chat", "/api/chat", "/api/ps"))
        method = "GET" if path in ("/api/tags", "/api/ps") else "POST"
        out.append(
            _ev(
                ts,
                HOSTILE_IP,
                method,
                path,
                200,
                rng.uniform(1, 900),
                rng.randrange(100, 6000),
                "curl/8.5.0",
                "hostile",
            )
        )
    return out


def _hostile_finale(ts: datetime, rng: random.Random) -> list[Event]:
    return [
        _ev(ts, HOSTILE_IP, "GET", "/.env", 404, 0.02, 18, "curl/8.5.0", "hostile"),
        _ev(ts, HOSTILE_IP, "POST", "/api/create", 200, 5200, 120, "curl/8.5.0", "hostile"),
    ]


SCRIPT = (
    Beat(0, "known clients at work: chat, embeddings, model lists (no alerts expected)", lambda t, r: []),
    Beat(
        12,
        f"an unknown address {SCANNER_IP} probes the API: GET /, /api/version, /api/tags, /api/show",
        _scanner,
    ),
    Beat(16, f"{SCANNER_IP} starts using your GPU (freeloading on /v1/chat/completions)", _freeload),
    Beat(24, f"another unknown address {PULLER_IP} pulls and deletes models (management endpoints)", _pull),
    Beat(34, f"known client {HOSTILE_IP} turns hostile: a burst of enumeration and chat", _hostile),
    Beat(37, f"{HOSTILE_IP} keeps going", _hostile),
    Beat(40, f"{HOSTILE_IP} keeps going", _hostile),
    Beat(43, f"{HOSTILE_IP} probes for secrets and creates a model", _hostile_finale),
)


def demo_settings(workdir: Path, notify: list[str]) -> config_mod.Settings:
    """The demo's settings: the embedded defaults plus a temporary database, one Ollama log, the
    simulated known clients, and the --notify URLs."""
    return config_mod.validate(
        {
            "database": {"url": f"sqlite:///{workdir / 'monitor.db'}"},
            "sources": [
                {
                    "name": "ollama",
                    "path": str(workdir / "ollama.log"),
                    "format": "ollama",
                    "timezone": "UTC",
                    "start_at": "beginning",
                    "watch": "auto",
                }
            ],
            "known": simulate.known_config(),
            "detector": {"model_dir": str(workdir / "models")},
            "alerts": {"urls": notify, "min_severity": "info"},
            "daemon": {"poll_seconds": 0.5},
        },
        "<demo>",
    )


class Narrator:
    """What the demo tells the person watching; the CLI supplies the printing functions."""

    def __init__(self, say: Callable[[str], None], alert: Callable[[Notification], None]) -> None:
        self.say = say
        self.alert = alert


def run_demo(
    narrator: Narrator, *, seconds: float = 60.0, notify: list[str] | None = None, workdir: Path | None = None
) -> dict[str, Any]:
    """Run the demo; return facts for the caller (alerts by rule, paths, the summary text)."""
    from monitor.ingest.backfill import context_for, ingest_file
    from monitor.service.app import App
    from monitor.store import Store

    own_dir = workdir is None
    tmp = tempfile.TemporaryDirectory(prefix="ollama-monitor-demo-") if own_dir else None
    work = Path(tmp.name) if tmp is not None else Path(workdir)  # type: ignore[arg-type]
    settings = demo_settings(work, notify or [])
    say = narrator.say
    fired: list[Notification] = []
    try:
        store = Store.open(settings.database.url)
        now = datetime.now(UTC)
        # 1. history -------------------------------------------------------------------------------
        start = (now - timedelta(days=14)).replace(minute=0, second=0, microsecond=0)
        say(f"Simulating two weeks of normal traffic from {len(simulate.KNOWN_IPS)} known clients ...")
        history = [e for e in simulate.normal_traffic(start, 14) if e.ts < now - timedelta(hours=1)]
        hist_log = simulate.write_log(history, work / "history.log", "ollama")
        report = ingest_file(store, hist_log, "ollama", "ollama", context_for(settings.sources[0]))
        say(
            f"Ingested {report.inserted:,} requests of history in {report.seconds:.1f}s "
            f"({report.lines_per_second:,.0f} lines/s), the same path as `ollama-monitor ingest`."
        )

        def echo(note: Notification) -> None:
            fired.append(note)
            narrator.alert(note)

        app = App(settings, store, echo=echo)
        app.pipeline.catch_up(now, alert=False)  # compute the history's (client, hour) windows
        trained = app.pipeline.train(now)
        if trained:
            say(
                f"Trained the isolation forest on {trained.get('rows', '?')} (client, hour) windows of the known "
                f"clients; its threshold is calibrated so that {settings.detector.threshold_quantile:.1%} of them "
                "would alert."
            )
        else:
            say("Not enough history to train the detector: rules only.")
        # 2. live ------------------------------------------------------------------------------------
        live_log = Path(settings.sources[0].path or "")
        live_log.touch()
        say(
            f"Following {live_log} with the real daemon for {seconds:.0f} seconds. Alerts appear as they fire."
        )
        writer = threading.Thread(target=_write_live, args=(live_log, seconds, say, app.daemon), daemon=True)

        def close_early() -> None:
            # 3. close the current window early so the detector scores it --------------------------
            writer.join(timeout=5)
            later = datetime.now(UTC) + timedelta(minutes=settings.detector.window_minutes + 3)
            say(
                "Closing the current hour early so the detector scores it (live, this happens on the hour) ..."
            )
            app.jobs.detect(later)

        writer.start()
        try:
            app.run(before_stop=close_early)
        finally:
            writer.join(timeout=5)
        if notify and app.jobs.deliver_now():
            say("Some notifications could not be delivered to the --notify URL(s).")
        summary_text = _summary(store, settings, now)
        store.close()
        rules: dict[str, int] = {}
        for n in fired:
            rules[n.rule] = rules.get(n.rule, 0) + 1
        return {"alerts": rules, "notifications": len(fired), "workdir": str(work), "summary": summary_text}
    finally:
        if tmp is not None:
            tmp.cleanup()


def _write_live(path: Path, seconds: float, say: Callable[[str], None], daemon: Daemon) -> None:
    rng = random.Random(11)
    began = time.monotonic()
    scale = seconds / 60.0  # the script is written for a minute; --seconds stretches or shrinks it
    beats = list(SCRIPT)
    written = 0
    with path.open("a", encoding="utf-8") as fh:
        while True:
            elapsed = time.monotonic() - began
            if elapsed >= seconds:
                break
            events: list[Event] = []
            now = datetime.now(UTC)
            while beats and beats[0].second * scale <= elapsed:
                beat = beats.pop(0)
                say(f"[{elapsed:4.0f}s] {beat.note}")
                events.extend(beat.events(now, rng))
            if rng.random() < 0.6:
                events.extend(_background(now, rng))
            for ev in events:
                fh.write(simulate.to_gin(ev) + "\n")
            written += len(events)
            fh.flush()
            time.sleep(0.25)  # the pace of the simulated traffic (not a synchronisation)
    # Every line written is committed before the demo stops (or the daemon ended, or 15 s passed).
    if not daemon.wait_stored(written, timeout=15.0):
        log.warning(
            "the daemon read %d of the %d demo lines before the demo ended", daemon.stored_lines, written
        )
    daemon.request_stop()


def _summary(store: Any, settings: config_mod.Settings, now: datetime) -> str:
    from monitor.reports.summary import build as summary
    from monitor.reports.summary.render import render

    since = now - timedelta(hours=1)
    # Until the end of the window closed early, so that its anomaly alert is in the period too.
    until = datetime.now(UTC) + timedelta(minutes=settings.detector.window_minutes + 5)
    data = summary.build(store, settings, since, until)
    return render(data, "text", width=110)
