"""Reading requests fast: the documented columns over the base tables, with integer time."""

from __future__ import annotations

from typing import Any

from sqlalchemy import literal_column, select

from monitor.store import schema


def request_select() -> Any:
    """A select of the documented request columns over the base tables (what the `requests` view
    gives, with `ts` as the stored integer: see schema.ts_key), for filtering on indexed columns."""
    r, c, e, a, s = schema.request_rows, schema.clients, schema.endpoints, schema.agents, schema.source_names
    return select(
        r.c.id,
        r.c.ts,
        c.c.ip.label("client_ip"),
        e.c.method,
        e.c.path,
        r.c.status,
        r.c.latency_ms,
        r.c.bytes_sent,
        a.c.user_agent,
        r.c.forwarded_for,
        r.c.peer_ip,
        s.c.name.label("source"),
        r.c.id.op(">>")(literal_column(str(schema.LINE_OFFSET_BITS))).label("file_id"),
        r.c.id.op("&")(literal_column(str(schema.LINE_OFFSET_MASK))).label("line_offset"),
    ).select_from(
        r.join(c, c.c.id == r.c.client_id)
        .join(e, e.c.id == r.c.endpoint_id)
        .outerjoin(a, a.c.id == r.c.agent_id)
        .join(s, s.c.id == r.c.source_id)
    )
