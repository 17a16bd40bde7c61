"""The daemon's health and each source's progress, as `ollama-monitor status` shows them.

`collect` reads the facts (the daemon's heartbeat and stop marks, each source's checkpoints and lag,
the saved model, the outbox, the database) and decides the daemon's state and the overall health;
the CLI renders the result and maps its health to an exit status. The clock is an argument.
Everything here reads rollups, checkpoints and metadata: never a period's rows.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum, StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor.store import as_utc

if TYPE_CHECKING:
    from monitor.config import Settings
    from monitor.store import Store

META_FILE = "detector.json"  # monitor.detect.model.META_FILE (not imported: it would load scikit-learn)


class DaemonState(StrEnum):
    """What the daemon's last heartbeat and stop mark say."""

    RUNNING = "running"
    STUCK = "stuck"  # a heartbeat older than [daemon] stuck_minutes, and no clean stop after it
    STOPPED = "stopped"  # stopped cleanly after its last heartbeat
    NEVER_RUN = "never run"


class Health(Enum):
    """The verdict `status` exits with."""

    OK = "ok"  # running, or nothing configured to follow
    STUCK = "stuck"  # the daemon looks stuck or crashed
    NOT_RUNNING = "not running"  # sources are configured but no daemon follows them


def daemon_state(
    heartbeat: datetime | None, stopped_at: datetime | None, now: datetime, stuck_after: timedelta
) -> DaemonState:
    """Decide the daemon's state from its last heartbeat and its last clean stop."""
    if heartbeat is None:
        return DaemonState.NEVER_RUN
    if stopped_at is not None and stopped_at >= heartbeat:
        return DaemonState.STOPPED
    if now - heartbeat > stuck_after:
        return DaemonState.STUCK
    return DaemonState.RUNNING


def health(state: DaemonState, has_sources: bool) -> Health:
    """A stuck daemon is unhealthy; a daemon that is not running is only when it has sources to follow."""
    if state is DaemonState.STUCK:
        return Health.STUCK
    if state in (DaemonState.NEVER_RUN, DaemonState.STOPPED) and has_sources:
        return Health.NOT_RUNNING
    return Health.OK


@dataclass(frozen=True)
class DaemonStatus:
    state: DaemonState
    heartbeat: datetime | None
    stopped_at: datetime | None
    pid: str | None
    lines_per_second: float | None


@dataclass(frozen=True)
class SourceStatus:
    """One configured source: where its newest file's checkpoint stands and what it read."""

    name: str
    origin: str  # its path, or journal:UNIT
    format: str
    position: int | None
    cursor: str | None
    lag_bytes: int | None
    last_line_ts: datetime | None
    lines_today: int
    lines_total: int
    rejects: int
    rejects_24h: dict[str, int]  # reason -> count, the ten most frequent of the last 24 hours
    files: int


@dataclass(frozen=True)
class ModelStatus:
    """The saved detector, read from its metadata (the model file checked against its checksum)."""

    trained: bool
    note: str | None = None  # why there is no usable model
    file: str | None = None
    trained_at: str | None = None
    windows: int | None = None
    threshold: float | None = None
    features: int | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.trained:
            return {
                "trained": True,
                "file": self.file,
                "trained_at": self.trained_at,
                "windows": self.windows,
                "threshold": self.threshold,
                "features": self.features,
            }
        data: dict[str, Any] = {"trained": False}
        if self.file is not None:
            data["file"] = self.file
        data["note"] = self.note
        return data


@dataclass(frozen=True)
class OutboxCounts:
    pending: int = 0
    failed: int = 0
    sent: int = 0


@dataclass(frozen=True)
class DatabaseStatus:
    url: str  # the password masked
    size_bytes: int | None
    requests: int


@dataclass(frozen=True)
class StatusReport:
    now: datetime
    daemon: DaemonStatus
    sources: tuple[SourceStatus, ...]
    model: ModelStatus
    outbox: OutboxCounts
    alerts_last_24h: int
    database: DatabaseStatus
    health: Health

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the `status --json` output, documented in the README)."""
        d = self.daemon
        return {
            "now": self.now.isoformat(),
            "daemon": {
                "state": d.state.value,
                "heartbeat": _iso(d.heartbeat),
                "stopped_at": _iso(d.stopped_at),
                "pid": d.pid,
                "lines_per_second": d.lines_per_second,
            },
            "sources": [
                {
                    "name": s.name,
                    "origin": s.origin,
                    "format": s.format,
                    "position": s.position,
                    "cursor": s.cursor,
                    "lag_bytes": s.lag_bytes,
                    "last_line_ts": _iso(s.last_line_ts),
                    "lines_today": s.lines_today,
                    "lines_total": s.lines_total,
                    "rejects": s.rejects,
                    "rejects_24h": dict(s.rejects_24h),
                    "files": s.files,
                }
                for s in self.sources
            ],
            "model": self.model.to_dict(),
            "outbox": {
                "pending": self.outbox.pending,
                "failed": self.outbox.failed,
                "sent": self.outbox.sent,
            },
            "alerts_last_24h": self.alerts_last_24h,
            "database": {
                "url": self.database.url,
                "size_bytes": self.database.size_bytes,
                "requests": self.database.requests,
            },
        }


def collect(store: Store, settings: Settings, now: datetime) -> StatusReport:
    """Gather the status facts from an open store and decide the daemon's state and health."""
    from monitor.store import status_queries

    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    today = status_queries.requests_since_by_source(store, day_start)
    rejected = status_queries.rejects_since_by_source(store, now - timedelta(hours=24))
    checkpoints = store.checkpoints()
    sources = []
    for src in settings.sources:
        mine = [c for c in checkpoints if c["source"] == src.name]
        newest = mine[0] if mine else None
        lag = None
        if newest and src.path and os.path.exists(src.path):
            size = os.path.getsize(src.path)
            lag = max(0, size - int(newest["position"])) if size >= int(newest["position"]) else size
        last_ts = max((c["last_line_ts"] for c in mine if c["last_line_ts"]), default=None)
        sources.append(
            SourceStatus(
                name=src.name,
                origin=src.path or f"journal:{src.journal_unit}",
                format=src.format,
                position=int(newest["position"]) if newest else None,
                cursor=newest["cursor"] if newest else None,
                lag_bytes=lag,
                last_line_ts=last_ts,
                lines_today=today.get(src.name, 0),
                lines_total=sum(int(c["lines"]) for c in mine),
                rejects=sum(int(c["rejected"]) for c in mine),
                rejects_24h=dict(list(rejected.get(src.name, {}).items())[:10]),
                files=len(mine),
            )
        )
    heartbeat = as_utc(store.get_meta("daemon.heartbeat"))
    stopped = as_utc(store.get_meta("daemon.stopped_at"))
    state = daemon_state(heartbeat, stopped, now, timedelta(minutes=settings.daemon.stuck_minutes))
    outbox = status_queries.outbox_counts(store)
    return StatusReport(
        now=now,
        daemon=DaemonStatus(
            state=state,
            heartbeat=heartbeat,
            stopped_at=stopped,
            pid=store.get_meta("daemon.pid"),
            lines_per_second=_float(store.get_meta("daemon.lines_per_second")),
        ),
        sources=tuple(sources),
        model=model_state(Path(settings.detector.model_dir)),
        outbox=OutboxCounts(
            pending=outbox.get("pending", 0), failed=outbox.get("failed", 0), sent=outbox.get("sent", 0)
        ),
        alerts_last_24h=status_queries.alerts_since(store, now - timedelta(hours=24)),
        database=DatabaseStatus(
            url=db_label(settings.database.url),
            size_bytes=store.database_size(),
            requests=store.count_requests(),
        ),
        health=health(state, bool(settings.sources)),
    )


def model_state(model_dir: Path) -> ModelStatus:
    """Summarise the saved detector in model_dir (its metadata, and whether the model file matches its
    checksum), without importing scikit-learn: `status` must stay fast."""
    meta_path = model_dir / META_FILE
    if not meta_path.is_file():
        return ModelStatus(
            trained=False,
            note="no trained model yet: rules only until enough history (ollama-monitor train)",
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        model_file = model_dir / str(meta["model_file"])
        digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return ModelStatus(
            trained=False,
            file=str(meta_path),
            note=f"model unusable ({exc}): rules only; run ollama-monitor train",
        )
    if digest != meta.get("sha256"):
        return ModelStatus(
            trained=False,
            file=str(meta_path),
            note="model file does not match its checksum (corrupt or replaced): rules only; run ollama-monitor train",
        )
    return ModelStatus(
        trained=True,
        file=str(meta_path),
        trained_at=meta.get("trained_at"),
        windows=meta.get("rows"),
        threshold=meta.get("threshold"),
        features=len(meta.get("features", [])) or None,
    )


def db_label(url: str) -> str:
    """The database URL with its credentials masked (`postgresql://***@host/db`)."""
    scheme, _, rest = url.partition("://")
    if "@" in rest.split("/", 1)[0]:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts else None


def _float(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None
