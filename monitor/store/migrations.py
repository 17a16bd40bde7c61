"""Schema migrations: STEPS[n] upgrades a database from version n to n + 1.

`Store.open` creates missing tables with `metadata.create_all` (new tables need no step) and runs the
steps between the stored version and `schema.SCHEMA_VERSION` for changes to existing tables.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Connection

from monitor.errors import StoreError

STEPS: dict[int, Callable[[Connection], None]] = {}


def migrate(conn: Connection, current: int) -> None:
    from monitor.store.schema import SCHEMA_VERSION

    for version in range(current, SCHEMA_VERSION):
        step = STEPS.get(version)
        if step is None:
            raise StoreError(f"no migration from schema version {version} to {version + 1}")
        step(conn)
