"""Per-(client IP, window) features computed from stored requests with pandas.

`requests_frame(rows)` builds the request DataFrame; `compute(frame, window_minutes, profile)` returns
one row per (client_ip, window_start) with the columns of FEATURE_NAMES, in that order. FEATURES maps
each name to a description (used by docs and by the detector's explanations).

Two features need a memory of earlier windows: how typical this hour is for the source, and how new
the source is. That memory is a `Profile` (hour-of-day activity counts and first-seen time per source),
updated window by window in time order so a window never sees itself or the future. Hours are UTC:
a source's own rhythm is what matters, not the zone it is expressed in.

pandas 3 semantics: copy-on-write, `str` dtype, lower-case frequency aliases (`min`, `h`). pandas is
imported by the functions that use it, so the names and the Profile cost no pandas (the model imports them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from monitor.core.endpoints import Category, classify, normalise
from monitor.core.records import Request

if TYPE_CHECKING:
    import pandas as pd

FEATURES: dict[str, str] = {
    "requests": "Requests in the window.",
    "inference": "Inference requests (generate, chat, embeddings, OpenAI/Anthropic-compatible completions).",
    "enumeration": "Enumeration requests (/, version, tags, ps, show, models): what scanners call first.",
    "management": "Management and account requests (pull, push, create, copy, delete, blobs, me, keys).",
    "other": "Requests to paths that are not Ollama API endpoints (probes, typos, garbage).",
    "distinct_paths": "Distinct API routes called (query strings removed).",
    "error_4xx_ratio": "Share of responses with a 4xx status.",
    "error_5xx_ratio": "Share of responses with a 5xx status.",
    "latency_p50_ms": "Median latency in milliseconds.",
    "latency_p95_ms": "95th percentile latency in milliseconds.",
    "latency_max_ms": "Longest request in milliseconds.",
    "bytes_sent": "Response bytes sent to the source (0 where the log format has no size).",
    "user_agents": "Distinct user agents (0 where the log format has none, e.g. Ollama's own log).",
    "burstiness": "Burstiness of inter-arrival times, (sd - mean) / (sd + mean): -1 regular, 0 random, 1 bursty.",
    "hour_rarity": "How unusual this hour of day is for this source: 1 - share of its earlier active windows in this hour.",
    "source_age_days": "Days since the source was first seen (capped at the history length).",
}
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURES)
# Heavy-tailed, non-negative features the detector log1p-transforms before the forest sees them.
COUNT_FEATURES: tuple[str, ...] = (
    "requests",
    "inference",
    "enumeration",
    "management",
    "other",
    "distinct_paths",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_max_ms",
    "bytes_sent",
    "user_agents",
    "source_age_days",
)
# Human units for explanations.
UNITS: dict[str, str] = {
    "latency_p50_ms": " ms",
    "latency_p95_ms": " ms",
    "latency_max_ms": " ms",
    "bytes_sent": " B",
    "source_age_days": " d",
}

COLUMNS = ("ts", "client_ip", "method", "path", "status", "latency_ms", "bytes_sent", "user_agent")
_CAT_CODES = {
    Category.INFERENCE: 0,
    Category.ENUMERATION: 1,
    Category.MANAGEMENT: 2,
    Category.ACCOUNT: 2,
    Category.OTHER: 3,
}


@dataclass
class Profile:
    """Per-source memory for the history features: active windows per hour of day, and first seen."""

    hours: dict[str, list[int]] = field(default_factory=dict)
    first_seen: dict[str, datetime] = field(default_factory=dict)

    @classmethod
    def from_windows(
        cls, windows: Iterable[tuple[str, datetime]], first_seen: Mapping[str, datetime] | None = None
    ) -> Profile:
        """Build a profile from earlier (client_ip, window_start) pairs (and an optional first-seen map)."""
        prof = cls()
        for ip, start in windows:
            prof.add(ip, start)
        for ip, ts in (first_seen or {}).items():
            if ip not in prof.first_seen or ts < prof.first_seen[ip]:
                prof.first_seen[ip] = ts
        return prof

    @classmethod
    def from_hours(
        cls, counts: Iterable[tuple[str, int, int]], first_seen: Mapping[str, datetime] | None = None
    ) -> Profile:
        """Build a profile from (client_ip, hour of day, active windows) counts: the same profile as
        `from_windows` of those windows when first_seen covers every client (the store's first windows)."""
        prof = cls()
        for ip, hour, n in counts:
            prof.hours.setdefault(ip, [0] * 24)[hour] += n
        prof.first_seen.update(first_seen or {})
        return prof

    def add(self, ip: str, start: datetime) -> None:
        counts = self.hours.get(ip)
        if counts is None:
            counts = self.hours[ip] = [0] * 24
        counts[start.hour] += 1
        if ip not in self.first_seen or start < self.first_seen[ip]:
            self.first_seen[ip] = start

    def rarity(self, ip: str, hour: int) -> float:
        counts = self.hours.get(ip)
        total = sum(counts) if counts else 0
        if not counts or total == 0:
            return 1.0
        return 1.0 - counts[hour] / total


def requests_frame(rows: Iterable[Request | Mapping[str, Any]]) -> pd.DataFrame:
    """Given Requests (or dicts with the same keys, as Store.iter_requests yields), return a DataFrame."""
    import pandas as pd

    items = list(rows)
    if items and isinstance(items[0], Request):
        columns = list(zip(*items, strict=True))  # Request fields start with COLUMNS, in that order
        frame = pd.DataFrame({c: columns[i] for i, c in enumerate(COLUMNS)})
    else:
        frame = pd.DataFrame({c: [r.get(c) for r in items] for c in COLUMNS})  # type: ignore[union-attr]
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    for col in ("status", "latency_ms", "bytes_sent"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame


def _quantiles(codes: np.ndarray, values: np.ndarray, n: int, qs: tuple[float, ...]) -> list[np.ndarray]:
    """Per-group quantiles (linear interpolation, NaN ignored; 0 for a group without values)."""
    ok = ~np.isnan(values)
    codes, values = codes[ok], values[ok]
    order = np.lexsort((values, codes))
    codes, values = codes[order], values[order]
    counts = np.bincount(codes, minlength=n)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    out = []
    for q in qs:
        pos = starts + q * np.maximum(counts - 1, 0)
        lo = np.floor(pos).astype(np.int64)
        hi = np.ceil(pos).astype(np.int64)
        safe_lo = np.minimum(lo, max(len(values) - 1, 0))
        safe_hi = np.minimum(hi, max(len(values) - 1, 0))
        v = values[safe_lo] + (values[safe_hi] - values[safe_lo]) * (pos - lo) if len(values) else np.zeros(n)
        out.append(np.where(counts > 0, v, 0.0))
    return out


def _distinct(codes: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Per-group number of distinct labels (label -1 is missing and not counted)."""
    ok = labels >= 0
    if not ok.any():
        return np.zeros(n)
    width = int(labels.max()) + 1
    pairs = np.unique(codes[ok].astype(np.int64) * width + labels[ok])
    return np.bincount(pairs // width, minlength=n).astype(float)


def _burstiness(codes: np.ndarray, micros: np.ndarray, n: int) -> np.ndarray:
    """(sd - mean) / (sd + mean) of the gaps between a group's requests; 0 with fewer than 2 gaps."""
    order = np.lexsort((micros, codes))
    c, t = codes[order], micros[order] / 1e6
    same = c[1:] == c[:-1]
    gaps = np.diff(t)[same]
    gc = c[1:][same]
    cnt = np.bincount(gc, minlength=n)
    total = np.bincount(gc, weights=gaps, minlength=n)
    total_sq = np.bincount(gc, weights=gaps * gaps, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / cnt
        sd = np.sqrt(np.maximum(total_sq / cnt - mean * mean, 0.0))
        value = (sd - mean) / (sd + mean)
    return np.where((cnt >= 2) & np.isfinite(value), value, 0.0)


def compute(
    frame: pd.DataFrame,
    window_minutes: int = 60,
    profile: Profile | None = None,
    *,
    cap_days: float = 14.0,
    update_profile: bool = True,
) -> pd.DataFrame:
    """Given a request frame, return features per (client_ip, window_start), sorted by window then IP.

    `profile` holds earlier windows (it is updated in time order unless update_profile=False); without
    one, the history features are computed from the frame alone. The grouping is pandas'
    `groupby([ip, ts.dt.floor(...)])`; the aggregates are numpy over its group codes, which keeps a
    call on one hour of traffic at a few milliseconds.
    """
    import pandas as pd

    if frame.empty:
        empty = pd.DataFrame(columns=list(FEATURE_NAMES), dtype=float)
        empty.index = pd.MultiIndex.from_arrays([[], []], names=["client_ip", "window_start"])
        return empty
    profile = profile if profile is not None else Profile()
    ip = frame["client_ip"].astype(str)
    window = frame["ts"].dt.floor(f"{window_minutes}min")
    grouped = pd.DataFrame({"client_ip": ip, "window_start": window}).groupby(
        ["client_ip", "window_start"], sort=True
    )
    codes = grouped.ngroup().to_numpy()
    keys = grouped.size().index
    n = len(keys)
    paths = frame["path"].astype(object).where(frame["path"].notna(), "")
    path_codes, uniq = pd.factorize(paths)
    cat_of_path = np.array([_CAT_CODES[classify(None, p)] for p in uniq], dtype=np.int64)
    route_codes, _ = pd.factorize(pd.Series([normalise(p) for p in uniq], dtype=object))
    cat = cat_of_path[path_codes] if len(uniq) else np.zeros(len(frame), dtype=np.int64)
    status = frame["status"].to_numpy(dtype=float, na_value=np.nan)
    latency = frame["latency_ms"].to_numpy(dtype=float, na_value=np.nan)
    ua_codes, _ = pd.factorize(frame["user_agent"].astype(object), use_na_sentinel=True)

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(codes, weights=mask.astype(float), minlength=n)

    requests = np.bincount(codes, minlength=n).astype(float)
    p50, p95, pmax = _quantiles(codes, latency, n, (0.5, 0.95, 1.0))
    micros = frame["ts"].dt.as_unit("us").astype("int64").to_numpy()
    out = pd.DataFrame(
        {
            "requests": requests,
            "inference": count(cat == 0),
            "enumeration": count(cat == 1),
            "management": count(cat == 2),
            "other": count(cat == 3),
            "distinct_paths": _distinct(
                codes, route_codes[path_codes] if len(uniq) else np.full(len(frame), -1), n
            ),
            "error_4xx_ratio": count((status >= 400) & (status < 500)) / requests,
            "error_5xx_ratio": count(status >= 500) / requests,
            "latency_p50_ms": p50,
            "latency_p95_ms": p95,
            "latency_max_ms": pmax,
            "bytes_sent": np.bincount(
                codes, weights=frame["bytes_sent"].fillna(0).to_numpy(dtype=float), minlength=n
            ),
            "user_agents": _distinct(codes, ua_codes, n),
            "burstiness": _burstiness(codes, micros, n),
        },
        index=keys,
    )

    # History features, in time order so that each window sees only earlier ones.
    ips = keys.get_level_values(0).tolist()
    starts = keys.get_level_values(1).to_pydatetime().tolist()
    order = sorted(range(n), key=lambda i: (starts[i], ips[i]))
    rarity = np.zeros(n)
    age = np.zeros(n)
    for i in order:
        who, start_dt = ips[i], starts[i]
        rarity[i] = profile.rarity(who, start_dt.hour)
        first = profile.first_seen.get(who, start_dt)
        age[i] = min(cap_days, max(0.0, (start_dt - first) / timedelta(days=1)))
        if update_profile:
            profile.add(who, start_dt)
    out["hour_rarity"] = rarity
    out["source_age_days"] = age
    out = out[list(FEATURE_NAMES)].astype(float)
    return out.sort_index(level=["window_start", "client_ip"])


def format_value(name: str, value: float) -> str:
    """Format a feature value for a person (`1,402`, `0.35`, `12.5 s`)."""
    if name.endswith("_ratio") or name in ("burstiness", "hour_rarity"):
        return f"{value:.2f}"
    if name.endswith("_ms") and value >= 1000:
        return f"{value / 1000:,.1f} s"
    if float(value).is_integer() or abs(value) >= 100:
        return f"{value:,.0f}{UNITS.get(name, '')}"
    return f"{value:,.1f}{UNITS.get(name, '')}"
