"""Replaying logs through the pipeline, the clock taken from the log lines.

- `run_replay(settings, logs, ...)`: what `ollama-monitor replay` does: ingest LOGS into a store (a
  temporary SQLite file unless `db_url` is given), drive the daemon's pipeline over them, optionally
  deliver what it raised; return the notifications and a summary.
- `drive_store(pipeline, proxies)`: replay every stored request through a pipeline in time order.
- `notification_json(n)`: the JSON object `replay --json-out` writes for one notification.
"""

from __future__ import annotations

import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from monitor.config import FORMATS, Settings, SourceSettings
from monitor.core.errors import SourceError
from monitor.core.records import Notification, Request
from monitor.detect.offline import known_sources
from monitor.detect.pipeline import Pipeline
from monitor.detect.windows import GRACE, floor_time
from monitor.store import Store, reject_queries
from monitor.store import detect_queries as q


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


def run_replay(
    settings: Settings,
    logs: tuple[Path, ...] | list[Path],
    *,
    fmt: str | None,
    db_url: str | None = None,
    model_dir: Path | None = None,
    send: bool = False,
) -> tuple[list[Notification], dict[str, Any]]:
    """Ingest LOGS into the store at db_url and drive the pipeline over them; return (notifications, summary).

    Without db_url the store is a temporary SQLite file, without model_dir the models trained during
    the replay go to a temporary directory; both are deleted on return. Each log is replayed as the
    configured source whose path matches it (its format, proxy flag, trusted proxies), else as
    `replay:NAME` in the format given or detected. The summary holds `requests`, the detector's
    `status` and the wall `seconds`; with send=True the outbox is delivered once and it adds `sent`,
    `failed`, `queued` and `undelivered` (deliveries of these notifications still queued).
    Raise SourceError for a missing or unreadable log.
    """
    with tempfile.TemporaryDirectory(prefix="ollama-monitor-replay-") as tmp:
        return _replay(
            settings,
            logs,
            fmt=fmt,
            db_url=db_url or f"sqlite:///{tmp}/replay.db",
            model_dir=model_dir or Path(tmp) / "models",
            send=send,
        )


def _replay(
    settings: Settings,
    logs: tuple[Path, ...] | list[Path],
    *,
    fmt: str | None,
    db_url: str,
    model_dir: Path,
    send: bool,
) -> tuple[list[Notification], dict[str, Any]]:
    from monitor.alerts.dispatch import Dispatcher
    from monitor.ingest.backfill import context_for, ingest_file, source_for_path

    started = time.perf_counter()
    store = Store.open(db_url)
    try:
        replay_sources: list[SourceSettings] = []
        for path in logs:
            if not path.is_file():
                raise SourceError(f"{path}: no such log file")
            src = source_for_path(settings, path)
            name = src.name if src else f"replay:{path.name}"
            report = ingest_file(store, path, name, fmt or (src.format if src else "auto"), context_for(src))
            if report.error:
                raise SourceError(report.error)
            detected = report.format or (src.format if src else "auto")
            proxy = src.is_proxy if src else detected not in ("ollama", "auto")
            replay_sources.append(
                SourceSettings.model_validate(
                    {
                        "name": name,
                        "path": str(path),
                        "format": detected if detected in FORMATS else "auto",
                        "proxy": proxy,
                        "trusted_proxies": src.trusted_proxies if src else [],
                    }
                )
            )
        unique = {s.name: s for s in replay_sources}
        rsettings = settings.model_copy(
            update={
                "sources": list(unique.values()),
                "detector": settings.detector.model_copy(update={"model_dir": str(model_dir)}),
            }
        )
        dispatcher = Dispatcher(settings.alerts, store if send else None)
        pipeline = Pipeline(rsettings, store, dispatcher, known_sources(settings, store))
        notes = drive_store(pipeline, {s.name: s.is_proxy for s in unique.values()})
        summary: dict[str, Any] = {
            "requests": store.count_requests(),
            "status": dict(pipeline.status),
            "seconds": time.perf_counter() - started,
        }
        if send and dispatcher.outbox is not None:
            from monitor.store import outbox_queries as oq

            attempts = dispatcher.outbox.deliver()
            summary["sent"] = sum(1 for a in attempts if a.ok)
            summary["failed"] = sum(1 for a in attempts if not a.ok)
            # What a failing service did not get: every row of these notifications still queued,
            # not only the one attempt per service that failed (the rest were never tried).
            ids = {n.id for n in notes}
            rows = oq.rows(store, states=(oq.PENDING, oq.SENDING, oq.FAILED), limit=1_000_000)
            summary["undelivered"] = sum(1 for r in rows if r["notification_id"] in ids)
            summary["queued"] = sum(1 for r in oq.rows(store, limit=1_000_000) if r["notification_id"] in ids)
    finally:
        store.close()
    return notes, summary
