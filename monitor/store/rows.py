"""A batch's rows in columns, built outside any transaction, with the batch's rollups.

Kept apart from the Store so a parse worker process can do the Python work of an insert that is not
binding while the writer process inserts the previous batch: it splits the parsed lines into columns,
replaces each repeated text (client address, method and path, user agent) by an index into the
batch's list of its distinct values, and aggregates the rollups (`client_days`, `source_hours`) of
the batch once. The writer then only maps a few thousand distinct values to dictionary ids
(monitor.store.dictionary), and binds columns it zips together in C: no Python code runs per row.

Columns are also what crosses the pipe from the parse worker: lists of small ints pickle several times
faster than a million tuples of fresh strings.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from monitor.core.endpoints import classify
from monitor.core.records import Request
from monitor.store.schema import LINE_OFFSET_BITS, US_PER_HOUR, ts_key

# The rollup values of one (day, client) in a batch, in the order of views.ROLLUP_COLUMNS: requests,
# the five categories, ok, s401, s403, errors_4xx, errors_5xx, bytes_sent, sized, first_ts, last_ts,
# hours (a 24-bit mask of the UTC hours with requests).
_CATEGORY_SLOT = {"inference": 1, "enumeration": 2, "management": 3, "account": 4, "other": 5}
_CLIENT_BITS = 32  # a rollup key is day << 32 | local client index (a batch has far fewer clients)


def sqlite_ts(ts: datetime) -> str:
    """Format an aware datetime the way SQLAlchemy stores DateTime on SQLite (sortable UTC text)."""
    if ts.tzinfo is not UTC and ts.tzinfo is not None and ts.utcoffset():
        ts = ts.astimezone(UTC)
    return ts.isoformat(" ", "microseconds")[:26]


@dataclass
class SqliteRows:
    """Parsed lines as columns in `request_rows` order, the text ones as indexes into lists of the
    batch's distinct values, with what the checkpoint needs to know of them. (The name predates
    PostgreSQL using it too.)

    `days` maps day << 32 | client index to the rollup values of the batch's rows; `hours` maps a UTC
    hour to its requests. They are exact for the batch only when every row is new to the store: the
    writer uses them then, and aggregates the stored rows in SQL otherwise. None when the batch has a
    time before 1970 (SQL and Python round a negative division differently)."""

    ids: list[int]
    ts: list[int]
    clients: list[str]
    client_ix: list[int]
    endpoints: list[tuple[str | None, str | None]]
    endpoint_ix: list[int]
    agents: list[str | None]
    agent_ix: list[int]
    status: Sequence[int | None]
    latency_ms: Sequence[float | None]
    bytes_sent: Sequence[int | None]
    forwarded_for: Sequence[str | None]
    peer_ip: Sequence[str | None]
    last_ts: datetime | None
    max_offset: int
    min_offset: int = 0
    days: dict[int, list[int]] | None = None
    hours: dict[int, int] | None = None

    def __len__(self) -> int:
        return len(self.ids)


def _distinct(values: Sequence[Any]) -> tuple[list[Any], list[int]]:
    """Return the distinct values in first-seen order and each value's index into them (C loops)."""
    distinct = list(dict.fromkeys(values))
    index = {v: i for i, v in enumerate(distinct)}
    return distinct, list(map(index.__getitem__, values))


def sqlite_rows(source: str, file_id: int, parsed: Sequence[tuple[int, Request]]) -> SqliteRows:
    """Build the columns and rollups of parsed lines. Lines of a busy log share timestamps (the same
    second, often the same datetime object): each distinct time is converted once."""
    del source  # the writer adds the source id
    if not parsed:
        return SqliteRows([], [], [], [], [], [], [], [], [], [], [], [], [], None, 0, 0, {}, {})
    base = file_id << LINE_OFFSET_BITS
    offsets, requests = zip(*parsed, strict=True)
    (stamps, ips, methods, paths, status, latency, size, agents, fwd, peer) = zip(*requests, strict=True)
    times = dict.fromkeys(stamps)
    keys = {t: ts_key(t) for t in times}
    ts = list(map(keys.__getitem__, stamps))
    clients, client_ix = _distinct(ips)
    endpoints, endpoint_ix = _distinct(list(zip(methods, paths, strict=True)))
    agent_list, agent_ix = _distinct(agents)
    days, hours = _rollups(ts, client_ix, endpoints, endpoint_ix, status, size)
    return SqliteRows(
        ids=[base | off for off in offsets],
        ts=ts,
        clients=clients,
        client_ix=client_ix,
        endpoints=endpoints,
        endpoint_ix=endpoint_ix,
        agents=agent_list,
        agent_ix=agent_ix,
        status=status,
        latency_ms=latency,
        bytes_sent=size,
        forwarded_for=fwd,
        peer_ip=peer,
        last_ts=max(times),
        max_offset=max(offsets),
        min_offset=min(offsets),
        days=days,
        hours=hours,
    )


def _rollups(
    ts: list[int],
    client_ix: list[int],
    endpoints: list[tuple[str | None, str | None]],
    endpoint_ix: list[int],
    status: Sequence[int | None],
    size: Sequence[int | None],
) -> tuple[dict[int, list[int]] | None, dict[int, int] | None]:
    """The rollups of a batch, as views.aggregate computes them from its stored rows."""
    if min(ts) < 0:
        return None, None
    slot = [_CATEGORY_SLOT[classify(m, p).value] for m, p in endpoints]
    hour_of = [t // US_PER_HOUR for t in ts]
    days: dict[int, list[int]] = {}
    get = days.get
    for hour, c, e, st, b, t in zip(hour_of, client_ix, endpoint_ix, status, size, ts, strict=True):
        key = (hour // 24) << _CLIENT_BITS | c
        v = get(key)
        if v is None:
            v = days[key] = [0] * 13 + [t, t, 0]
        v[0] += 1
        v[slot[e]] += 1
        if st is not None:
            if st < 300:
                if st >= 200:
                    v[6] += 1
            elif st < 500:
                if st >= 400:
                    v[9] += 1
                    if st == 401:
                        v[7] += 1
                    elif st == 403:
                        v[8] += 1
            else:
                v[10] += 1
        if b is not None:
            v[11] += b
            v[12] += 1
        if t < v[13]:
            v[13] = t
        elif t > v[14]:
            v[14] = t
        v[15] |= 1 << (hour % 24)
    return days, dict(Counter(hour_of))


def rollup_key(key: int) -> tuple[int, int]:
    """(day, local client index) of a key of SqliteRows.days."""
    return key >> _CLIENT_BITS, key & ((1 << _CLIENT_BITS) - 1)
