"""The features of one window, computed from its requests fed in chunks, with bounded memory.

`WindowAccumulator(start, window_minutes)` takes the window's requests in time order, a chunk at a time
(`add(rows)`, rows being tuples in the order of ROW_COLUMNS, as `detect_queries.iter_window_rows`
yields them), and keeps only per-client counters between chunks: no request is held once its chunk is
folded in. `result(profile)` returns the same frame as `features.compute` would for those requests
(one row per client, FEATURE_NAMES columns; a test checks it), as a `monitor.detect.frame.Windows`,
so the daemon, `train` and `score` compute a window's features in one way whatever its size, with
numpy only (no pandas in the daemon).

Bounds, so that a flood cannot grow the process: the latency values kept for the quantiles are at most
VALUE_BUDGET for the whole window (past that, the largest client's sorted values are halved, every
second one kept, which moves a quantile by at most one rank of the discarded half; the maximum is kept
exactly), and the distinct routes and user agents counted per client saturate at DISTINCT_CAP.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from monitor.core.endpoints import classify, normalise
from monitor.detect.features import _CAT_CODES, FEATURE_NAMES, Profile, _quantiles
from monitor.detect.frame import Windows

ROW_COLUMNS = ("ts", "client_ip", "path", "status", "latency_ms", "bytes_sent", "user_agent")
VALUE_BUDGET = 2_000_000  # latency values kept per window (16 MB of float64)
DISTINCT_CAP = 100_000  # distinct routes / user agents counted per client and window
_PATH_CACHE_MAX = 50_000


class WindowAccumulator:
    """Per-client counters of one window [start, start + window_minutes), fed in time order."""

    def __init__(
        self,
        start: datetime,
        window_minutes: int = 60,
        *,
        value_budget: int = VALUE_BUDGET,
        distinct_cap: int = DISTINCT_CAP,
    ) -> None:
        self.start = start
        self.window = timedelta(minutes=window_minutes)
        self.value_budget = value_budget
        self.distinct_cap = distinct_cap
        self.index: dict[str, int] = {}
        self.counts = np.zeros((0, 7))  # requests, inference, enumeration, management, other, 4xx, 5xx
        self.bytes = np.zeros(0)
        self.gap_n = np.zeros(0)
        self.gap_sum = np.zeros(0)
        self.gap_sq = np.zeros(0)
        self.last_us = np.zeros(0, dtype=np.int64)
        self.lat_max = np.zeros(0)
        self.routes: list[set[int]] = []
        self.agents: list[set[int]] = []
        self._lat_codes: list[np.ndarray] = []  # latency values kept, by chunk, with their client
        self._lat_values: list[np.ndarray] = []
        self.kept = 0
        self._paths: dict[str, tuple[int, int]] = {}  # path -> (category code, route id)
        self.rows = 0

    # --- feeding ---------------------------------------------------------------------------------
    def _grow(self, n: int) -> None:
        extra = n - len(self.bytes)
        if extra <= 0:
            return
        self.counts = np.vstack([self.counts, np.zeros((extra, 7))])
        for name in ("bytes", "gap_n", "gap_sum", "gap_sq"):
            setattr(self, name, np.concatenate([getattr(self, name), np.zeros(extra)]))
        self.last_us = np.concatenate([self.last_us, np.full(extra, -1, dtype=np.int64)])
        self.lat_max = np.concatenate([self.lat_max, np.full(extra, np.nan)])
        for _ in range(extra):
            self.routes.append(set())
            self.agents.append(set())

    def _path_info(self, path: str) -> tuple[int, int]:
        """(category code, route hash) of a path; routes are told apart by a 64-bit hash, not kept."""
        info = self._paths.get(path)
        if info is None:
            info = (_CAT_CODES[classify(None, path)], hash(normalise(path)))
            if len(self._paths) >= _PATH_CACHE_MAX:
                self._paths.clear()
            self._paths[path] = info
        return info

    def add(self, rows: Sequence[Sequence[Any]]) -> None:
        """Fold a chunk of requests (tuples in ROW_COLUMNS order, in time order) into the counters."""
        if not rows:
            return
        self.rows += len(rows)
        ts, ips, paths, status, latency, sent, agents = (list(c) for c in zip(*rows, strict=True))
        micros = _micros(ts)
        local, uniq = _factorize(ips)
        base = len(self.index)
        gid = np.empty(len(uniq), dtype=np.int64)
        for i, ip in enumerate(uniq):
            gid[i] = self.index.setdefault(str(ip), len(self.index))
        if len(self.index) > base:
            self._grow(len(self.index))
        codes = gid[local]
        pcodes, puniq = _factorize(["" if p is None else str(p) for p in paths])
        info = np.array([self._path_info(str(p)) for p in puniq], dtype=np.int64).reshape(-1, 2)
        cat = info[pcodes, 0]
        route = info[pcodes, 1]
        st = _floats(status)
        lat = _floats(latency)
        by = np.nan_to_num(_floats(sent), nan=0.0)
        n = len(self.index)

        def count(mask: np.ndarray) -> np.ndarray:
            return np.bincount(codes, weights=mask.astype(float), minlength=n)

        self.counts += np.column_stack(
            [
                np.bincount(codes, minlength=n).astype(float),
                count(cat == 0),
                count(cat == 1),
                count(cat == 2),
                count(cat == 3),
                count((st >= 400) & (st < 500)),
                count(st >= 500),
            ]
        )
        self.bytes += np.bincount(codes, weights=by, minlength=n)
        self._distinct(self.routes, codes, route)
        acodes, auniq = _factorize(agents)
        aids = np.array([hash(str(a)) for a in auniq], dtype=np.int64)
        ok = np.array([a is not None for a in auniq], dtype=bool)[acodes] if len(auniq) else acodes >= 0
        self._distinct(self.agents, codes[ok], aids[acodes[ok]])
        self._gaps(codes, micros)
        self._latency(codes, lat)

    def _distinct(self, sets: list[set[int]], codes: np.ndarray, labels: np.ndarray) -> None:
        if not len(codes):
            return
        pairs = np.unique(np.column_stack([codes, labels]), axis=0)
        cap = self.distinct_cap
        for g, label in pairs.tolist():
            bucket = sets[g]
            if len(bucket) < cap:
                bucket.add(label)

    def _gaps(self, codes: np.ndarray, micros: np.ndarray) -> None:
        order = np.argsort(codes, kind="stable")  # rows come in time order: stable keeps it per client
        c, t = codes[order], micros[order]
        n = len(self.index)
        first = np.ones(len(c), dtype=bool)
        first[1:] = c[1:] != c[:-1]
        prev = np.empty(len(c), dtype=np.int64)
        prev[1:] = t[:-1]
        prev[first] = self.last_us[c[first]]  # the client's last request of an earlier chunk, or -1
        has = prev >= 0
        gaps = (t[has] - prev[has]) / 1e6
        gc = c[has]
        self.gap_n += np.bincount(gc, minlength=n)
        self.gap_sum += np.bincount(gc, weights=gaps, minlength=n)
        self.gap_sq += np.bincount(gc, weights=gaps * gaps, minlength=n)
        last = np.ones(len(c), dtype=bool)
        last[:-1] = c[1:] != c[:-1]
        self.last_us[c[last]] = t[last]

    def _latency(self, codes: np.ndarray, lat: np.ndarray) -> None:
        ok = ~np.isnan(lat)
        c, v = codes[ok], lat[ok]
        if not len(c):
            return
        np.fmax.at(self.lat_max, c, v)
        self._lat_codes.append(c)
        self._lat_values.append(v)
        self.kept += len(v)
        if self.kept > self.value_budget:
            self._shrink()

    def _shrink(self) -> None:
        """Halve the largest client's kept values (sorted, every second one) until well within the budget."""
        c, v = np.concatenate(self._lat_codes), np.concatenate(self._lat_values)
        order = np.lexsort((v, c))
        c, v = c[order], v[order]
        while len(v) > self.value_budget * 3 // 4:  # room for the next chunks before shrinking again
            sizes = np.bincount(c)
            g = int(np.argmax(sizes))
            mine = np.flatnonzero(c == g)
            drop = mine[1::2]
            keep = np.ones(len(c), dtype=bool)
            keep[drop] = False
            c, v = c[keep], v[keep]
        self._lat_codes, self._lat_values = [c], [v]
        self.kept = len(v)

    # --- the result ----------------------------------------------------------------------------------
    def result(
        self, profile: Profile | None = None, *, cap_days: float = 14.0, update_profile: bool = True
    ) -> Windows:
        """Return the window's features, one row per (client_ip, window_start), sorted by client."""
        ips = sorted(self.index, key=lambda ip: ip)
        if not ips:
            return Windows([], [], np.zeros((0, len(FEATURE_NAMES))), FEATURE_NAMES)
        profile = profile if profile is not None else Profile()
        idx = np.array([self.index[ip] for ip in ips])
        counts = self.counts[idx]
        req = counts[:, 0]
        quant = np.zeros((len(ips), 3))
        if self._lat_values:
            position = np.empty(len(self.index), dtype=np.int64)
            position[idx] = np.arange(len(ips))
            p50, p95 = _quantiles(
                position[np.concatenate(self._lat_codes)],
                np.concatenate(self._lat_values),
                len(ips),
                (0.5, 0.95),
            )
            quant[:, 0], quant[:, 1] = p50, p95
            quant[:, 2] = np.nan_to_num(self.lat_max[idx], nan=0.0)
        gap_n, gap_sum, gap_sq = self.gap_n[idx], self.gap_sum[idx], self.gap_sq[idx]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = gap_sum / gap_n
            sd = np.sqrt(np.maximum(gap_sq / gap_n - mean * mean, 0.0))
            burst = (sd - mean) / (sd + mean)
        burst = np.where((gap_n >= 2) & np.isfinite(burst), burst, 0.0)
        start = self.start
        rarity = np.zeros(len(ips))
        age = np.zeros(len(ips))
        for k, ip in enumerate(ips):
            rarity[k] = profile.rarity(ip, start.hour)
            first = profile.first_seen.get(ip, start)
            age[k] = min(cap_days, max(0.0, (start - first) / timedelta(days=1)))
            if update_profile:
                profile.add(ip, start)
        columns = {
            "requests": req,
            "inference": counts[:, 1],
            "enumeration": counts[:, 2],
            "management": counts[:, 3],
            "other": counts[:, 4],
            "distinct_paths": np.array([float(len(self.routes[g])) for g in idx.tolist()]),
            "error_4xx_ratio": counts[:, 5] / req,
            "error_5xx_ratio": counts[:, 6] / req,
            "latency_p50_ms": quant[:, 0],
            "latency_p95_ms": quant[:, 1],
            "latency_max_ms": quant[:, 2],
            "bytes_sent": self.bytes[idx],
            "user_agents": np.array([float(len(self.agents[g])) for g in idx.tolist()]),
            "burstiness": burst,
            "hour_rarity": rarity,
            "source_age_days": age,
        }
        values = np.column_stack([np.asarray(columns[name], dtype=float) for name in FEATURE_NAMES])
        return Windows(ips, [start] * len(ips), values, FEATURE_NAMES)


def _factorize(values: Sequence[Any]) -> tuple[np.ndarray, list[Any]]:
    """(code of each value, the distinct values in order of first appearance), None a value like any."""
    seen: dict[Any, int] = {}
    codes = np.fromiter((seen.setdefault(v, len(seen)) for v in values), dtype=np.int64, count=len(values))
    return codes, list(seen)


def _floats(values: Sequence[Any]) -> np.ndarray:
    """Numbers as floats, None (and anything that is not a number) as NaN."""
    try:
        return np.asarray(values, dtype=float)  # None becomes NaN
    except (TypeError, ValueError):
        out = np.full(len(values), np.nan)
        for i, v in enumerate(values):
            with contextlib.suppress(TypeError, ValueError):
                out[i] = float(v)
        return out


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(ts: Sequence[Any]) -> np.ndarray:
    """Microseconds since the epoch: the store's integer time as it is, datetimes and ISO text converted."""
    if ts and isinstance(ts[0], int):
        return np.asarray(ts, dtype=np.int64)
    out = np.empty(len(ts), dtype=np.int64)
    for i, t in enumerate(ts):
        when = datetime.fromisoformat(t) if isinstance(t, str) else t
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        out[i] = (when - _EPOCH) // timedelta(microseconds=1)
    return out
