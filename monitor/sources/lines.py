"""Reading lines, the one implementation for live follow (`monitor.sources.files`) and whole-file
reading (`check`, `ingest` and its parse worker in `monitor.ingest.backfill`): open, identify, split, decode.

Facts every reader here follows:
- A file is identified by the fingerprint (sha256) of its first complete lines, as many as hold at least
  MIN_IDENTITY_BYTES (usually the first line alone), or of its first FINGERPRINT_BYTES bytes when the
  first lines are longer; never by an empty or short first line alone, which many files share. A file
  with less than that has no fingerprint yet: it waits (see `identity_prefix`).
  `monitor.ingest.backfill` uses these same definitions, so ingest and the follower share checkpoints.
- Only complete lines are consumed from a live file; a partial last line waits for its newline.
- Positions count real bytes. A line longer than MAX_LINE_BYTES keeps only its first MAX_LINE_BYTES
  bytes in memory (the caller turns it into a reject); its full length still moves the position.
- Bytes become text as UTF-8 with errors="backslashreplace"; NUL bytes are stripped first (counted by
  the callers); a blank line is a skip; a line the decoder raises on is a reject (`decode_raw`).
- Only regular files are opened, and never in a way that can block: a FIFO or a device at a log's path
  is refused (`open_regular`), since open() on a FIFO waits for a writer forever.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import hashlib
import logging
import os
import stat
from collections.abc import Iterable, Iterator
from itertools import accumulate, repeat
from operator import add
from typing import IO, NamedTuple, Protocol

from monitor.core.records import Reject, Request, Skip

log = logging.getLogger("monitor.sources")

MAX_LINE_BYTES = 64 * 1024
FINGERPRINT_BYTES = 4096
MIN_IDENTITY_BYTES = 64  # a file's identity covers at least this many bytes of complete lines
CHUNK_BYTES = 256 * 1024
READ_LINES = 10_000  # lines per read_lines call of whole-file reading
GZIP_MAGIC = b"\x1f\x8b"


def decode_line(raw: bytes) -> str:
    """Bytes of one line (without its newline) -> text; invalid UTF-8 becomes `\\xHH` escapes."""
    return raw.decode("utf-8", "backslashreplace")


def fingerprint_of(prefix: bytes) -> str:
    """Return the fingerprint of the identifying prefix returned by `identity_prefix`."""
    return hashlib.sha256(prefix[:FINGERPRINT_BYTES]).hexdigest()[:32]


def identity_prefix(head: bytes, *, complete: bool = False) -> bytes | None:
    """Given the first bytes of a file (at least FINGERPRINT_BYTES when available), return the bytes
    its fingerprint covers, or None while it has no identity yet.

    The identity is the shortest run of complete first lines that holds at least MIN_IDENTITY_BYTES
    (a log line with its time stamp is longer than that, so for almost every log this is its first
    line, the identity earlier versions used). A short first line (an empty line, a header every
    file of that log starts with) is never an identity alone: the lines after it are part of it.
    When the first lines reach FINGERPRINT_BYTES first, the identity is the first FINGERPRINT_BYTES
    bytes. A file with less than that in complete lines has no identity and waits, unless it is
    `complete` (compressed: it never grows) and has at least one complete line: then all of them.
    """
    end = 0
    while end < MIN_IDENTITY_BYTES:
        nl = head.find(b"\n", end, FINGERPRINT_BYTES)
        if nl < 0:
            if len(head) >= FINGERPRINT_BYTES:
                return head[:FINGERPRINT_BYTES]
            return head[:end] if complete and end else None
        end = nl + 1
    return head[:end]


def legacy_fingerprint(prefix: bytes) -> str | None:
    """The fingerprint version 0.1 gave the file whose identity is `prefix` (its first line alone), when
    it differs from today's; None when it is the same. Checkpoints of an existing
    database are found through it once (`monitor.sources.base.resume_position`)."""
    nl = prefix.find(b"\n")
    if nl < 0 or nl + 1 == len(prefix):
        return None
    return fingerprint_of(prefix[: nl + 1])


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

    def __enter__(self) -> PlainFile:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class StreamFile:
    """A byte stream read as `Readable`: a gzip-compressed rotated log (positions are offsets in the
    decompressed text) or standard input.

    Reads are mostly sequential; the last chunk is cached so that re-reading from the start of an
    unconsumed line does not rewind the stream (a gzip stream seeks backwards by decompressing again;
    a pipe cannot at all, and raises OSError).
    """

    def __init__(self, stream: IO[bytes], *, owned: Iterable[IO[bytes]] = ()) -> None:
        self._stream = stream
        self._owned = [stream, *owned]
        self._pos = 0
        self._cache_start = 0
        self._cache = b""

    def read_at(self, pos: int, n: int) -> bytes:
        end = self._cache_start + len(self._cache)
        if self._cache_start <= pos < end:
            return self._cache[pos - self._cache_start : pos - self._cache_start + n]
        if self._pos != pos:
            self._pos = self._stream.seek(pos)
        data = self._stream.read(n)
        self._cache_start, self._cache = pos, data
        self._pos = pos + len(data)
        return data

    def __enter__(self) -> StreamFile:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        for stream in self._owned:
            with contextlib.suppress(OSError):
                stream.close()


class GzipFile(StreamFile):
    """A gzip-compressed rotated log opened by path (refused unless it is a regular file)."""

    def __init__(self, path: str) -> None:
        raw = os.fdopen(open_regular(path), "rb")
        try:
            stream = gzip.GzipFile(fileobj=raw, mode="rb")
        except BaseException:
            raw.close()
            raise
        super().__init__(stream, owned=[raw])  # type: ignore[arg-type]


def open_file(path: str) -> PlainFile | GzipFile:
    """Open a regular file by path, decompressing gzip; NotRegularFile for a FIFO or a device."""
    fd = open_regular(path)
    if os.pread(fd, 2, 0) != GZIP_MAGIC:
        return PlainFile(fd)
    os.close(fd)
    return GzipFile(path)


class NotRegularFile(OSError):
    """A path that is not a regular file (a FIFO, a device, a socket, a directory): never read it."""

    def __init__(self, path: str, kind: str) -> None:
        super().__init__(errno.EINVAL, f"is {kind}, not a regular file", path)
        self.kind = kind


def open_regular(path: str) -> int:
    """Open a regular file for reading and return its descriptor; raise NotRegularFile otherwise.

    Opened with O_NONBLOCK so that a FIFO (or a device) at the path can never block us in open()
    waiting for a writer: it is then refused after fstat. O_NONBLOCK changes nothing for regular files.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotRegularFile(path, file_kind(mode))
    os.set_blocking(fd, True)
    return fd


def file_kind(mode: int) -> str:
    """Name the kind of a non-regular file for error messages."""
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def is_gzip_path(path: str) -> bool:
    try:
        fd = open_regular(path)
    except OSError:
        return False
    try:
        return os.pread(fd, 2, 0) == GZIP_MAGIC
    finally:
        os.close(fd)


def read_head(source: Readable, n: int = FINGERPRINT_BYTES) -> bytes:
    """Return the first n bytes (fewer when the data is shorter)."""
    out = b""
    while len(out) < n:
        data = source.read_at(len(out), n - len(out))
        if not data:
            break
        out += data
    return out


class RawLine(NamedTuple):
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

    Stops after `max_lines` lines or about `max_bytes` kept bytes (checked once a chunk), or at the end
    of the data. A last line without a newline is returned only when `final` (the file will never
    grow again); otherwise it is left for the next call, and the returned position is its start.
    Memory stays bounded by max_bytes + cap + one chunk, whatever the line lengths.
    """
    lines: list[RawLine] = []
    kept = 0
    line_start = start  # start of the line being assembled
    carry = bytearray()  # its kept bytes so far (at most `cap`), when it began in an earlier chunk
    carry_len = 0  # its full length so far
    scan = start
    while len(lines) < max_lines and kept < max_bytes:
        data = source.read_at(scan, CHUNK_BYTES)
        if not data:
            break
        scan += len(data)
        parts = data.split(b"\n")
        tail = parts.pop()  # after the last newline: the beginning of an unfinished line
        first = 0
        if carry_len and parts:  # the end of a line that began in an earlier chunk
            part = parts[0]
            carry_len += len(part)
            if len(carry) < cap:
                carry += part[: cap - len(carry)]
            line_start = _add_line(lines, line_start, bytes(carry), carry_len)
            kept += len(carry)
            carry.clear()
            carry_len = 0
            first = 1
        room = max_lines - len(lines)
        body = parts[first : first + room]
        if body:
            lens = list(map(len, body))
            if b"\r" in data or max(lens) > cap:
                for part in body:  # the careful way: CRs to strip, lines to cap
                    raw = part if len(part) <= cap else part[:cap]
                    line_start = _add_line(lines, line_start, raw, len(part))
                    kept += len(raw)
            else:  # the usual chunk: every step below runs in C, none per line in Python
                starts = list(accumulate(map(add, lens, repeat(1)), initial=line_start))
                lines.extend(map(tuple.__new__, repeat(RawLine), zip(starts, body, lens, strict=False)))
                line_start = starts[-1]
                kept += sum(lens)
        if len(parts) - first > room or kept >= max_bytes:
            return lines, line_start  # stopped on the budget: the rest is for the next call
        carry_len += len(tail)
        if len(carry) < cap:
            carry += tail[: cap - len(carry)]
    if final and carry_len and len(lines) < max_lines and kept < max_bytes:
        # Only at the true end of the data: a stop on the line budget leaves the tail for next time.
        lines.append(RawLine(line_start, bytes(carry), carry_len))
        line_start += carry_len
    return lines, line_start


def _add_line(lines: list[RawLine], start: int, raw: bytes, length: int) -> int:
    """Append one line (its CR stripped, unless it was capped); return where the next one starts."""
    if length == len(raw) and raw.endswith(b"\r"):
        lines.append(RawLine(start, raw[:-1], length - 1))
    else:
        lines.append(RawLine(start, raw, length))
    return start + length + 1


def iter_lines(source: Readable, start: int = 0, *, final: bool) -> Iterator[tuple[RawLine, int]]:
    """Yield (line, offset of the next line) for every complete line from byte `start` (whole-file
    reading: `check`, `ingest` and its parse worker). A last line without a newline is yielded only
    when `final`."""
    position = start
    while True:
        lines, after = read_lines(source, position, max_lines=READ_LINES, final=final)
        if not lines:
            return
        yield from zip(lines, [line.offset for line in lines[1:]] + [after], strict=True)
        position = after


# --- one line -> one result: the same rule for live follow and backfill ----------------------------


class LineDecoderLike(Protocol):
    """What this module needs of `monitor.parsers.decoder.LineDecoder`."""

    def decode(self, line: str) -> Request | Skip | Reject | None: ...


def decode_safely(decoder: LineDecoderLike, text: str) -> Request | Skip | Reject | None:
    """Run the decoder; a decoder bug on one hostile line becomes a reject, not a dead source."""
    try:
        return decoder.decode(text)
    except Exception as exc:  # noqa: BLE001 - every log byte is attacker-controlled
        log.debug("decoder raised on a line", exc_info=True)
        return Reject(f"decoder error: {type(exc).__name__}")


def decode_raw(
    decoder: LineDecoderLike, line: RawLine, _cap: int = MAX_LINE_BYTES
) -> tuple[Request | Skip | Reject | None, str, bool]:
    """Turn one raw line into (result, its text for a reject sample, whether NUL bytes were stripped).

    - NUL bytes are removed first: a run of them is what a crashed or preallocating writer leaves in
      front of the next real line, and the line after them must not lose its client.
    - A line longer than MAX_LINE_BYTES is a reject ("line too long"); an empty or blank line a skip.
    - Anything the decoder raises is a reject naming the exception (`decode_safely`).
    - None: the decoder holds the line as a part of a split record (Docker's 16 KiB pieces).
    """
    data = line[1]  # .data: indexing is the cheaper spelling on this hot path
    nul = 0 in data  # the int form is a plain memchr: many times cheaper than b"\0" in data
    if nul:
        data = data.replace(b"\0", b"")
    if line[2] > _cap:
        return Reject("line too long"), decode_line(data[:2000]), nul
    text = data.decode("utf-8", "backslashreplace")
    if not text or text.isspace():
        return Skip("blank line"), text, nul
    try:  # as decode_safely, inline: one call a line
        return decoder.decode(text), text, nul
    except Exception as exc:  # noqa: BLE001 - every log byte is attacker-controlled
        log.debug("decoder raised on a line", exc_info=True)
        return Reject(f"decoder error: {type(exc).__name__}"), text, nul


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
        fd = open_regular(path)
        try:
            size = os.fstat(fd).st_size
            return int.from_bytes(os.pread(fd, 4, size - 4), "little") if size >= 4 else None
        finally:
            os.close(fd)
    except OSError:
        return None
