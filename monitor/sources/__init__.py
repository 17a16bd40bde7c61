"""Live log sources: files followed by path (watchdog wake-ups plus polling) and journald units.

A follower offers `read(budget) -> list[Batch]`, `rewind()`, `close()`, `fileno()` (a pipe to wait
on, or None) and `watch_targets()` (directories to watch for wake-ups); batches are stored with
`commit(store, batch)`. Followers own no threads or timers: `monitor.service.daemon` drives them.
Reusable pieces for whole-file reading live in `monitor.sources.lines` (fingerprint, line reader).
watchdog is imported in this package only (`monitor.sources.watch`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from monitor.config import SourceSettings
from monitor.sources.base import Batch, DecoderFactory, commit, default_decoder

if TYPE_CHECKING:
    from monitor.store import Store


class Follower(Protocol):
    source: SourceSettings
    name: str
    more: bool

    def read(self, budget: int) -> list[Batch]: ...
    def rewind(self) -> None: ...
    def close(self) -> None: ...
    def fileno(self) -> int | None: ...
    def watch_targets(self) -> dict[str, set[str]]: ...


def make_follower(
    source: SourceSettings, store: Store, decoder_factory: DecoderFactory = default_decoder
) -> Follower:
    """Return the follower for a configured source: a journal unit or a file path."""
    if source.journal_unit is not None:
        from monitor.sources.journald import JournalFollower

        return JournalFollower(source, store, decoder_factory=decoder_factory)
    from monitor.sources.files import FileFollower

    return FileFollower(source, store, decoder_factory=decoder_factory)


__all__ = ["Batch", "Follower", "commit", "default_decoder", "make_follower"]
