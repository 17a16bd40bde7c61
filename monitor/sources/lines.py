"""Line-reading primitives shared by the live follower (and usable by whole-file ingest).

Facts every reader here follows:
- A file is identified by the fingerprint of its first line: sha256 of the first line including its
  newline, or of the first FINGERPRINT_BYTES bytes when the first line is longer. A file with neither
  (no complete first line yet, and shorter than that) has no fingerprint: it waits.
  `monitor.ingest` uses these same definitions, so ingest and the follower share checkpoints.
- Only complete lines are consumed from a live file; a partial last line waits for its newline.
- Positions count real bytes. A line longer than MAX_LINE_BYTES keeps only its first MAX_LINE_BYTES
  bytes in memory (the caller turns it into a reject); its full length still moves the position.
- Bytes become text as UTF-8 with errors="backslashreplace".
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
from dataclasses import dataclass
from typing import Protocol

MAX_LINE_BYTES = 64 * 1024
FINGERPRINT_BYTES = 4096
CHUNK_BYTES = 256 * 1024
GZIP_MAGIC = b"\x1f\x8b"


def decode_line(raw: bytes) -> str:
    """Bytes of one line (without its newline) -> text; invalid UTF-8 becomes `\\xHH` escapes."""
    return raw.decode("utf-8", "backslashreplace")


def fingerprint_of(prefix: bytes) -> str:
    """Return the fingerprint of the identifying prefix returned by `identity_prefix`."""
    return hashlib.sha256(prefix[:FINGERPRINT_BYTES]).hexdigest()[:32]


def identity_prefix(head: bytes) -> bytes | None:
    """Given the first bytes of a file (at least FINGERPRINT_BYTES when available), return the bytes
    its fingerprint covers: the first line with its newline, or the first FINGERPRINT_BYTES bytes;
    None when the file has no complete first line and is shorter than that."""
    nl = head.find(b"\n", 0, FINGERPRINT_BYTES)
    if nl >= 0:
        return head[: nl + 1]
    if len(head) >= FINGERPRINT_BYTES:
        return head[:FINGERPRINT_BYTES]
    return None


class Readable(Protocol):
    """Random-access byte reads: `read_at(pos, n)` returns up to n bytes at pos, b"" at end of data."""

    def read_at(self, pos: int, n: int) -> bytes: ...


class PlainFile:
    """A regular file read through an already open descriptor (it survives renames and deletion)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def read_at(self, pos: int, n: int) -> bytes:
        return os.pread(self.fd, n, pos)

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class GzipFile:
    """A gzip-compressed rotated log; positions are offsets in the decompressed text.

    Reads are mostly sequential; the last chunk is cached so that re-reading from the start of an
    unconsumed line does not rewind the (expensive to seek backwards) decompressor.
    """

    def __init__(self, path: str) -> None:
        self._gz = gzip.open(path, "rb")  # noqa: SIM115 - lives as long as this reader; close() closes it
        self._cache_start = 0
        self._cache = b""

    def read_at(self, pos: int, n: int) -> bytes:
        end = self._cache_start + len(self._cache)
        if self._cache_start <= pos < end:
            return self._cache[pos - self._cache_start : pos - self._cache_start + n]
        if self._gz.tell() != pos:
            self._gz.seek(pos)
        data = self._gz.read(n)
        self._cache_start, self._cache = pos, data
        return data

    def close(self) -> None:
        self._gz.close()


def is_gzip_path(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(2) == GZIP_MAGIC
    except OSError:
        return False


def read_head(source: Readable, n: int = FINGERPRINT_BYTES) -> bytes:
    """Return the first n bytes (fewer when the data is shorter)."""
    out = b""
    while len(out) < n:
        data = source.read_at(len(out), n - len(out))
        if not data:
            break
        out += data
    return out


@dataclass(frozen=True, slots=True)
class RawLine:
    """One complete line: where it starts, its kept bytes (newline and CR stripped) and its full length."""

    offset: int
    data: bytes
    length: int  # bytes of the line without its newline; > len(data) when it was capped

    @property
    def too_long(self) -> bool:
        return self.length > MAX_LINE_BYTES


def read_lines(
    source: Readable,
    start: int,
    *,
    max_lines: int,
    max_bytes: int = 8 * 1024 * 1024,
    final: bool = False,
    cap: int = MAX_LINE_BYTES,
) -> tuple[list[RawLine], int]:
    """Read complete lines from byte `start`; return (lines, position after the last one returned).

    Stops after `max_lines` lines or about `max_bytes` kept bytes, or at the end of the data. A last
    line without a newline is returned only when `final` (the file will never grow again); otherwise
    it is left for the next call, and the returned position is its start. Memory stays bounded by
    max_bytes + cap + one chunk, whatever the line lengths.
    """
    lines: list[RawLine] = []
    kept = 0
    line_start = start  # start of the line being assembled
    carry = bytearray()  # its kept bytes so far (at most `cap`)
    carry_len = 0  # its full length so far
    scan = start
    while len(lines) < max_lines and kept < max_bytes:
        data = source.read_at(scan, CHUNK_BYTES)
        if not data:
            break
        scan += len(data)
        parts = data.split(b"\n")
        tail = parts.pop()  # after the last newline: the beginning of an unfinished line
        stop = False
        for part in parts:
            carry_len += len(part)
            if len(carry) < cap:
                carry += part[: cap - len(carry)]
            raw = bytes(carry)
            length = carry_len
            if raw.endswith(b"\r") and length == len(raw):
                raw, length = raw[:-1], length - 1
            lines.append(RawLine(line_start, raw, length))
            kept += len(raw)
            line_start += carry_len + 1
            carry.clear()
            carry_len = 0
            if len(lines) >= max_lines or kept >= max_bytes:
                stop = True
                break
        if stop:
            return lines, line_start
        carry_len += len(tail)
        if len(carry) < cap:
            carry += tail[: cap - len(carry)]
    if final and carry_len and len(lines) < max_lines and kept < max_bytes:
        # Only at the true end of the data: a stop on the line budget leaves the tail for next time.
        lines.append(RawLine(line_start, bytes(carry), carry_len))
        line_start += carry_len
    return lines, line_start


def end_of_last_line(source: Readable, size: int) -> int:
    """Return the position just after the last newline before `size` (0 when there is none)."""
    pos = size
    while pos > 0:
        step = min(CHUNK_BYTES, pos)
        data = source.read_at(pos - step, step)
        nl = data.rfind(b"\n")
        if nl >= 0:
            return pos - step + nl + 1
        pos -= step
    return 0


def gzip_size_hint(path: str) -> int | None:
    """Return the decompressed size recorded in a gzip trailer (modulo 4 GiB), or None."""
    try:
        with open(path, "rb") as fh:
            fh.seek(-4, os.SEEK_END)
            return int.from_bytes(fh.read(4), "little")
    except OSError:
        return None
