"""Prometheus metrics on a loopback address (`[daemon] metrics_address`), off by default.

`Metrics.build(address)` makes the registry (None when the address is empty); `serve()` starts the
HTTP server when the daemon starts. The jobs count stored requests and released notifications as they
happen and `update(...)` sets the gauges with the status report (every few seconds).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitor.store import Store

log = logging.getLogger("monitor.service.daemon")


class Metrics:
    """The daemon's counters and gauges in their own registry."""

    def __init__(self, address: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.address = address
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ollama_monitor_requests_stored",
            "Requests stored, by source.",
            ["source"],
            registry=self.registry,
        )
        self.notifications = Counter(
            "ollama_monitor_notifications",
            "Notifications released, by rule.",
            ["rule", "severity"],
            registry=self.registry,
        )
        self.lines_per_second = Gauge(
            "ollama_monitor_lines_per_second", "Stored lines per second, last minute.", registry=self.registry
        )
        self.sources = Gauge("ollama_monitor_sources", "Sources being followed.", registry=self.registry)
        self.outbox = Gauge(
            "ollama_monitor_outbox", "Outbox rows by state.", ["state"], registry=self.registry
        )
        self.heartbeat = Gauge(
            "ollama_monitor_heartbeat_timestamp_seconds",
            "Last tick of the daemon loop.",
            registry=self.registry,
        )

    @classmethod
    def build(cls, address: str) -> Metrics | None:
        """The metrics for `[daemon] metrics_address`, or None when it is empty (metrics off)."""
        return cls(address) if address else None

    def serve(self) -> None:
        """Start the HTTP server on the loopback address (a thread of prometheus_client's)."""
        from prometheus_client import start_http_server

        host, _, port = self.address.rpartition(":")
        start_http_server(int(port), addr=host.strip("[]"), registry=self.registry)
        log.info("Prometheus metrics on http://%s/metrics", self.address)

    def update(self, *, lines_per_second: float, sources: int, store: Store, now: datetime) -> None:
        from monitor.store.status_queries import outbox_counts

        self.lines_per_second.set(lines_per_second)
        self.sources.set(sources)
        self.heartbeat.set(now.timestamp())
        try:
            for state, n in outbox_counts(store).items():
                self.outbox.labels(state=state).set(n)
        except Exception:  # noqa: BLE001 - metrics must never disturb the daemon
            log.debug("outbox metrics unavailable", exc_info=True)
