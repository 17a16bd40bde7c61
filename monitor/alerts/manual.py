"""Sending on request, as `ollama-monitor alerts test` and `alerts retry` do: attempts with a time
budget, then what stays pending for the daemon.

Each function makes its attempts and settles the outbox before it returns: what is still sending is
"maybe delivered" and is not sent again when the command exits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from monitor.alerts.delivery import Attempt, Outbox, send_test
from monitor.core.errors import AlertError

if TYPE_CHECKING:
    from monitor.config import AlertSettings
    from monitor.store import Store


@dataclass(frozen=True)
class ChannelCheck:
    """The result of a test notification to every configured service."""

    attempts: list[Attempt]
    not_tried: list[str]  # labels of the services the time budget left untried (their message is pending)
    services: int  # how many services are configured

    @property
    def ok(self) -> bool:
        return not self.not_tried and all(a.ok for a in self.attempts)


@dataclass(frozen=True)
class RetryRun:
    """The result of sending every pending notification now."""

    attempts: list[Attempt]
    pending: int  # notifications still pending (or sending) afterwards

    @property
    def ok(self) -> bool:
        return not self.pending and all(a.ok for a in self.attempts)


def open_outbox(settings: AlertSettings, store: Store) -> Outbox:
    """The outbox of the configured services; raise AlertError when none is configured."""
    if not settings.urls and not settings.config_file:
        raise AlertError(
            "no alert service is configured",
            hint="add apprise URLs under [alerts] urls (e.g. 'mailto://...', 'slack://...') or set [alerts] config_file",
        )
    return Outbox(settings, store)  # per-scheme timeouts: a short one would duplicate slow mail


def check_channels(settings: AlertSettings, store: Store, budget_seconds: float) -> ChannelCheck:
    """Send a test notification to every configured service (ignoring routes), within the budget."""
    outbox = open_outbox(settings, store)
    attempts = send_test(outbox, budget_seconds=budget_seconds, wait_seconds=budget_seconds)
    outbox.settle()
    tried = {a.service for a in attempts}
    untried = [t.label for t in outbox.targets if t.name not in tried]
    return ChannelCheck(attempts=attempts, not_tried=untried, services=len(outbox.targets))


def retry_pending(settings: AlertSettings, store: Store, budget_seconds: float) -> RetryRun:
    """Send every pending notification now, regardless of backoff, within the budget."""
    from monitor.store import outbox_queries as q

    outbox = open_outbox(settings, store)
    attempts = outbox.deliver(force=True, budget_seconds=budget_seconds, wait_seconds=budget_seconds)
    outbox.settle()
    counts = q.state_counts(store)
    return RetryRun(attempts=attempts, pending=counts.get(q.PENDING, 0) + counts.get(q.SENDING, 0))
