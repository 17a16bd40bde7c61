"""Ollama's own access lines: the Gin logger that `gin.Default()` installs.

Gin writes one line per request when the request ends, with the format
`[GIN] %v |%s %3d %s| %13v | %15s |%s %-7s %s %#v\\n%s`:

    [GIN] 2025/03/21 - 08:52:32 | 200 |    1.3560275s |       127.0.0.1 | POST     "/api/pull"

Given one line (wrappers such as journald or Docker already peeled off), `parse` returns:

- a `Request` for a line holding a `[GIN] ` record, wherever it starts: an unknown prefix before it
  (`docker logs -t` stamps, `[0] ` of a process manager, a spinner, indentation) is ignored; every padding is accepted (13-column latency of older Gin, 8 columns
  of Gin v1.12, 15-column client widened by long IPv6), with or without ANSI colours around the status
  and the method;
- `Skip` for everything else the Ollama process writes (`[GIN-debug]` route tables, slog lines
  `time=... level=INFO source=... msg=...`, Gin's `Error #01: ...` follow-up lines, llama.cpp output);
- `Reject(reason)` for a line that holds `[GIN]` but cannot be read: never a silent skip.

Field choices:
- `ts` is the logged time, which is the END of the request (Gin logs on completion); start = ts - latency.
  The line has no zone: it is read in `ctx.tz` and converted to UTC. A local time that occurs twice (DST
  fall-back) is read as the first occurrence; one that does not exist (spring-forward) as zoneinfo does.
- `client_ip` is Gin's `ClientIP()`, which already prefers the left-most `X-Forwarded-For`/`X-Real-IP`
  (Gin trusts every proxy by default): it is stored as the client and `forwarded_for` stays None.
  Gin logs an empty client when the peer has no IP (a unix socket, or a forged empty header): stored
  as the empty string, which no allow-list matches, so the rules report it as an unknown client.
- `path` is the Go-quoted path with its query, unquoted to the real text; `\\xHH` bytes that do not form
  UTF-8 stay as the text `\\xHH` (the project's backslash-escaped decoding of bytes), so the result
  never holds surrogates.
- `latency_ms` is a float from the Go duration (`0s`, `23.668µs`/`us`, `605.647173ms`, `1h2m3s`...).
  Gin truncates latencies over a minute to whole seconds.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, tzinfo

from monitor.core.records import ParseResult, Reject, Request, Skip
from monitor.parsers.context import Format, ParseContext, canonical_ip

_NOT_REQUEST = Skip("not a gin access line")
# `[GIN]` followed by what an access record has next; anything else holding `[GIN` is not Gin's.
_GIN_WORD = re.compile(r"\[GIN\]").match
_DEBUG = Skip("gin debug line")

_ANSI = r"(?:\x1b\[[0-9;]*m)?"
# Possessive quantifiers and deterministic separators keep this linear on hostile 10 MB lines.
_HEAD = re.compile(
    r"\[GIN\] (\d{4})/(\d\d)/(\d\d) - (\d\d):(\d\d):(\d\d) "
    r"\|" + _ANSI + r" *+(\d{1,3}) *+" + _ANSI + r"\|"  # status, maybe coloured
    # latency, right-aligned in 13 (old) or 8 (Gin v1.12) columns: one unit (read here) or more
    r" *+(?:(\d+(?:\.\d+)?)(ns|us|µs|μs|ms|s)|([^\s|]+)) \|"
    r" *+([^\s|]*) ?\|"  # client, right-aligned in 15 columns, may be empty
    r"" + _ANSI + r" ([^\s|\x1b\"]+) *+(?:\x1b\[[0-9;]*m *+)?",  # method, padded to 7, maybe coloured
    re.ASCII,  # digits are ASCII digits
)

_LATENCY_ALL = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+", re.ASCII)
_LATENCY_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)", re.ASCII)
_UNIT_MS = {
    "ns": 1e-6,
    "us": 1e-3,
    "µs": 1e-3,  # U+00B5, what Go prints
    "μs": 1e-3,  # U+03BC, which Go also accepts
    "ms": 1.0,
    "s": 1000.0,
    "m": 60_000.0,
    "h": 3_600_000.0,
}

# The body of a Go-quoted string: unrolled so that a 10 MB path is matched in linear time.
_QUOTED = re.compile(r'"([^"\\]*+(?:\\.[^"\\]*+)*+)"', re.S)
# Every alternative starts with the literal backslash, so the engine skips to the next one quickly.
_ESCAPE = re.compile(
    r"\\(?:(?P<b>(?:x[0-9a-fA-F]{2}|[0-7]{3})(?:\\(?:x[0-9a-fA-F]{2}|[0-7]{3}))*)"
    r"|u(?P<u>[0-9a-fA-F]{4})|U(?P<U>[0-9a-fA-F]{8})|(?P<c>.))",
    re.S,
)
# After removing the `\\` pairs, may the unicode_escape codec read the escapes? With byte escapes
# (`\xHH` are bytes to Go, code points to the codec), or with rune escapes (never a surrogate).
_NOT_BYTES_SAFE = re.compile(r"\\(?![abfnrtv\"']|x[0-9a-fA-F]{2})")
_NOT_RUNES_SAFE = re.compile(r"\\(?![abfnrtv\"']|u(?![dD][89a-fA-F])[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})")
_SIMPLE = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
}

_TIME_CACHE: dict[tuple[tzinfo, str], datetime] = {}
_TIME_CACHE_MAX = 100_000


def sniff(line: str) -> bool:
    """Return True when the line holds Gin's output (an access record or a `[GIN-debug]` line)."""
    return line.startswith("[GIN") or "[GIN] " in line or "[GIN-debug]" in line


def parse(line: str, ctx: ParseContext) -> ParseResult:
    """Given one unwrapped line, return a Request, Skip or Reject as described in the module doc."""
    if not line.startswith("[GIN] "):
        # The record is found, not matched by prefix: whatever a log viewer, process manager or
        # shipper put before it (an RFC 3339 stamp, `[0] `, a spinner, indentation) is ignored.
        at = line.find("[GIN")
        if at < 0:
            return _NOT_REQUEST
        if line.startswith("[GIN] ", at):
            line = line[at:]
        elif line.startswith("[GIN-debug]", at):
            return _DEBUG
        else:
            return Reject("gin: unexpected line shape") if _GIN_WORD(line, at) else _NOT_REQUEST
    m = _HEAD.match(line)
    if m is None:
        return Reject("gin: unexpected line shape")
    ts = _end_time(line[6:27], ctx.tz)
    if ts is None:
        return Reject("gin: bad timestamp")
    if m[8] is not None:
        latency: float | None = float(m[8]) * _UNIT_MS[m[9]]
    else:
        latency = _latency_ms(m[10])
    if latency is None or latency == math.inf:
        return Reject("gin: bad latency")
    client_text = m[11]
    if client_text:
        client = canonical_ip(client_text)
        if client is None:
            return Reject("gin: bad client address")
    else:
        client = ""  # no address (a unix-socket peer): an unknown client, still stored and counted
    rest = m.end()
    if line.startswith('"', rest):
        path = _unquote(line, rest)
        if path is None:
            return Reject("gin: unterminated path")
    else:
        # Gin before 1.4 printed the path unquoted; take the rest of the line.
        path = line[rest:].rstrip()
    return Request(ts, client, m[12], path, int(m[7]), latency)


def _end_time(stamp: str, tz: tzinfo) -> datetime | None:
    """Given `YYYY/MM/DD - HH:MM:SS` in zone tz, return the aware UTC time, cached per second."""
    key = (tz, stamp)
    hit = _TIME_CACHE.get(key)
    if hit is not None:
        return hit
    try:
        local = datetime(
            int(stamp[0:4]), int(stamp[5:7]), int(stamp[8:10]),
            int(stamp[13:15]), int(stamp[16:18]), int(stamp[19:21]), tzinfo=tz,
        )  # fmt: skip
        value = local.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    if len(_TIME_CACHE) >= _TIME_CACHE_MAX:
        _TIME_CACHE.clear()
    _TIME_CACHE[key] = value
    return value


def _latency_ms(text: str) -> float | None:
    """Given a Go duration (`0s`, `23.668µs`, `1h2m3s`...), return milliseconds, or None if malformed."""
    if _LATENCY_ALL.fullmatch(text) is None:
        return None
    value = sum(float(num) * _UNIT_MS[unit] for num, unit in _LATENCY_PART.findall(text))
    return value if math.isfinite(value) else None


def _unquote(line: str, start: int) -> str | None:
    """Given line[start] == '"', return the Go-unquoted string that starts there, or None if unterminated."""
    end = line.find('"', start + 1)
    if end > 0 and line.find("\\", start + 1, end) < 0:
        return line[start + 1 : end]  # the common case: no escapes
    m = _QUOTED.match(line, start)
    if m is None:
        return None
    body = m[1]
    if "\\" not in body:
        return body
    # Two paths all in C for what Go writes (about 10x faster than `_unescape`, same result):
    escapes = body.replace("\\\\", "")
    try:
        if _NOT_BYTES_SAFE.search(escapes) is None:
            # Raw characters pass as UTF-8, `\xHH` become bytes via Latin-1, and the bytes are read as
            # UTF-8 the way the project reads files.
            raw = body.encode("utf-8").decode("unicode_escape").encode("latin-1")
            return raw.decode("utf-8", "backslashreplace")
        if _NOT_RUNES_SAFE.search(escapes) is None:
            # Raw non-ASCII characters become escapes that the codec turns back into themselves.
            return body.encode("ascii", "backslashreplace").decode("unicode_escape")
    except UnicodeError:
        pass  # surrogates in the text, or \U beyond Unicode: take the careful path
    return _ESCAPE.sub(_unescape, body)


def _unescape(m: re.Match[str]) -> str:
    run = m["b"]
    if run is not None:
        # A run of byte escapes is decoded together so that `\xe2\x82\xac` becomes one "€".
        run = m[0]  # `\xHH` and `\ooo` escapes are all four characters long
        data = bytes(
            int(run[i + 2 : i + 4], 16) if run[i + 1] == "x" else int(run[i + 1 : i + 4], 8) & 0xFF
            for i in range(0, len(run), 4)
        )
        return data.decode("utf-8", "backslashreplace")
    hexdigits = m["u"] or m["U"]
    if hexdigits is not None:
        code = int(hexdigits, 16)
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            return m[0]  # not a character: keep the escape text rather than make a surrogate
        return chr(code)
    char = m["c"]
    return _SIMPLE.get(char, "\\" + char)


FORMATS = (Format("ollama", parse, sniff, "Ollama's Gin access log (journald, server.log, Docker)"),)
