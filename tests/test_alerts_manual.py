"""`monitor.alerts.manual`: `alerts test` and `alerts retry` as library calls, against a real HTTP
receiver on 127.0.0.1 (the commands around them are in test_alerts_delivery.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.alerts.manual import check_channels, retry_pending
from monitor.config import AlertSettings
from monitor.core.errors import AlertError
from monitor.store import Store
from tests.receivers import HttpReceiver


def test_a_failed_test_message_stays_pending_until_retried(tmp_path: Path) -> None:
    with HttpReceiver() as http, Store.open(f"sqlite:///{tmp_path / 'monitor.db'}") as store:
        settings = AlertSettings(urls=[http.apprise_url("/hook")])
        first = check_channels(settings, store, budget_seconds=10)
        assert first.ok and first.services == 1 and first.not_tried == []
        assert [a.ok for a in first.attempts] == [True] and len(http.received()) == 1

        http.status = 500  # the service refuses: the test message stays pending
        second = check_channels(settings, store, budget_seconds=10)
        assert not second.ok and [a.ok for a in second.attempts] == [False]

        http.status = 200
        retried = retry_pending(settings, store, budget_seconds=10)
        assert retried.ok and retried.pending == 0 and [a.ok for a in retried.attempts] == [True]
        assert len(http.received()) == 2
        assert retry_pending(settings, store, budget_seconds=10) == type(retried)(attempts=[], pending=0)


def test_no_service_configured_is_a_clear_error(tmp_path: Path) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'monitor.db'}") as store:
        with pytest.raises(AlertError, match="no alert service is configured"):
            check_channels(AlertSettings(), store, budget_seconds=1)
        with pytest.raises(AlertError, match="no alert service is configured"):
            retry_pending(AlertSettings(), store, budget_seconds=1)
