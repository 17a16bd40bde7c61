"""The `window_state` table: which windows were computed, and from how many stored requests.

One row per window start: `requests` is how many requests (of every source) the store held in that
window when its feature rows were last computed. A window whose stored count has grown since (a
backlog caught up, a log ingested later or again under another `--source`) is computed again; one
whose count shrank (retention pruned its raw rows) is left alone, its feature rows outlive them.

Created if missing when first used (`ensure`), beside the tables of monitor.store.schema; meant to be
folded into the next schema migration.
"""

from __future__ import annotations

import weakref

from sqlalchemy import BigInteger, Column, DateTime, MetaData, Table

from monitor.store import Store

metadata = MetaData()

window_state = Table(
    "window_state",
    metadata,
    Column("window_start", DateTime(timezone=True), primary_key=True),
    Column("requests", BigInteger, nullable=False),
    Column("computed_at", DateTime(timezone=True), nullable=False),
)

_ready: weakref.WeakSet[object] = weakref.WeakSet()


def ensure(store: Store) -> None:
    """Create the table if this database lacks it (once per engine)."""
    if store.engine in _ready:
        return
    with store.engine.begin() as conn:
        metadata.create_all(conn)
    _ready.add(store.engine)
