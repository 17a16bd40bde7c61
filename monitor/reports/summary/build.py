"""The weekly usage summary: who used the server in a period, how much, and what looked wrong.

`build(store, settings, since, until)` reads aggregates, never the period's rows (the SQL is in
`monitor.store.summary_queries`): per (day, client) counts from the rollups, requests per hour,
(endpoint, client) pairs and the exact latency percentiles per client, grouped by the database. It
returns a `Summary` (`monitor.reports.summary.data`: plain frozen data) that `monitor.reports.summary.render`
turns into text, Markdown, HTML or JSON. Memory is bounded by clients x days and endpoints x clients,
whatever the number of requests (bench/summary.py, bench/scale.py).

The Summary holds log text (paths, addresses) exactly as stored: it is attacker-controlled, and each
renderer escapes it for its medium. Times are UTC; days and hours of day are UTC days and hours.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from monitor.store.schema import from_ts_key
from monitor.store.summary_queries import ClientDay

if TYPE_CHECKING:
    from monitor.store import Store

TOP_ENDPOINTS = 15
_CATEGORY_INDEX = tuple(1 + i for i in range(len(CATEGORIES)))  # their places in ClientDay.values


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


def build(
    store: Store,
    settings: Settings,
    since: datetime,
    until: datetime,
    *,
    now: datetime | None = None,
) -> Summary:
    """Given a store and a UTC period [since, until), return its Summary; `now` stamps the summary."""
    known = KnownSources(settings.known, q.approved_networks(store))
    scored, flagged = q.anomalous_windows(store, since, until)
    totals, sources, daily, hourly, heatmap, endpoints = _aggregate(store, known, since, until)
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
    store: Store, known: KnownSources, since: datetime, until: datetime
) -> tuple[Totals, list[SourceUsage], list[DayUsage], list[int], list[list[int]], list[EndpointUsage]]:
    first_day = since.date()
    day_count = (until - timedelta(microseconds=1)).date().toordinal() - first_day.toordinal() + 1
    epoch_day = first_day.toordinal() - date(1970, 1, 1).toordinal()
    days, per_hour = q.client_activity(store, since, until)
    if not days:
        empty_days = [DayUsage(first_day + timedelta(days=i)) for i in range(day_count)]
        return Totals(), [], empty_days, [0] * 24, [[0] * 24 for _ in range(7)], []

    # Per client: the days summed, the hour masks counted; per day: requests by the client's status.
    clients: dict[int, ClientDay] = {}
    active: dict[int, int] = {}
    by_day = [[0] * len(STATUSES) for _ in range(day_count)]
    ips = q.client_names(store, {cid for _, cid in days})
    status_of = {cid: STATUSES.index(known.status(ip).value) for cid, ip in ips.items()}
    for (day, cid), item in days.items():
        active[cid] = active.get(cid, 0) + item.hours.bit_count()
        by_day[day - epoch_day][status_of[cid]] += item.requests
        if cid in clients:
            clients[cid].add(item)
        else:
            clients[cid] = ClientDay(list(item.values), item.first_ts, item.last_ts, 0)

    ever = q.first_seen(store)
    latency = q.latency_percentiles(store, since, until, (50, 95))
    sources = []
    for cid, t in clients.items():
        ip = ips[cid]
        earliest = from_ts_key(min(ever.get(cid, t.first_ts), t.first_ts))
        p50, p95 = latency.get(cid, (None, None))
        sources.append(
            SourceUsage(
                client_ip=ip,
                status=STATUSES[status_of[cid]],
                name=known.name(ip),
                requests=t.requests,
                **{c: t.values[j] for c, j in zip(CATEGORIES, _CATEGORY_INDEX, strict=True)},
                errors_4xx=t.errors_4xx,
                errors_5xx=t.errors_5xx,
                error_rate=(t.errors_4xx + t.errors_5xx) / t.requests,
                latency_p50_ms=_num(p50),
                latency_p95_ms=_num(p95),
                bytes_sent=t.bytes_sent if t.sized else None,
                active_hours=active[cid],
                first_seen=earliest,
                last_seen=from_ts_key(t.last_ts),
                new=earliest >= since,
            )
        )
    sources.sort(key=source_order)

    n = sum(t.requests for t in clients.values())
    n_err = sum(t.errors_4xx + t.errors_5xx for t in clients.values())
    totals = Totals(
        requests=n,
        sources=len(clients),
        **{
            c: sum(t.values[j] for t in clients.values())
            for c, j in zip(CATEGORIES, _CATEGORY_INDEX, strict=True)
        },
        errors=n_err,
        error_rate=n_err / n,
        bytes_sent=sum(t.bytes_sent for t in clients.values()),
    )
    daily = [DayUsage(first_day + timedelta(days=d), *by_day[d]) for d in range(day_count)]
    # Hours since the epoch: hour of day and weekday (1970-01-01 was a Thursday).
    heat = [[0] * 24 for _ in range(7)]
    for hour, count in per_hour.items():
        heat[(hour // 24 + 3) % 7][hour % 24] += count
    hourly = [sum(row[h] for row in heat) for h in range(24)]
    return totals, sources, daily, hourly, heat, _endpoints(store, since, until)


def _endpoints(store: Store, since: datetime, until: datetime) -> list[EndpointUsage]:
    """Return the busiest (method, route) pairs with their request, distinct source and error counts.

    The database groups the period's rows by (endpoint, client); endpoints (each a method and a path
    as logged) are merged here into routes (the path without its query string, `normalise`)."""
    pairs: dict[int, list[int]] = {}  # endpoint id -> [requests, errors]
    users: dict[int, set[int]] = {}  # endpoint id -> client ids
    for endpoint, client, count, errors in q.endpoint_clients(store, since, until):
        acc = pairs.setdefault(endpoint, [0, 0])
        acc[0] += count
        acc[1] += errors
        users.setdefault(endpoint, set()).add(client)
    names = q.endpoint_names(store, pairs)
    counts: dict[tuple[str, str], list[int]] = {}  # (method, route) -> [requests, errors, category]
    clients: dict[tuple[str, str], set[int]] = {}
    for endpoint in sorted(pairs):
        method, path = (m or "" for m in names.get(endpoint, (None, None)))
        key = (method, normalise(path) or "-")
        if key not in counts:
            counts[key] = [0, 0, CATEGORIES.index(classify(method or None, path or None).value)]
            clients[key] = set()
        counts[key][0] += pairs[endpoint][0]
        counts[key][1] += pairs[endpoint][1]
        clients[key] |= users[endpoint]
    order = sorted(counts, key=lambda k: (-counts[k][0], k))[:TOP_ENDPOINTS]
    return [
        EndpointUsage(
            method=key[0] or "-",
            route=key[1],
            category=CATEGORIES[counts[key][2]],
            requests=counts[key][0],
            sources=len(clients[key]),
            errors=counts[key][1],
        )
        for key in order
    ]


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


def _num(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)
