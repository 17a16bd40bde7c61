"""The weekly usage summary as data: the frozen dataclasses of a `Summary`, the detector's state, and
the JSON form.

`monitor.reports.summary.build.build` fills a `Summary`; `model_state(model_dir)` describes the detector from its
newest metadata file (never raising: the weekly report must still go out); `to_json_data(summary)`
returns the JSON-ready data that `ollama-monitor summary --format json` writes (SCHEMA_VERSION).
No pandas here, so renderers can use these types cheaply.

The Summary holds log text (paths, addresses) exactly as stored: it is attacker-controlled, and each
renderer escapes it for its medium. Times are UTC; days and hours of day are UTC days and hours.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from monitor.core.endpoints import Category
from monitor.detect.known import Status

SCHEMA_VERSION = 1
STATUSES = (Status.ADMIN.value, Status.KNOWN.value, Status.APPROVED.value, Status.UNKNOWN.value)
CATEGORIES = tuple(c.value for c in Category)  # inference, enumeration, management, account, other


@dataclass(frozen=True)
class Totals:
    """Counts over a period. `error_rate` is errors / requests (0 when there are no requests)."""

    requests: int = 0
    sources: int = 0
    inference: int = 0
    enumeration: int = 0
    management: int = 0
    account: int = 0
    other: int = 0
    errors: int = 0
    error_rate: float = 0.0
    bytes_sent: int = 0


@dataclass(frozen=True)
class SourceUsage:
    """One client address over the period. `bytes_sent` is None when no line of it carried a size."""

    client_ip: str
    status: str
    name: str | None
    requests: int
    inference: int
    enumeration: int
    management: int
    account: int
    other: int
    errors_4xx: int
    errors_5xx: int
    error_rate: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    bytes_sent: int | None
    active_hours: int
    first_seen: datetime  # first request ever stored from this address
    last_seen: datetime  # last request in the period
    new: bool  # first seen in this period


def source_order(s: SourceUsage) -> tuple[bool, int, int, str]:
    """The order of sources in every rendering: unknown sources first (the ones to look at, however few
    requests they made), then by requests, inference calls and address."""
    return (s.status != Status.UNKNOWN.value, -s.requests, -s.inference, s.client_ip)


@dataclass(frozen=True)
class DayUsage:
    """Requests on one UTC day, by the status of their source."""

    day: date
    admin: int = 0
    known: int = 0
    approved: int = 0
    unknown: int = 0

    @property
    def requests(self) -> int:
        return self.admin + self.known + self.approved + self.unknown


@dataclass(frozen=True)
class EndpointUsage:
    """A (method, route) pair: the route is the logged path without its query string."""

    method: str
    route: str
    category: str
    requests: int
    sources: int
    errors: int


@dataclass(frozen=True)
class AlertEntry:
    ts: datetime
    rule: str
    severity: str
    title: str
    message: str
    client_ips: tuple[str, ...]
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelState:
    """The detector as its newest metadata file describes it, and its verdicts in the period."""

    present: bool
    file: str | None = None
    updated_at: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    scored_windows: int = 0
    anomalous_windows: int = 0
    problem: str | None = None  # why the metadata could not be read, if it could not


@dataclass(frozen=True)
class Summary:
    generated_at: datetime
    since: datetime
    until: datetime
    totals: Totals
    previous: Totals
    sources: list[SourceUsage]  # in source_order: unknown sources first
    daily: list[DayUsage]
    hourly: list[int]  # 24 counts, UTC hour of day
    heatmap: list[list[int]]  # 7 rows (Monday first) x 24 UTC hours
    endpoints: list[EndpointUsage]
    alerts: list[AlertEntry]
    model: ModelState

    @property
    def days(self) -> float:
        return (self.until - self.since) / timedelta(days=1)

    @property
    def new_sources(self) -> list[SourceUsage]:
        return [s for s in self.sources if s.new]

    def change(self, key: str) -> float | None:
        """Percent change of a Totals field against the previous period (None when that was 0)."""
        before = float(getattr(self.previous, key))
        now = float(getattr(self.totals, key))
        if before == 0:
            return None
        return (now - before) / before * 100.0


# --- the detector ------------------------------------------------------------------------------------


def model_state(model_dir: Path, scored: int = 0, flagged: int = 0) -> ModelState:
    """Describe the detector from the newest `*.json` metadata file in `model_dir`; tolerate absence.

    A missing directory or file means "no model yet"; an unreadable or non-object file is reported in
    `problem` rather than raised, because the weekly report must still go out.
    """
    try:
        candidates = [p for p in model_dir.glob("*.json") if p.is_file()]
    except OSError:
        candidates = []
    if not candidates:
        return ModelState(present=False, scored_windows=scored, anomalous_windows=flagged)
    newest = max(candidates, key=lambda p: (p.stat().st_mtime, p.name))
    updated = datetime.fromtimestamp(newest.stat().st_mtime, UTC)
    try:
        data = json.loads(newest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return ModelState(
            True,
            newest.name,
            updated,
            {},
            scored,
            flagged,
            problem=f"unreadable metadata: {type(exc).__name__}",
        )
    if not isinstance(data, dict):
        return ModelState(
            True, newest.name, updated, {}, scored, flagged, problem="metadata is not a JSON object"
        )
    # Only scalar facts: feature lists and checksums are for the detector, not for a weekly report.
    facts = {
        str(k): v for k, v in sorted(data.items()) if isinstance(v, str | int | float | bool) or v is None
    }
    return ModelState(True, newest.name, updated, facts, scored, flagged)


# --- JSON ---------------------------------------------------------------------------------------------


def to_json_data(summary: Summary) -> dict[str, Any]:
    """Return the summary as JSON-ready data (the schema is documented in the README, "Weekly summary")."""

    def plain(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        if isinstance(value, float):
            return round(value, 6)
        return value

    change = {k: (None if (c := summary.change(k)) is None else round(c, 1)) for k in asdict(summary.totals)}
    return plain(
        {
            "schema_version": SCHEMA_VERSION,
            "generated_at": summary.generated_at,
            "period": {"since": summary.since, "until": summary.until, "days": round(summary.days, 3)},
            "totals": {
                **asdict(summary.totals),
                "new_sources": len(summary.new_sources),
                "unknown_sources": sum(1 for s in summary.sources if s.status == "unknown"),
            },
            "previous": asdict(summary.previous),
            "change_percent": change,
            "sources": [asdict(s) for s in summary.sources],
            "new_sources": [s.client_ip for s in summary.new_sources],
            "daily": [
                {"date": d.day, "requests": d.requests, **{k: getattr(d, k) for k in STATUSES}}
                for d in summary.daily
            ],
            "hourly": summary.hourly,
            "heatmap": {"rows": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], "values": summary.heatmap},
            "endpoints": [asdict(e) for e in summary.endpoints],
            "alerts": [asdict(a) for a in summary.alerts],
            "model": asdict(summary.model),
        }
    )
