"""The database schema: SQLAlchemy Core tables, portable between SQLite and PostgreSQL.

Documented for users in README.md ("The database"). Timestamps are UTC. Requests are stored compact
(`request_rows`: integer microseconds, dictionary ids) and read through the `requests` view, whose
columns are the documented ones; other timestamps are stored as SQLAlchemy DateTime (ISO text on
SQLite, `2025-03-21 08:52:32.000000`, readable and sortable with the `sqlite3` shell).
Bump SCHEMA_VERSION and add a step to `monitor.store.migrations.STEPS` for every change.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

SCHEMA_VERSION = 2

metadata = MetaData()

# A row per key; holds the schema version and small daemon facts (last heartbeat, ...).
meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# A file (or journal stream) as identified by its content: the fingerprint of its first line.
files = Table(
    "files",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(200), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("path", Text, nullable=False),
    Column("first_seen", DateTime(timezone=True), nullable=False),
    UniqueConstraint("source", "fingerprint", name="uq_files_source_fingerprint"),
)

# Every request. `id` is the line's key, (file_id << 40) | line_offset: unique per line, so re-reading a
# line after a crash adds nothing, and the primary key doubles as the uniqueness check (one index fewer
# to maintain on the hot insert path). file_id and line_offset are derived from it in the view.
LINE_OFFSET_BITS = 40  # a single log file of up to 1 TiB
LINE_OFFSET_MASK = (1 << LINE_OFFSET_BITS) - 1


def line_key(file_id: int, line_offset: int) -> int:
    return (file_id << LINE_OFFSET_BITS) | line_offset


_ID = BigInteger().with_variant(Integer, "sqlite")  # INTEGER PRIMARY KEY is SQLite's rowid itself

# Dictionaries of the text every request repeats: each distinct value is stored once, rows hold its id.
clients = Table(
    "clients",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("ip", String(64), nullable=False, unique=True),
)
agents = Table(
    "agents",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("user_agent", Text, nullable=False, unique=True),
)
source_names = Table(
    "source_names",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
)
# A (method, path) pair as logged, with its category (monitor.core.endpoints) decided once. `key` makes the
# pair unique including NULLs (a line without a request line has neither).
endpoints = Table(
    "endpoints",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("key", Text, nullable=False, unique=True),
    Column("method", String(32)),
    Column("path", Text),
    Column("category", String(16), nullable=False),
)

# The stored requests, compact: integer time (microseconds since the Unix epoch, UTC) and dictionary ids.
# Read them through the `requests` view below, which gives the documented columns.
request_rows = Table(
    "request_rows",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=False),
    Column("ts", BigInteger, nullable=False),
    Column("client_id", Integer, nullable=False),
    Column("endpoint_id", Integer, nullable=False),
    Column("status", Integer),
    Column("latency_ms", Float),
    Column("bytes_sent", BigInteger),
    Column("agent_id", Integer),
    Column("forwarded_for", Text),
    Column("peer_ip", String(64)),
    Column("source_id", Integer, nullable=False),
    Index("ix_request_rows_ts", "ts"),
)

# Per (UTC day, client, source) totals, kept in the same transaction as the rows they count, and longer
# than the rows ([retention] rollup_days). `hours` is a bit mask of the UTC hours of day with requests.
client_days = Table(
    "client_days",
    metadata,
    Column("day", Integer, primary_key=True, autoincrement=False),  # days since 1970-01-01
    Column("client_id", Integer, primary_key=True, autoincrement=False),
    Column("source_id", Integer, primary_key=True, autoincrement=False),
    Column("requests", BigInteger, nullable=False),
    Column("inference", BigInteger, nullable=False),
    Column("enumeration", BigInteger, nullable=False),
    Column("management", BigInteger, nullable=False),
    Column("account", BigInteger, nullable=False),
    Column("other", BigInteger, nullable=False),
    Column("ok", BigInteger, nullable=False),  # 2xx
    Column("s401", BigInteger, nullable=False),
    Column("s403", BigInteger, nullable=False),
    Column("errors_4xx", BigInteger, nullable=False),
    Column("errors_5xx", BigInteger, nullable=False),
    Column("bytes_sent", BigInteger, nullable=False),
    Column("sized", BigInteger, nullable=False),  # requests that logged a size
    Column("first_ts", BigInteger, nullable=False),
    Column("last_ts", BigInteger, nullable=False),
    Column("hours", BigInteger, nullable=False),
)

# Requests per (UTC hour, source): the summary's hour-of-day and weekday heat map.
source_hours = Table(
    "source_hours",
    metadata,
    Column("hour", Integer, primary_key=True, autoincrement=False),  # hours since the epoch
    Column("source_id", Integer, primary_key=True, autoincrement=False),
    Column("requests", BigInteger, nullable=False),
)

# The documented read contract: `requests` is a view over the tables above (created by
# monitor.store.views), described here for SELECTs only; it lives outside `metadata`, so create_all
# never makes it a table. On SQLite `ts` is the text `2025-03-21 08:52:32.000000` (UTC).
view_metadata = MetaData()
requests = Table(
    "requests",
    view_metadata,
    Column("id", BigInteger, primary_key=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("client_ip", String(64), nullable=False),
    Column("method", String(32)),
    Column("path", Text),
    Column("status", Integer),
    Column("latency_ms", Float),
    Column("bytes_sent", BigInteger),
    Column("user_agent", Text),
    Column("forwarded_for", Text),
    Column("peer_ip", String(64)),
    Column("source", String(200), nullable=False),
    Column("file_id", Integer, nullable=False),
    Column("line_offset", BigInteger, nullable=False),
)


def ts_key(value: datetime) -> int:
    """Return the stored integer time of an aware datetime (a naive one is taken as UTC): microseconds
    since the Unix epoch, exactly (no float rounding)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_ts_key(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US_PER_HOUR = 3_600_000_000
US_PER_DAY = 24 * US_PER_HOUR

# Lines that should have been requests but could not be parsed: counted, kept (capped), never fatal.
rejects = Table(
    "rejects",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("source", String(200), nullable=False),
    Column("file_id", Integer, ForeignKey("files.id"), nullable=False),
    Column("line_offset", BigInteger, nullable=False),
    Column("reason", String(200), nullable=False),
    Column("line", Text, nullable=False),  # capped at REJECT_LINE_CAP characters
    Column("seen_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("file_id", "line_offset", name="uq_rejects_line"),
)

# How far each source has read. Written in the same transaction as the rows it covers.
checkpoints = Table(
    "checkpoints",
    metadata,
    Column("source", String(200), primary_key=True),
    Column("fingerprint", String(64), primary_key=True),
    Column("path", Text, nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("cursor", Text),  # journald cursor, for journal sources
    Column("lines", BigInteger, nullable=False, default=0),
    Column("rejected", BigInteger, nullable=False, default=0),
    Column("skipped", BigInteger, nullable=False, default=0),
    Column("last_line_ts", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Sources an admin approved with `sources approve` (beside the config's allow-list).
approvals = Table(
    "approvals",
    metadata,
    Column("network", String(64), primary_key=True),
    Column("note", Text, nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Every alert the rules or the detector raised (after dedup), kept for summaries and `alerts list`.
alerts = Table(
    "alerts",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("rule", String(64), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("key", String(300), nullable=False),
    Column("client_ips", Text, nullable=False),  # JSON list
    Column("title", Text, nullable=False),
    Column("message", Text, nullable=False),
    Column("details", Text, nullable=False, default="{}"),  # JSON
    Column("created_at", DateTime(timezone=True), nullable=False),
    Index("ix_alerts_ts", "ts"),
    Index("ix_alerts_key", "key"),
)

# Durable outbox: one row per (notification, service). Stored before sending; retried with backoff.
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("notification_id", String(64), nullable=False),
    Column("service", String(300), nullable=False),  # index into the configured targets, never the URL
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("severity", String(16), nullable=False),
    Column(
        "state", String(16), nullable=False
    ),  # pending | sending (claimed; next_attempt_at = lease end) | sent | failed (gave up)
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("sent_at", DateTime(timezone=True)),
    UniqueConstraint("notification_id", "service", name="uq_outbox_notification_service"),
    Index("ix_outbox_state_next", "state", "next_attempt_at"),
)

# Per-(client, window) feature rows and their scores, kept longer than raw requests.
windows = Table(
    "windows",
    metadata,
    Column("client_ip", String(64), primary_key=True),
    Column("window_start", DateTime(timezone=True), primary_key=True),
    Column("features", Text, nullable=False),  # JSON: feature name -> value
    Column("score", Float),
    Column("anomalous", Boolean),
    Column("explanation", Text),
    Index("ix_windows_start", "window_start"),
)

# Which windows were computed, and from how many stored requests: one row per window start, `requests`
# being how many requests (of every source) the store held in that window when its feature rows were
# last computed. A window whose stored count has grown since (a backlog caught up, a log ingested later
# or again under another `--source`) is computed again; one whose count shrank (retention pruned its
# raw rows) is left alone, its feature rows outlive them. Windows migrated from schema 1 have feature
# rows and no state: the detector adopts them as they are (monitor.detect.scoring.missing_windows).
window_state = Table(
    "window_state",
    metadata,
    Column("window_start", DateTime(timezone=True), primary_key=True),
    Column("requests", BigInteger, nullable=False),
    Column("computed_at", DateTime(timezone=True), nullable=False),
)
