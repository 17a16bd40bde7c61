"""One way to compute and score windows, for the daemon, `train` and `score`.

- `feature_sources(settings)`: the sources whose requests windows count. With a proxy in front of
  Ollama both logs hold the same requests, so windows count the proxies' only (None: every source).
- `compute_window(store, start, ...)`: one window's feature frame, from the store's indexed time range
  read in chunks (monitor.detect.features_stream), never from requests held in memory.
- `missing_windows(store, since, until, window)`: the windows whose stored requests grew since they
  were computed (or that were never computed), by index range counts against `window_state`.
- `score_recent(store, settings, model, starts)`: what `ollama-monitor score` prints: stored feature
  rows where the window is up to date, the indexed range otherwise.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from monitor.config import Settings
from monitor.store import Store
from monitor.store import detect_queries as q

if TYPE_CHECKING:
    import numpy as np

    from monitor.detect.features import Profile
    from monitor.detect.frame import Windows

CHUNK = 50_000  # requests read at once when computing a window


def feature_sources(settings: Settings) -> set[str] | None:
    names = {s.name for s in settings.sources if s.is_proxy}
    return names or None


def window_starts(since: datetime, until: datetime, window: timedelta) -> list[datetime]:
    out = []
    t = since
    while t < until:
        out.append(t)
        t += window
    return out


def compute_window(
    store: Store,
    start: datetime,
    window_minutes: int,
    sources: Iterable[str] | None,
    profile: Profile | None,
    *,
    cap_days: float,
    update_profile: bool = True,
) -> Windows:
    """Features of [start, start + window) for the given sources, read from the store in chunks."""
    from monitor.detect.features_stream import WindowAccumulator

    acc = WindowAccumulator(start, window_minutes)
    end = start + timedelta(minutes=window_minutes)
    for rows in q.iter_window_rows(store, start, end, sources, chunk=CHUNK):
        acc.add(rows)
    return acc.result(profile, cap_days=cap_days, update_profile=update_profile)


def missing_windows(
    store: Store, since: datetime, until: datetime, window: timedelta
) -> tuple[list[datetime], dict[datetime, int]]:
    """Return (window starts to compute, their stored request counts) among [since, until).

    A window is missing when the store holds more requests in it than when it was computed. Windows
    computed before `window_state` existed (feature rows but no state) are adopted as they are."""
    states = q.window_states(store, since, until)
    unknown = [t for t in window_starts(since, until, window) if t not in states]
    have_rows = q.window_starts(store, since, until) if unknown else set()
    todo: list[datetime] = []
    counts: dict[datetime, int] = {}
    adopted: dict[datetime, int] = {}
    for start in window_starts(since, until, window):
        n = q.count_in(store, start, start + window)
        if start in states:
            if n > states[start]:
                todo.append(start)
                counts[start] = n
        elif start in have_rows:
            adopted[start] = n
        elif n:
            todo.append(start)
            counts[start] = n
    if adopted:
        q.mark_windows(store, adopted, until)
    return todo, counts


def build_profile(store: Store, since: datetime, until: datetime | None = None) -> Profile:
    """The history features' memory from the feature rows in [since, until): active windows per
    (client, hour of day) counted in SQL, and every client's first window."""
    from monitor.detect.features import Profile

    return Profile.from_hours(q.hour_activity(store, since, until), q.first_windows(store))


def score_recent(
    store: Store, settings: Settings, model: Any, starts: list[datetime]
) -> list[dict[str, Any]]:
    """Assess the windows starting at `starts` with `model`; one dict per (window, client)."""
    from monitor.detect import features as feat
    from monitor.detect.frame import Windows

    det = settings.detector
    window = timedelta(minutes=det.window_minutes)
    sources = feature_sources(settings)
    states = q.window_states(store, starts[0], starts[-1] + window)
    profile: Profile | None = None
    names = feat.FEATURE_NAMES
    frames: list[Windows] = []
    for start in starts:
        stored = states.get(start)
        if stored is not None and q.count_in(store, start, start + window) <= stored:
            rows = q.load_windows(store, start, start + window)
            values = [[float(r["features"].get(n, 0.0)) for n in names] for r in rows]
            frames.append(Windows([r["client_ip"] for r in rows], [start] * len(rows), values, names))
            continue
        if profile is None:
            profile = build_profile(store, start - timedelta(days=det.history_days), start)
        frames.append(
            compute_window(
                store, start, det.window_minutes, sources, profile, cap_days=float(det.history_days)
            )
        )
    windows = Windows.concat([f for f in frames if len(f)], names)
    if not len(windows):
        return []
    findings = model.assess(windows)
    requests = windows.column("requests").tolist()
    return [
        {
            "client_ip": f.client_ip,
            "window_start": windows.index[i][1].isoformat(),
            "requests": int(requests[i]),
            "score": round(f.score, 4),
            "anomalous": f.anomalous,
            "explanation": f.explanation,
        }
        for i, f in enumerate(findings)
    ]


def training_set(
    store: Store, known: Any, since: datetime, until: datetime
) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """The stored windows of known sources in [since, until) that were not anomalous, as a feature
    matrix (FEATURE_NAMES columns, read a chunk at a time), their client IPs, and counts: used,
    unknown, anomalous, first, last."""
    import json

    import numpy as np

    from monitor.detect import features as feat

    names = list(feat.FEATURE_NAMES)
    blocks: list[np.ndarray] = []
    groups: list[str] = []
    info: dict[str, Any] = {"used": 0, "unknown": 0, "anomalous": 0, "first": None, "last": None}
    is_known: dict[str, bool] = {}
    for part in q.iter_training_windows(store, since, until):
        block = []
        for ip, start, raw, anomalous in part:
            ok = is_known.get(ip)
            if ok is None:
                ok = is_known[ip] = bool(known.is_known(ip))
            if not ok:
                info["unknown"] += 1
                continue
            if anomalous:
                info["anomalous"] += 1
                continue
            try:
                values = json.loads(raw)
            except ValueError:
                continue  # a damaged row is skipped, not fatal
            block.append([float(values.get(n, 0.0)) for n in names])
            groups.append(ip)
            info["first"] = info["first"] or start
            info["last"] = start
        if block:
            blocks.append(np.asarray(block, dtype=float))
    info["used"] = len(groups)
    matrix = np.vstack(blocks) if blocks else np.zeros((0, len(names)))
    return matrix, groups, info


def too_few_reason(
    store: Store, settings: Settings, info: dict[str, Any], since: datetime, until: datetime
) -> str:
    """Why training has too few windows: what was left out, and which sources windows do not count."""
    need = settings.detector.min_windows
    parts = [f"rules only: {info['used']} of {need} windows of history needed to train the detector"]
    if info["unknown"]:
        parts.append(
            f"{info['unknown']} windows of unknown sources are never used (approve them to use them)"
        )
    if info["anomalous"]:
        parts.append(f"{info['anomalous']} windows scored anomalous are left out")
    wanted = feature_sources(settings)
    if wanted is not None:
        left = {src: n for src, n in q.counts_by_source(store, since, until).items() if src not in wanted}
        if left:
            listed = ", ".join(f"{src!r} ({n:,} requests)" for src, n in sorted(left.items()))
            proxies = ", ".join(sorted(wanted))
            parts.append(
                f"requests of {listed} are not counted in windows: with a proxy source configured ({proxies}), "
                "windows count the proxy's requests only, as Ollama's own log repeats them; a copy of the "
                f"proxy's log ingested under another name belongs under `ingest --source {sorted(wanted)[0]}`"
            )
    return "; ".join(parts)
