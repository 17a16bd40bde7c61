"""Replaying logs through the pipeline, the clock taken from the log lines.

- `drive_store(pipeline, proxies)`: replay every stored request through a pipeline in time order.
- `notification_json(n)`: the JSON object `replay --json-out` writes for one notification.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from monitor.core.records import Notification, Request
from monitor.detect.pipeline import Pipeline
from monitor.detect.windows import GRACE, floor_time
from monitor.store import detect_queries as q
from monitor.store import reject_queries


def drive_store(
    pipeline: Pipeline, proxies: dict[str, bool], *, step: timedelta = timedelta(minutes=1)
) -> list[Notification]:
    """Replay every stored request through the pipeline in time order, the clock taken from the lines.

    Requests are handed over in batches of `step` of log time per source (as the daemon's wake-ups
    would), and the pipeline ticks at every `step` in between, gaps included, so windows close, models
    retrain and digests flush at the log times they would have live. Return every notification.
    """
    out: list[Notification] = []
    batch: dict[str, list[Request]] = {}
    current: datetime | None = None
    last_ts: datetime | None = None
    rejected = reject_queries.rejects_by_slot(pipeline.store, step, floor_time)  # (source, slot) -> rejects
    for source, req in q.iter_stored_requests(pipeline.store):
        slot = floor_time(req.ts, step)
        if current is not None and slot != current:
            for name, reqs in batch.items():
                rj = rejected.pop((name, current), ())
                out.extend(
                    pipeline.process(name, reqs, reqs[-1].ts, is_proxy=proxies.get(name, False), rejects=rj)
                )
            batch = {}
            t = current + step
            while t <= slot:
                out.extend(pipeline.tick(t))
                t += step
        current = slot
        last_ts = req.ts
        batch.setdefault(source, []).append(req)
    for name, reqs in batch.items():
        rj = rejected.pop((name, current), ()) if current else ()
        out.extend(pipeline.process(name, reqs, reqs[-1].ts, is_proxy=proxies.get(name, False), rejects=rj))
    for (name, slot), rj in sorted(rejected.items(), key=lambda kv: kv[0][1]):  # files without requests
        out.extend(pipeline.process(name, [], slot + step, is_proxy=proxies.get(name, False), rejects=rj))
    if last_ts is not None:  # let the last window close and the last digest flush
        end = (
            floor_time(last_ts, pipeline.window)
            + pipeline.window
            + GRACE
            + timedelta(seconds=pipeline.settings.alerts.digest_seconds)
        )
        t = (current or last_ts) + step
        while t <= end:
            out.extend(pipeline.tick(t))
            t += step
    return out


def notification_json(n: Notification) -> dict[str, Any]:
    """The JSON object `replay --json-out` writes for one notification."""
    return {
        "ts": n.ts.isoformat().replace("+00:00", "Z"),
        "rule": n.rule,
        "severity": n.severity.value,
        "client_ips": list(n.client_ips),
        "title": n.title,
        "message": n.message,
        "id": n.id,
        "alerts": n.alerts,
    }
