"""The weekly usage summary: who used the server in a period, how much, and what looked wrong.

`build(store, settings, since, until)` reads the period's requests with one `pandas.read_sql` (the SQL is
in `monitor.store.summary_queries`), aggregates them with vectorised numpy/pandas operations and returns
a `Summary` (`monitor.reports.summary.data`: plain frozen data) that `monitor.reports.summary.render` turns into text,
Markdown, HTML or JSON. A week of a million requests takes a few seconds (bench/summary.py).

The Summary holds log text (paths, addresses) exactly as stored: it is attacker-controlled, and each
renderer escapes it for its medium. Times are UTC; days and hours of day are UTC days and hours.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from monitor.config import Settings
from monitor.core.endpoints import classify, normalise
from monitor.core.errors import MonitorError
from monitor.detect.known import KnownSources
from monitor.reports.summary.data import (
    CATEGORIES,
    STATUSES,
    AlertEntry,
    DayUsage,
    EndpointUsage,
    SourceUsage,
    Summary,
    Totals,
    model_state,
    source_order,
)
from monitor.store import summary_queries as q

if TYPE_CHECKING:
    from monitor.store import Store

TOP_ENDPOINTS = 15
_READ_CHUNK = 50_000
_INT_COLUMNS = ("ts", "client_id", "endpoint_id")
_US_PER_HOUR = 3_600_000_000
_US_PER_DAY = 24 * _US_PER_HOUR


# --- the period ---------------------------------------------------------------------------------------


def period(days: int, since: date | None = None, now: datetime | None = None) -> tuple[datetime, datetime]:
    """Return the UTC period [since, until) to summarise.

    With `since` (a date), the period starts at its midnight UTC and lasts `days` days. Without it, it
    is the `days` days that end now (the weekly timer runs just after midnight UTC on Mondays).
    """
    if days < 1:
        raise MonitorError(f"--days must be at least 1 (got {days})")
    if since is not None:
        start = datetime.combine(since, time(0), tzinfo=UTC)
        return start, start + timedelta(days=days)
    end = (now or datetime.now(UTC)).astimezone(UTC)
    return end - timedelta(days=days), end


def parse_since(text: str, today: date) -> date:
    """Parse `--since`: a date (YYYY-MM-DD) or `-Nd`, the midnight UTC N days before `today`.

    `-7d` on a Monday is the previous Monday, which is what the weekly timer passes. Raise MonitorError
    for anything else.
    """
    value = text.strip()
    if value.startswith("-") and value.endswith("d") and value[1:-1].isdigit():
        return today - timedelta(days=int(value[1:-1]))
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise MonitorError(
            f"--since: {value!r} is neither a date (YYYY-MM-DD) nor a number of days ago (-7d)"
        ) from None


# --- building -----------------------------------------------------------------------------------------


def load_requests(store: Store, since: datetime, until: datetime) -> pd.DataFrame:
    """Return the period's requests as a frame: ts (datetime64 UTC), client_ip, method, path, status,
    latency_ms, bytes_sent."""
    stored = _read_stored(store, since, until)
    # Decode the dictionary ids once per distinct value, as categoricals: a small code per row, each
    # string once (a missing method or path is "", which is what the aggregation treats it as).
    ips = q.client_names(store)
    endpoints = q.endpoint_names(store, stored["endpoint_id"].unique())
    client_codes, client_ids = pd.factorize(stored["client_id"], sort=False)
    endpoint_codes, endpoint_ids = pd.factorize(stored["endpoint_id"], sort=False)

    def decoded(codes: np.ndarray, values: list[str]) -> pd.Categorical:
        uniques, inverse = np.unique(np.array(values, dtype=object), return_inverse=True)
        return pd.Categorical.from_codes(inverse[codes] if len(codes) else codes, categories=list(uniques))

    frame = pd.DataFrame(
        {
            "ts": pd.to_datetime(stored["ts"], unit="us", utc=True),
            "client_ip": decoded(client_codes, [ips[int(i)] for i in client_ids]),
            "method": decoded(endpoint_codes, [endpoints[int(i)][0] or "" for i in endpoint_ids]),
            "path": decoded(endpoint_codes, [endpoints[int(i)][1] or "" for i in endpoint_ids]),
            "status": stored["status"].astype("float64"),
            "latency_ms": stored["latency_ms"].astype("float64"),
            "bytes_sent": stored["bytes_sent"].astype("float64"),
        }
    )
    return frame


def _read_stored(store: Store, since: datetime, until: datetime) -> pd.DataFrame:
    """The period's stored columns (q.REQUEST_COLUMNS) as a frame of numbers, read in chunks.

    On SQLite each chunk of rows goes straight into one float64 array (NULL becomes NaN; times in
    microseconds are exact below 2**53): a million rows end as about 50 MB, where read_sql's frames
    and per-row tuples took several times that."""
    columns = list(q.REQUEST_COLUMNS)
    with q.requests_source(store, since, until) as (conn, query, params):
        if store.is_sqlite:
            cur = conn.cursor()
            cur.execute(query, params)
            parts = []
            while rows := cur.fetchmany(_READ_CHUNK):
                parts.append(np.array(rows, dtype=np.float64))
            cur.close()
            data = np.concatenate(parts) if parts else np.empty((0, len(columns)))
            del parts
            return pd.DataFrame(
                {
                    name: data[:, i].astype(np.int64) if name in _INT_COLUMNS else data[:, i]
                    for i, name in enumerate(columns)
                },
                copy=False,
            )
        chunks = list(pd.read_sql(query, conn, params=params, chunksize=_READ_CHUNK))
        frame = pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame(columns=columns)
    return frame.astype({name: "int64" for name in _INT_COLUMNS})


def build(
    store: Store,
    settings: Settings,
    since: datetime,
    until: datetime,
    *,
    now: datetime | None = None,
    frame: pd.DataFrame | None = None,
) -> Summary:
    """Given a store and a UTC period [since, until), return its Summary.

    `frame` may carry the period's requests already loaded (load_requests); `now` stamps the summary.
    """
    frame = load_requests(store, since, until) if frame is None else frame
    known = KnownSources(settings.known, q.approved_networks(store))
    ever = q.first_seen(store, frame["client_ip"].unique()) if len(frame) else {}
    scored, flagged = q.anomalous_windows(store, since, until)
    totals, sources, daily, hourly, heatmap, endpoints = _aggregate(frame, known, ever, since, until)
    return Summary(
        generated_at=(now or datetime.now(UTC)).astimezone(UTC),
        since=since,
        until=until,
        totals=totals,
        previous=_previous_totals(store, since - (until - since), since),
        sources=sources,
        daily=daily,
        hourly=hourly,
        heatmap=heatmap,
        endpoints=endpoints,
        alerts=[_alert(a) for a in q.period_alerts(store, since, until)],
        model=model_state(Path(settings.detector.model_dir), scored, flagged),
    )


def _aggregate(
    frame: pd.DataFrame, known: KnownSources, ever: dict[str, datetime], since: datetime, until: datetime
) -> tuple[Totals, list[SourceUsage], list[DayUsage], list[int], list[list[int]], list[EndpointUsage]]:
    n = len(frame)
    first_day = since.date()
    day_count = (until - timedelta(microseconds=1)).date().toordinal() - first_day.toordinal() + 1
    if n == 0:
        empty_days = [DayUsage(first_day + timedelta(days=i)) for i in range(day_count)]
        return Totals(), [], empty_days, [0] * 24, [[0] * 24 for _ in range(7)], []

    ip_code, ips = pd.factorize(frame["client_ip"], sort=False)
    n_ips = len(ips)
    status_of_ip = np.array([STATUSES.index(known.status(str(ip)).value) for ip in ips], dtype=np.int64)

    # Categories and routes are decided once per distinct (method, path), not once per row.
    m_code, methods = pd.factorize(frame["method"].fillna(""), sort=False)
    p_code, paths = pd.factorize(frame["path"].fillna(""), sort=False)
    pair_key = m_code.astype(np.int64) * len(paths) + p_code
    pair_of_row, pairs = pd.factorize(pair_key, sort=False)
    pair_method = [str(methods[k // len(paths)]) for k in pairs]
    pair_path = [str(paths[k % len(paths)]) for k in pairs]
    pair_cat = np.array(
        [
            CATEGORIES.index(classify(m or None, p or None).value)
            for m, p in zip(pair_method, pair_path, strict=True)
        ]
    )
    cat = pair_cat[pair_of_row]

    status = frame["status"].to_numpy(dtype=np.float64, na_value=np.nan)
    is_4xx = (status >= 400) & (status < 500)
    is_5xx = status >= 500
    errors = is_4xx | is_5xx
    latency = frame["latency_ms"].to_numpy(dtype=np.float64, na_value=np.nan)
    size = frame["bytes_sent"].to_numpy(dtype=np.float64, na_value=np.nan)
    has_size = ~np.isnan(size)
    ts_us = frame["ts"].to_numpy(dtype="datetime64[us]").astype(np.int64)

    def per_ip(weights: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(ip_code, weights=weights, minlength=n_ips)

    requests = per_ip()
    by_cat = np.bincount(ip_code * len(CATEGORIES) + cat, minlength=n_ips * len(CATEGORIES)).reshape(
        n_ips, -1
    )
    n4 = per_ip(is_4xx.astype(np.float64))
    n5 = per_ip(is_5xx.astype(np.float64))
    bytes_ip = per_ip(np.where(has_size, size, 0.0))
    sized_ip = per_ip(has_size.astype(np.float64))
    hour_abs = ts_us // _US_PER_HOUR
    hour_rel = hour_abs - hour_abs.min()
    span = int(hour_rel.max()) + 1
    active_hours = np.bincount(pd.unique(ip_code.astype(np.int64) * span + hour_rel) // span, minlength=n_ips)
    stamps = pd.DataFrame({"ip": ip_code, "ts": ts_us, "lat": latency})
    grouped = stamps.groupby("ip", sort=True)
    last_us = grouped["ts"].max().to_numpy()
    first_us = grouped["ts"].min().to_numpy()
    p50 = grouped["lat"].quantile(0.5).reindex(range(n_ips)).to_numpy()
    p95 = grouped["lat"].quantile(0.95).reindex(range(n_ips)).to_numpy()

    sources = []
    for i, ip in enumerate(ips):
        ip = str(ip)
        first_here = _from_us(int(first_us[i]))
        earliest = min(ever.get(ip, first_here), first_here)
        sources.append(
            SourceUsage(
                client_ip=ip,
                status=STATUSES[status_of_ip[i]],
                name=known.name(ip),
                requests=int(requests[i]),
                **{c: int(by_cat[i, j]) for j, c in enumerate(CATEGORIES)},
                errors_4xx=int(n4[i]),
                errors_5xx=int(n5[i]),
                error_rate=float((n4[i] + n5[i]) / requests[i]),
                latency_p50_ms=_num(p50[i]),
                latency_p95_ms=_num(p95[i]),
                bytes_sent=int(bytes_ip[i]) if sized_ip[i] else None,
                active_hours=int(active_hours[i]),
                first_seen=earliest,
                last_seen=_from_us(int(last_us[i])),
                new=earliest >= since,
            )
        )
    sources.sort(key=source_order)

    cat_totals = np.bincount(cat, minlength=len(CATEGORIES))
    n_err = int(errors.sum())
    totals = Totals(
        requests=n,
        sources=n_ips,
        **{c: int(cat_totals[j]) for j, c in enumerate(CATEGORIES)},
        errors=n_err,
        error_rate=n_err / n,
        bytes_sent=int(size[has_size].sum()),
    )

    # Days and hours: integer arithmetic on microseconds since the epoch (1970-01-01 was a Thursday).
    day_abs = ts_us // _US_PER_DAY
    day_rel = day_abs - (first_day.toordinal() - date(1970, 1, 1).toordinal())
    row_status = status_of_ip[ip_code]
    by_day = np.bincount(day_rel * len(STATUSES) + row_status, minlength=day_count * len(STATUSES))
    by_day = by_day[: day_count * len(STATUSES)].reshape(day_count, len(STATUSES))
    daily = [DayUsage(first_day + timedelta(days=d), *(int(v) for v in by_day[d])) for d in range(day_count)]
    hour_of_day = hour_abs % 24
    weekday = (day_abs + 3) % 7
    heat = np.bincount(weekday * 24 + hour_of_day, minlength=7 * 24).reshape(7, 24)
    hourly = [int(v) for v in heat.sum(axis=0)]

    endpoints = _endpoints(pair_method, pair_path, pair_cat, pair_of_row, ip_code, n_ips, errors)
    return totals, sources, daily, hourly, heat.astype(int).tolist(), endpoints


def _endpoints(
    pair_method: list[str],
    pair_path: list[str],
    pair_cat: np.ndarray,
    pair_of_row: np.ndarray,
    ip_code: np.ndarray,
    n_ips: int,
    errors: np.ndarray,
) -> list[EndpointUsage]:
    """Return the busiest (method, route) pairs with their request, source and error counts."""
    keys = [(m, normalise(p) or "-") for m, p in zip(pair_method, pair_path, strict=True)]
    ep_code, ep_keys = pd.factorize(pd.Series([f"{m} {r}" for m, r in keys]), sort=False)
    ep_of_row = ep_code[pair_of_row]
    n_ep = len(ep_keys)
    counts = np.bincount(ep_of_row, minlength=n_ep)
    errs = np.bincount(ep_of_row, weights=errors.astype(np.float64), minlength=n_ep)
    distinct = pd.unique(ep_of_row.astype(np.int64) * n_ips + ip_code)
    users = np.bincount(distinct // n_ips, minlength=n_ep)
    first_pair: dict[int, int] = {}
    for pair_index, code in enumerate(ep_code):
        first_pair.setdefault(int(code), pair_index)
    order = sorted(range(n_ep), key=lambda e: (-counts[e], keys[first_pair[e]]))[:TOP_ENDPOINTS]
    out = []
    for e in order:
        method, route = keys[first_pair[e]]
        out.append(
            EndpointUsage(
                method=method or "-",
                route=route,
                category=CATEGORIES[int(pair_cat[first_pair[e]])],
                requests=int(counts[e]),
                sources=int(users[e]),
                errors=int(errs[e]),
            )
        )
    return out


def _previous_totals(store: Store, since: datetime, until: datetime) -> Totals:
    """Totals of the period before, from the rollups and the partial days' rows (no rows are loaded)."""
    counts = q.period_counts(store, since, until)
    if not counts["requests"]:
        return Totals()
    return Totals(
        **counts,
        error_rate=counts["errors"] / counts["requests"],
    )


def _alert(row: dict[str, Any]) -> AlertEntry:
    return AlertEntry(
        ts=row["ts"],
        rule=str(row["rule"]),
        severity=str(row["severity"]),
        title=str(row["title"]),
        message=str(row["message"]),
        client_ips=tuple(row["client_ips"]),
        details=row["details"],
    )


def _from_us(value: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=value)


def _num(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 3)
