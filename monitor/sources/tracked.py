"""What the file follower keeps per open file, and how it recognises a rotated sibling."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from monitor.sources import lines as L
from monitor.sources.base import Decoder


def is_sibling(base: str, name: str) -> bool:
    """True when `name` looks like a rotated copy of the log named `base` (same directory)."""
    if name == base:
        return False
    if name.startswith(base) and name[len(base)] in ".-_":
        return True
    stem, dot, ext = base.rpartition(".")
    if dot and stem:  # Windows desktop app: server.log -> server-1.log
        return re.fullmatch(re.escape(stem) + r"-\d+\." + re.escape(ext) + r"(\.gz)?", name) is not None
    return False


@dataclass(eq=False)
class Tracked:
    """An open file we are reading: by fingerprint, with read (in memory) and committed positions."""

    reader: L.PlainFile | L.GzipFile
    dev_ino: tuple[int, int]
    path: str
    fp: str
    prefix: bytes
    file_id: int
    read_pos: int
    commit_pos: int
    decoder: Decoder
    last_growth: float
    pending_start: int | None = None  # first line of a split record the decoder still holds
    eof: bool = False

    @property
    def gz(self) -> bool:
        return isinstance(self.reader, L.GzipFile)

    def prefix_ok(self) -> bool:
        if isinstance(self.reader, L.GzipFile):
            return True
        return os.pread(self.reader.fd, len(self.prefix), 0) == self.prefix


def holding(decoder: Decoder) -> bool:
    """True while the decoder holds parts of a split record (of any stream): LineDecoder's public
    `holding`. A decoder without that property (one that never joins split records) never holds."""
    return bool(getattr(decoder, "holding", False))
