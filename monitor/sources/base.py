"""What every live source hands the daemon: batches of decoded lines with the checkpoint covering them.

A follower's `read(budget)` returns uncommitted Batches; `commit(store, batch)` stores one (rows,
rejects and checkpoint in one transaction) and only then advances the follower's committed state.
A batch read but never committed (a crash, a kill) is simply read again after a restart: the
checkpoint was not moved, and the unique (file_id, line_offset) key makes any replay add nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from monitor import parsers
from monitor.config import SourceSettings, tzinfo_for
from monitor.core.records import Checkpoint, Reject, Request, Skip
from monitor.sources.lines import decode_safely, legacy_fingerprint

__all__ = [
    "Batch",
    "Decoder",
    "DecoderFactory",
    "add_result",
    "commit",
    "decode_safely",
    "default_decoder",
    "resume_position",
]

if TYPE_CHECKING:
    from monitor.store import Store

log = logging.getLogger("monitor.sources")


class Decoder(Protocol):
    """What the follower needs from `monitor.parsers.decoder.LineDecoder`."""

    def decode(self, line: str) -> Request | Skip | Reject | None: ...


DecoderFactory = Callable[[SourceSettings], Decoder]


def default_decoder(source: SourceSettings) -> Decoder:
    """Build the project's LineDecoder for a source (format, time zone, trusted proxies). Docker
    json-file records need no option: the decoder recognises them (and every other wrapper) per line."""
    from monitor.parsers.decoder import LineDecoder

    ctx = parsers.ParseContext.build(
        tz=tzinfo_for(source.timezone),
        trusted_proxies=source.trusted_proxies,
        json_fields=source.json_fields.model_dump(),
    )
    return LineDecoder(source.format, ctx)


@dataclass
class Batch:
    """Decoded lines of one file (or journal) and the checkpoint that covers exactly them."""

    source: str
    file_id: int
    checkpoint: Checkpoint
    parsed: list[tuple[int, Request]] = field(default_factory=list)
    rejects: list[tuple[int, str, str]] = field(default_factory=list)
    skipped: int = 0
    lines: int = 0  # raw lines consumed (parsed + rejected + skipped + held parts)
    on_commit: Callable[[], None] | None = None  # advances the follower's committed state

    @property
    def requests(self) -> list[Request]:
        return [r for _, r in self.parsed]


def commit(store: Store, batch: Batch) -> None:
    """Store a batch in one transaction, then tell its follower it is durable."""
    store.add_batch(
        batch.source, batch.file_id, batch.parsed, batch.rejects, batch.checkpoint, skipped=batch.skipped
    )
    if batch.on_commit is not None:
        batch.on_commit()


def add_result(batch: Batch, offset: int, result: Request | Skip | Reject, text: str) -> None:
    if isinstance(result, Request):
        batch.parsed.append((offset, result))
    elif isinstance(result, Reject):
        batch.rejects.append((offset, result.reason, text[:2000]))
    else:
        batch.skipped += 1


# --- checkpoints of databases written by version 0.1 ----------------------------------------------------
# Version 0.1 identified a file by its first line alone. For files whose first line is long enough (almost
# all logs) the identity is unchanged; a file whose first line is short (empty, a header) now has a
# longer identity, and its old checkpoint is found once through the old fingerprint, then carried over.


def _carried_key(source: str, legacy: str) -> str:
    return "fp-carried:" + hashlib.sha256(f"{source}\0{legacy}".encode()).hexdigest()[:40]


def resume_position(
    store: Store, source: str, fp: str, prefix: bytes, path: str, size: int | None
) -> int | None:
    """Return the committed position of the file identified by (fp, prefix), or None if unknown.

    When there is no checkpoint for `fp` but there is one for the fingerprint version 0.1 gave the
    same file (`legacy_fingerprint`), that one is carried over: its position is saved under `fp`
    first, then the old checkpoint is marked as carried, so that it is used once only (another file
    starting with the same short line must not inherit it). A position beyond `size` (the file is
    shorter: it is not the file that checkpoint was about) is never carried.
    """
    saved = store.checkpoint(source, fp)
    if saved is not None:
        return saved.position
    legacy = legacy_fingerprint(prefix)
    if legacy is None:
        return None
    key = _carried_key(source, legacy)
    if store.get_meta(key) is not None:
        return None
    old = store.checkpoint(source, legacy)
    if old is None or (size is not None and old.position > size):
        return None
    checkpoint = Checkpoint(source, fp, old.position, path)
    store.add_batch(source, store.file_id(source, fp, path), [], [], checkpoint)
    store.set_meta(key, fp)
    log.info("source %s: carried the checkpoint of %s over to its new fingerprint", source, path)
    return old.position


# --- where a source started following -------------------------------------------------------------
# The first start of a source (start_at = end | beginning) is recorded in the store's meta table, so that a
# restart never mistakes itself for a first start (and never skips lines written while it was down).


def _start_key(source: str) -> str:
    key = f"follow-start:{source}"
    if len(key) <= 64:
        return key
    return "follow-start:#" + hashlib.sha256(source.encode()).hexdigest()[:40]


@dataclass
class StartRecord:
    """When a source was first followed (unix time) and the positions chosen then, by fingerprint."""

    at: float
    positions: dict[str, int] = field(default_factory=dict)
    cursor: str | None = None


def load_start(store: Store, source: str) -> StartRecord | None:
    raw = store.get_meta(_start_key(source))
    if raw is None:
        return None
    try:
        data: dict[str, Any] = json.loads(raw)
        return StartRecord(
            float(data["at"]),
            {str(k): int(v) for k, v in data.get("positions", {}).items()},
            data.get("cursor"),
        )
    except (ValueError, KeyError, TypeError):
        log.warning(
            "source %s: unreadable start record in the database; treating the source as started", source
        )
        return StartRecord(0.0)


def save_start(store: Store, source: str, record: StartRecord) -> None:
    payload = {"at": record.at, "positions": record.positions, "cursor": record.cursor}
    store.set_meta(_start_key(source), json.dumps(payload, sort_keys=True))


def new_start_record() -> StartRecord:
    return StartRecord(time.time())
