"""The fixed two weeks behind the summary tests (no tests here: `build_week` is shared by them).

Two weeks of `monitor.service.simulate` traffic (25 known clients plus every attack scenario) starting on
Monday 2026-03-02, plus a hostile client whose paths carry terminal escapes, bidi overrides, Markdown,
HTML and chat mentions, a few stored alerts (one quoting that text) and two detector metadata files.
The summary under test is the second week, 2026-03-09 to 2026-03-16; the first is its "previous week".
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert

from monitor.config import Settings
from monitor.core.records import Request
from monitor.detect.rules.text import wave_text
from monitor.service import simulate
from monitor.store import Store, schema

START = simulate.DEFAULT_START  # Monday 2026-03-02
WEEK = START + timedelta(days=7)
UNTIL = WEEK + timedelta(days=7)
NOW = UNTIL + timedelta(hours=6)
HOSTILE_IP = "203.0.113.66"
APPROVED_IP = simulate.DRIP_IP
EVIL_PATHS = (
    "/api/tags?\x1b[2J\x1b[31mpwned\x07",
    "/x|evil|[click](http://evil.example)<script>alert(1)</script>",
    "/api/chat\u202egnp.exe",
    "/<!channel> @everyone **bold** # heading",
)


@dataclass(frozen=True)
class Week:
    db_url: str
    settings: Settings
    model_dir: Path


def hostile_events() -> list[simulate.Event]:
    """A scanner in the summarised week whose paths try to break every output medium."""
    out = []
    for i in range(400):  # enough to rank among the busiest endpoints
        ts = WEEK + timedelta(days=2, hours=3, seconds=i * 7)
        path = EVIL_PATHS[i % len(EVIL_PATHS)]
        out.append(
            simulate.Event(
                ts, HOSTILE_IP, "GET", path, 404, 0.4, 19, "evil\x1b]0;title\x07agent", "hostile-text"
            )
        )
    return out


# A wave alert as the rules write it: several lines, over 400 characters (the HTML once cut it there).
WAVE_IPS = tuple(f"45.83.0.{i}" for i in range(10, 70))
WAVE_TITLE, WAVE_MESSAGE = wave_text(
    WAVE_IPS,
    120,
    ["nginx"],
    WEEK + timedelta(days=3, hours=16, minutes=41),
    WEEK + timedelta(days=3, hours=16, minutes=45),
)

ALERTS = [
    (
        WEEK + timedelta(days=1, hours=2, minutes=41),
        "unknown-source",
        "warning",
        [simulate.DRIP_IP],
        "Unknown source 198.51.100.77",
        "198.51.100.77 made 1 request; it is in no allow-list.",
        {},
    ),
    (
        WEEK + timedelta(days=2, hours=3),
        "scanner-probe",
        "critical",
        [HOSTILE_IP],
        "Scanner probes from 203.0.113.66 <script>alert(1)</script>",
        "Paths like /api/tags?\x1b[2J\x1b[31mpwned and [click](http://evil.example) <!channel>",
        {"probes": 400},
    ),
    (
        WEEK + timedelta(days=3, hours=16, minutes=45),
        "unknown-source",
        "warning",
        list(WAVE_IPS),
        WAVE_TITLE,
        WAVE_MESSAGE,
        {"reason": "wave", "sources": len(WAVE_IPS)},
    ),
    (
        WEEK + timedelta(hours=3),
        "anomaly",
        "warning",
        [simulate.HOSTILE_IP],
        "Unusual activity from 10.0.1.20 at night",
        "requests 900 (typical 0-12), hour 02 (typical 08-18): isolation forest score -0.71",
        {"score": -0.71},
    ),
    # Outside the period: must not be listed.
    (
        START + timedelta(days=3, hours=14),
        "recon-sequence",
        "warning",
        [simulate.RECON_IP],
        "Recon from 203.0.113.7",
        "Listed the models and showed each one.",
        {},
    ),
]


def populate(store: Store, model_dir: Path) -> None:
    events = simulate.simulate(START, days=14, seed=7, scenarios=list(simulate.SCENARIOS)) + hostile_events()
    events.sort(key=lambda e: e.ts)
    file_id = store.file_id("simulated", "0" * 64, "/var/log/ollama.log")
    rows = [
        (i, Request(e.ts, e.client_ip, e.method, e.path, e.status, e.latency_ms, e.bytes_sent, e.user_agent))
        for i, e in enumerate(events)
    ]
    store.add_batch("simulated", file_id, rows)
    store.approve(f"{APPROVED_IP}/32", "partner lab")
    with store.engine.begin() as conn:
        for ts, rule, severity, ips, title, message, details in ALERTS:
            conn.execute(
                insert(schema.alerts).values(
                    ts=ts,
                    rule=rule,
                    severity=severity,
                    key=f"{rule}:{ips[0]}",
                    client_ips=json.dumps(ips),
                    title=title,
                    message=message,
                    details=json.dumps(details),
                    created_at=ts,
                )
            )
    model_dir.mkdir(parents=True, exist_ok=True)
    older = model_dir / "detector-2026-03-01.json"
    newer = model_dir / "detector-2026-03-08.json"
    older.write_text(json.dumps({"trained_at": "2026-03-01T00:00:00Z", "windows": 100}), encoding="utf-8")
    newer.write_text(
        json.dumps(
            {
                "trained_at": "2026-03-08T00:10:00Z",
                "windows": 4210,
                "threshold": -0.62,
                "sklearn": "1.9.1",
                "features": ["requests", "inference", "night"],
                "window_minutes": 60,
            }
        ),
        encoding="utf-8",
    )
    os.utime(older, (datetime(2026, 3, 1, tzinfo=UTC).timestamp(),) * 2)
    os.utime(newer, (datetime(2026, 3, 8, 0, 10, tzinfo=UTC).timestamp(),) * 2)


def settings_for(db_url: str, model_dir: Path, **alerts: object) -> Settings:
    known = simulate.known_settings().model_dump()
    return Settings.model_validate(
        {
            "database": {"url": db_url},
            "known": known,
            "detector": {"model_dir": str(model_dir)},
            "alerts": alerts,
        }
    )


_BUILT: list[Week] = []


def build_week(tmp_path_factory: pytest.TempPathFactory) -> Week:
    """Return a SQLite store with the fixed two weeks, built once per test session (per xdist worker).

    Each test module wraps this in its own session fixture, so the result is memoised here. Tests must
    not write to the store.
    """
    if not _BUILT:
        base = tmp_path_factory.mktemp("summary-week")
        url = f"sqlite:///{base / 'monitor.db'}"
        model_dir = base / "models"
        with Store.open(url) as store:
            populate(store, model_dir)
        _BUILT.append(Week(url, settings_for(url, model_dir), model_dir))
    return _BUILT[0]
