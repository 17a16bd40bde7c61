"""Detector windows follow log time: a daemon catching up on a backlog, and logs ingested later or again.

Real daemon (follower, store, pipeline) on a real file and a real SQLite database; the CLI for `ingest`
and `train`. Only the daemon's clock is shifted, to let the last window's grace pass without waiting.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.config import validate
from monitor.service import simulate
from monitor.service.daemon import Daemon
from monitor.service.jobs import Jobs
from monitor.store import Store
from tests.conftest import CliRunner

HOUR = timedelta(hours=1)


def _week_of_backlog(path: Path) -> int:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    events = simulate.simulate(now - timedelta(days=8), days=7, seed=5)
    simulate.write_log(events, path, "nginx")
    return len(events)


def _config(tmp_path: Path, name: str, log: Path, **extra: object) -> dict[str, object]:
    return {
        "database": {"url": f"sqlite:///{tmp_path / name}.db"},
        "detector": {"model_dir": str(tmp_path / f"{name}-models")},
        "daemon": {"batch_lines": 500},
        "known": {"allow": ["10.0.0.0/8", "127.0.0.0/8"]},
        "sources": [{"name": "nginx", "path": str(log), "format": "nginx", "start_at": "beginning", **extra}],
    }


def _toml(cfg: dict[str, object]) -> str:
    db, det, src = cfg["database"], cfg["detector"], cfg["sources"][0]  # type: ignore[index]
    return (
        f'[database]\nurl = "{db["url"]}"\n[detector]\nmodel_dir = "{det["model_dir"]}"\n'  # type: ignore[index]
        '[known]\nallow = ["10.0.0.0/8", "127.0.0.0/8"]\n'
        f'[[sources]]\nname = "{src["name"]}"\npath = "{src["path"]}"\nformat = "nginx"\n'
        + ("proxy = true\n" if src.get("proxy") else "")
    )


def _windows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM windows").fetchone()[0])


def test_daemon_catching_up_a_week_leaves_the_windows_ingest_and_train_compute(
    tmp_path: Path, cli: CliRunner
) -> None:
    log = tmp_path / "access.log"
    lines = _week_of_backlog(log)
    settings = validate(_config(tmp_path, "daemon", log))
    store = Store.open(settings.database.url)
    shift = [timedelta(0)]

    def clock() -> datetime:
        return datetime.now(UTC) + shift[0]

    jobs = Jobs(settings, store, clock=clock)
    daemon = Daemon(settings, store, on_stored=jobs.on_stored, tick=jobs.tick, now=clock)
    thread = threading.Thread(target=daemon.run)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while store.count_requests() < lines and time.monotonic() < deadline:
            time.sleep(0.1)
        assert store.count_requests() == lines
        shift[0] = timedelta(minutes=3)  # the grace of the last window passes
        while jobs.pipeline.pending_windows() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert jobs.pipeline.pending_windows() == 0
    finally:
        daemon.request_stop()
        thread.join(timeout=30)
        store.close()
    caught_up = _windows(tmp_path / "daemon.db")

    ref = tmp_path / "ref.toml"
    ref.write_text(_toml(_config(tmp_path, "ref", log)))
    assert cli("--config", str(ref), "ingest", str(log)).returncode == 0
    trained = cli("--config", str(ref), "train")
    assert trained.returncode == 0 and "trained on" in trained.stdout, trained.stdout + trained.stderr
    reference = _windows(tmp_path / "ref.db")
    assert reference > 700 and caught_up == reference

    mine = tmp_path / "daemon.toml"
    mine.write_text(_toml(_config(tmp_path, "daemon", log)))
    again = cli("--config", str(mine), "train")
    assert again.returncode == 0 and "trained on" in again.stdout, again.stdout + again.stderr
