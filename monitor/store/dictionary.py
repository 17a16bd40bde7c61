"""The dictionary tables (clients, agents, source names, endpoints): text stored once, rows hold ids.

`Dictionaries.ids(conn, kind, values)` returns value -> id for a batch's distinct values, inserting the
new ones in the caller's transaction. Ids never change and entries are never deleted, so a cache of
committed entries stays valid for the process's life; entries made by a transaction that rolls back
are dropped with `discard()` (the caller calls `commit()` or `discard()` after its transaction).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from monitor.core.endpoints import classify
from monitor.store import schema
from monitor.store.views import endpoint_key

CACHE_CAP = 200_000  # entries per dictionary kept in memory (scanners can send endless distinct paths)
_IN_CHUNK = 500

_TABLES: dict[str, tuple[Table, str]] = {
    "client": (schema.clients, "ip"),
    "agent": (schema.agents, "user_agent"),
    "source": (schema.source_names, "name"),
}


class Dictionaries:
    def __init__(self) -> None:
        self._cache: dict[str, dict[Any, int]] = {k: {} for k in (*_TABLES, "endpoint")}
        self._pending: dict[str, dict[Any, int]] = {k: {} for k in self._cache}

    def ids(self, conn: Connection, kind: str, values: Iterable[Any]) -> dict[Any, int]:
        """Return value -> id for `values` (strings, or (method, path) pairs for kind "endpoint")."""
        cache, pending = self._cache[kind], self._pending[kind]
        out: dict[Any, int] = {}
        missing = []
        for v in values:
            found = cache.get(v)
            if found is None:
                found = pending.get(v)
            if found is None:
                missing.append(v)
            else:
                out[v] = found
        if missing:
            new = self._endpoints(conn, missing) if kind == "endpoint" else self._plain(conn, kind, missing)
            pending.update(new)
            out.update(new)
        return out

    def commit(self) -> None:
        for kind, pending in self._pending.items():
            if pending:
                cache = self._cache[kind]
                if len(cache) + len(pending) > CACHE_CAP:
                    cache.clear()
                cache.update(pending)
                pending.clear()

    def discard(self) -> None:
        for pending in self._pending.values():
            pending.clear()

    def _plain(self, conn: Connection, kind: str, values: list[str]) -> dict[str, int]:
        table, column = _TABLES[kind]
        col = table.c[column]
        dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
        conn.execute(
            dialect.insert(table).on_conflict_do_nothing(index_elements=[column]),
            [{column: v} for v in values],
        )
        out: dict[str, int] = {}
        for start in range(0, len(values), _IN_CHUNK):
            chunk = values[start : start + _IN_CHUNK]
            out.update(
                {str(v): int(i) for v, i in conn.execute(select(col, table.c.id).where(col.in_(chunk)))}
            )
        return out

    def _endpoints(self, conn: Connection, pairs: list[tuple[str | None, str | None]]) -> dict[Any, int]:
        e = schema.endpoints
        keys = {endpoint_key(m, p): (m, p) for m, p in pairs}
        dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
        conn.execute(
            dialect.insert(e).on_conflict_do_nothing(index_elements=["key"]),
            [
                {"key": k, "method": m, "path": p, "category": classify(m, p).value}
                for k, (m, p) in keys.items()
            ],
        )
        out: dict[Any, int] = {}
        names = list(keys)
        for start in range(0, len(names), _IN_CHUNK):
            chunk = names[start : start + _IN_CHUNK]
            out.update(
                {keys[k]: int(i) for k, i in conn.execute(select(e.c.key, e.c.id).where(e.c.key.in_(chunk)))}
            )
        return out
