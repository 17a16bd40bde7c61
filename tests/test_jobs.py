"""The daemon's jobs follow approvals made while it runs, and a reloaded allow-list (SIGHUP)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor import config
from monitor.core.records import Notification, Request
from monitor.service.jobs import Jobs
from monitor.store import Store

NOW = datetime.now(UTC).replace(microsecond=0)


def req(ip: str, minutes: int, path: str = "/api/chat") -> Request:
    return Request(NOW + timedelta(minutes=minutes), ip, "POST", path, 200, 900.0, 10, "ua")


def test_approvals_and_reloaded_allow_list_take_effect(tmp_path: Path) -> None:
    settings = config.validate(
        {
            "database": {"url": f"sqlite:///{tmp_path / 'm.db'}"},
            "sources": [{"name": "ollama", "path": str(tmp_path / "o.log"), "format": "ollama"}],
            "detector": {"model_dir": str(tmp_path / "models")},
            "alerts": {"min_severity": "info"},
            "rules": {"cooldown_minutes": 1},
        }
    )
    source = settings.sources[0]
    with Store.open(settings.database.url) as store:
        seen: list[Notification] = []
        jobs = Jobs(settings, store, echo=seen.append)

        jobs.on_stored(source, [req("198.51.100.7", 0)], NOW)
        assert [n.rule for n in seen] == ["unknown-source"]

        store.approve("198.51.100.0/24", "partner lab")  # as `ollama-monitor sources approve` does
        jobs.refresh_approvals()
        seen.clear()
        jobs.on_stored(source, [req("198.51.100.7", 120, "/api/generate"), req("198.51.100.9", 121)], NOW)
        assert seen == []  # approved: neither the known one nor a new one of that network alerts

        jobs.on_stored(source, [req("203.0.113.5", 122)], NOW)
        assert [n.rule for n in seen] == ["unknown-source"]
        seen.clear()
        reloaded = settings.model_copy(update={"known": config.KnownSettings(allow=["203.0.113.0/24"])})
        jobs.settings_changed(reloaded)
        jobs.on_stored(source, [req("203.0.113.6", 240)], NOW)
        assert seen == []
