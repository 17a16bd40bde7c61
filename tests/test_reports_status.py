"""`monitor.reports.status`: the daemon's state and the health verdict, decided with an injected clock
on a real SQLite store (the CLI's rendering and exit statuses are in test_status.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor import config
from monitor.reports.status import DaemonState, Health, collect, daemon_state, db_label, health
from monitor.store import Store

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
STUCK_AFTER = timedelta(minutes=5)


@pytest.mark.parametrize(
    ("heartbeat", "stopped", "expected"),
    [
        (None, None, DaemonState.NEVER_RUN),
        (None, NOW - timedelta(hours=1), DaemonState.NEVER_RUN),
        (NOW - timedelta(hours=1), NOW - timedelta(hours=1), DaemonState.STOPPED),  # stopped at its last beat
        (NOW - timedelta(hours=1), NOW - timedelta(minutes=59), DaemonState.STOPPED),
        (NOW - timedelta(hours=1), NOW - timedelta(hours=2), DaemonState.STUCK),  # beat again after a stop
        (NOW - STUCK_AFTER - timedelta(seconds=1), None, DaemonState.STUCK),
        (NOW - STUCK_AFTER, None, DaemonState.RUNNING),  # exactly stuck_minutes old: not yet stuck
        (NOW - timedelta(seconds=10), None, DaemonState.RUNNING),
    ],
)
def test_daemon_state(heartbeat: datetime | None, stopped: datetime | None, expected: DaemonState) -> None:
    assert daemon_state(heartbeat, stopped, NOW, STUCK_AFTER) is expected


def test_health_not_running_matters_only_with_sources_to_follow() -> None:
    assert health(DaemonState.RUNNING, True) is Health.OK
    assert health(DaemonState.STUCK, True) is Health.STUCK
    assert health(DaemonState.STUCK, False) is Health.STUCK
    for state in (DaemonState.NEVER_RUN, DaemonState.STOPPED):
        assert health(state, True) is Health.NOT_RUNNING
        assert health(state, False) is Health.OK


def test_db_label_masks_credentials() -> None:
    assert db_label("postgresql+psycopg://monitor:s3cret@db.example/monitor") == (
        "postgresql+psycopg://***@db.example/monitor"
    )
    assert (
        db_label("sqlite:////var/lib/ollama-monitor/monitor.db")
        == "sqlite:////var/lib/ollama-monitor/monitor.db"
    )


def test_collect_reads_the_store_with_the_given_clock(tmp_path: Path) -> None:
    db = tmp_path / "monitor.db"
    log = tmp_path / "access.log"
    log.write_text("")
    cfg = tmp_path / "monitor.toml"
    cfg.write_text(
        f'[database]\nurl = "sqlite:///{db}"\n[detector]\nmodel_dir = "{tmp_path / "models"}"\n'
        f'[daemon]\nstuck_minutes = 5\n[[sources]]\nname = "nginx"\npath = "{log}"\nformat = "nginx"\n'
    )
    settings, _ = config.load(cfg)
    with Store.open(f"sqlite:///{db}") as store:
        report = collect(store, settings, NOW)
        assert report.daemon.state is DaemonState.NEVER_RUN and report.health is Health.NOT_RUNNING
        assert [s.name for s in report.sources] == ["nginx"] and report.sources[0].position is None
        assert report.model.trained is False and report.to_dict()["model"] == {
            "trained": False,
            "note": report.model.note,
        }

        store.set_meta("daemon.heartbeat", (NOW - timedelta(minutes=6)).isoformat())
        store.set_meta("daemon.lines_per_second", "12.5")
        report = collect(store, settings, NOW)
        assert report.daemon.state is DaemonState.STUCK and report.health is Health.STUCK
        assert report.daemon.lines_per_second == 12.5
        # The same store a minute earlier by the injected clock: the heartbeat is fresh enough.
        report = collect(store, settings, NOW - timedelta(minutes=2))
        assert report.daemon.state is DaemonState.RUNNING and report.health is Health.OK
        data = report.to_dict()
        assert data["now"] == (NOW - timedelta(minutes=2)).isoformat()
        assert data["daemon"]["state"] == "running"
        assert data["daemon"]["heartbeat"] == (NOW - timedelta(minutes=6)).isoformat()
