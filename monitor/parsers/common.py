"""Helpers shared by the proxy access-log parsers (clf, caddy, traefik, haproxy).

- `SYSLOG`: matches an optional syslog header (`<PRI>Mon DD HH:MM:SS host prog[pid]: ` or RFC 3339, the
  `<PRI>` and host optional); group 1 is the program name.
- `split_request`: a logged request line to (method, path); anything that is not one stays the path.
- `clf_time`: `dd/Mon/yyyy:HH:MM:SS +zzzz` (and variants) to a UTC datetime, fast and cached;
  `any_time`: unix seconds, ISO 8601, CLF or `yyyy/mm/dd HH:MM:SS`.
- `unescape`: nginx `\\xHH` and Apache `\\"`, `\\\\`, `\\xhh` escapes back to text, control characters kept
  escaped; `inert`: control characters in unescaped (JSON) text escaped the same way.
- `forwarded_shape`: does a logged value look like an X-Forwarded-For chain (even one whose hops are no
  addresses)?
- `number`, `text_or_none`: JSON/log values to float or text.
- `peer_address`, `split_host_port`, `client_and_peer`: peer fields to canonical addresses (a Unix-domain
  socket peer is LOCAL_PEER), and the client behind trusted proxies.

Every function takes attacker-controlled text; the parsers catch the ValueError/KeyError/IndexError
that the time helpers raise on bad input.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from monitor.core.records import Reject
from monitor.parsers.context import ParseContext, canonical_ip
from monitor.parsers.forwarded import forwarded_hop, resolve_client

LOCAL_PEER = "127.0.0.1"
_UNIX_PEERS = frozenset({"unix:", "unix"})

SYSLOG = re.compile(
    r"(?:<\d{1,3}>\d? ?)?"
    r"(?:[A-Za-z]{3} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)"
    r"(?: \S+)? ([^\s\[:]+)(?:\[\d+\])?: "  # the host is optional (HAProxy to a remote syslog)
).match
_METHOD = re.compile(r"[A-Z][A-Z0-9_-]{0,31}").fullmatch
_CLF_TIME = re.compile(
    r"([0-9]{1,2})/([A-Za-z]{3})/([0-9]{4}):([0-9]{2}):([0-9]{2}):([0-9]{2})(?:[.,]([0-9]{1,9}))?(?: ?([+-])([0-9]{2}):?([0-9]{2}))?"
).fullmatch

MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
_COMMON_METHODS = frozenset(
    {"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE", "PROPFIND"}
)

# Times: `dd/Mon/yyyy:HH:MM:SS +zzzz` -> UTC datetime without strptime (~6 us): one row of 60 memoised
# seconds per distinct minute and offset is consulted (parse_clf also reuses the line before's time).
_MINUTES: dict[str, tuple[str, datetime, list[datetime | None]]] = {}  # minute -> (offset, start, row)
_SECONDS_DELTA = [timedelta(seconds=n) for n in range(60)]
_CACHE_MAX = 16_384  # minutes kept (11 days of a busy log); then the cache starts again


def peer_address(text: str) -> str | None:
    """Return the canonical peer address for a logged client field, or None if it is not one.

    Unix-domain socket peers (`unix:`, `unix`) are local processes: LOCAL_PEER.
    """
    ip = canonical_ip(text)
    if ip is None and text in _UNIX_PEERS:
        return LOCAL_PEER
    return ip


def split_host_port(text: str) -> str:
    """Return the host part of `ip:port`, `[v6]:port` or a bare address (IPv6 `a::b:port`: last colon)."""
    if text.startswith("["):
        end = text.find("]")
        return text[1:end] if end > 0 else text
    if text.count(":") == 1 or (":" in text and canonical_ip(text) is None):
        return text.rpartition(":")[0]
    return text


def client_and_peer(peer: str, forwarded_for: str | None, ctx: ParseContext) -> tuple[str, str | None]:
    """resolve_client, skipped cheaply when nothing could change the answer."""
    if forwarded_for is None or not ctx.trusted_proxies:
        return peer, None
    return resolve_client(peer, forwarded_for, ctx)


_ESCAPE = re.compile(rb'\\(x[0-9A-Fa-f]{2}|["\\])')


def _unescape_one(m: re.Match[bytes]) -> bytes:
    code = m.group(1)
    if len(code) == 1:
        return code
    value = int(code[1:], 16)
    if value < 0x20 or value == 0x7F:  # keep control characters visible and inert
        return m.group(0)
    return bytes((value,))


def _same(text: str) -> str:
    return text


def unescape(text: str) -> str:
    """Undo nginx `\\xHH` and Apache `\\"`, `\\\\`, `\\xhh` escapes (control characters stay escaped)."""
    if "\\" not in text:
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text
    return _ESCAPE.sub(_unescape_one, raw).decode("utf-8", "backslashreplace")


_unescape = unescape

_HOP_TOKEN = re.compile(r"[\w.:\[\]%-]{1,64}", re.ASCII).fullmatch
_IPISH = re.compile(
    r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?::[0-9]{1,5})?|\[?[0-9A-Fa-f]*:[0-9A-Fa-f:.]*\]?(?::[0-9]{1,5})?"
).fullmatch


def forwarded_shape(quoted: str) -> bool:
    """An X-Forwarded-For value whose left-most hop is no address: `garbage, 203.0.113.11`, `unknown`,
    `010.000.000.005`, `203.0.113.12:4444`. Taken as forwarded so that a trusted peer's chain is walked
    (and an unreadable hop reported) instead of the value being ignored."""
    hops = quoted.split(",")
    if len(hops) > 32:
        return False
    stripped = [h.strip() for h in hops]
    if not all(_HOP_TOKEN(h) for h in stripped):
        return False
    return any(h.lower() == "unknown" or _IPISH(h) or forwarded_hop(h) for h in stripped)


def split_request(request: str, decode: bool = True) -> tuple[str | None, str | None]:
    """Given a logged request line, return (method, path).

    `METHOD target HTTP/x` or `METHOD /target` (HTTP/0.9, or cut short) give the method and the
    target (unescaped if `decode`); `-` or empty give (None, None); anything else gives (None, raw text).
    """
    unescape = _unescape if decode else _same
    if not request or request == "-":
        return None, None
    parts = request.split(" ")
    n = len(parts)
    method = parts[0]
    if method in _COMMON_METHODS or _METHOD(method):
        if n == 3 and parts[2][:5] == "HTTP/" and parts[1]:
            return method, unescape(parts[1])
        if n > 3 and parts[-1][:5] == "HTTP/":
            return method, unescape(" ".join(parts[1:-1]))
        if n >= 2 and parts[1][:1] in ("/", "*") or (n == 2 and "://" in parts[1]):
            return method, unescape(" ".join(parts[1:]))
    return None, request


def _minute(text: str) -> tuple[str, datetime, list[datetime | None]]:
    """Compute and cache the UTC start of the minute of a fixed-width CLF time (offset included)."""
    sign = text[21]
    if sign not in "+-" or not text[22:26].isdigit():
        raise ValueError("bad offset")
    offset = timedelta(minutes=int(text[22:24]) * 60 + int(text[24:26]))
    local = datetime(
        int(text[7:11]), MONTHS[text[3:6]], int(text[:2]), int(text[12:14]), int(text[15:17]), tzinfo=UTC
    )
    row: list[datetime | None] = [None] * 60
    entry = (text[20:], local + offset if sign == "-" else local - offset, row)
    if len(_MINUTES) >= _CACHE_MAX:
        _MINUTES.clear()
    _MINUTES[text[:17]] = entry
    return entry


def clf_time(text: str, tz: tzinfo = UTC) -> datetime:
    """Parse `dd/Mon/yyyy:HH:MM:SS +zzzz` (fast, cached) or a variant with fractions / no offset (tz).

    Raise ValueError, KeyError or IndexError if it is not such a time.
    """
    if len(text) == 26 and text[20] == " ":
        # Allocation-light: on this path allocating objects is what costs most.
        entry = _MINUTES.get(text[:17])
        if entry is None or not text.endswith(entry[0]):
            entry = _minute(text)
        tens, ones = ord(text[18]) - 48, ord(text[19]) - 48
        if not (0 <= tens <= 5 and 0 <= ones <= 9):
            raise ValueError("bad seconds")
        row = entry[2]
        second = tens * 10 + ones
        dt = row[second]
        if dt is None:
            dt = row[second] = entry[1] + _SECONDS_DELTA[second]
        return dt
    m = _CLF_TIME(text)
    if m is None:
        raise ValueError("not a CLF time")
    day, mon, year, hh, mi, ss, frac, sign_char, oh, om = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    if sign_char is None:
        local = datetime(int(year), MONTHS[mon], int(day), int(hh), int(mi), int(ss), micro, tzinfo=tz)
        return local.astimezone(UTC)
    local = datetime(int(year), MONTHS[mon], int(day), int(hh), int(mi), int(ss), micro, tzinfo=UTC)
    offset = timedelta(minutes=int(oh) * 60 + int(om))
    return local + offset if sign_char == "-" else local - offset


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _hex_escape(m: re.Match[str]) -> str:
    return f"\\x{ord(m.group()):02X}"


def inert(text: str) -> str:
    """Escape control characters as `\\xHH` (as nginx would) in text that arrived unescaped (JSON)."""
    return _CONTROL.sub(_hex_escape, text) if _CONTROL.search(text) else text


def number(value: Any) -> float | None:
    """Return a JSON/log value as a float (numbers, numeric strings), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value and value != "-":
        try:
            return float(value.split(",", 1)[0])
        except ValueError:
            return None
    return None


def text_or_none(value: Any) -> str | None:
    """A JSON string field, control characters escaped: '' and '-' are None; non-strings are None."""
    if isinstance(value, str) and value and value != "-":
        return inert(value)
    return None


def any_time(value: Any, tz: tzinfo) -> datetime | None:
    """Parse a time given as unix seconds (number or numeric string; ms/us/ns scaled down), ISO 8601,
    CLF, or `yyyy/mm/dd HH:MM:SS`; naive times are in `tz`. Return None if it is none of these."""
    seconds = number(value) if not isinstance(value, str) or _is_numeric(value) else None
    if seconds is not None:
        if not math.isfinite(seconds) or abs(seconds) > 1e20:
            return None
        while abs(seconds) > 1e11:  # milliseconds, microseconds or nanoseconds since the epoch
            seconds /= 1000.0
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return clf_time(value, tz)
    except (ValueError, KeyError, IndexError):
        pass
    text = value.strip().replace("/", "-")
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return dt.astimezone(UTC)


def _is_numeric(text: str) -> bool:
    return bool(text) and text.replace(".", "", 1).isdigit()


# `\xHH` is no JSON escape: in a line it is a byte that was not UTF-8 (the readers decode with
# backslashreplace; nginx `escape=json` writes bytes >= 0x80 raw). An even run of backslashes before
# it is escaped backslashes, not ours.
_BYTE_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\(x[0-9A-Fa-f]{2})")


def json_loads(text: str) -> Any:
    """json.loads that also reads a record holding raw non-UTF-8 bytes (as `\\xHH` text): those stay
    visible as the text `\\xHH` in the strings. Raises ValueError/RecursionError like json.loads."""
    try:
        return json.loads(text)
    except ValueError:
        if "\\x" not in text:
            raise
    return json.loads(_BYTE_ESCAPE.sub(r"\1\\\\\2", text))


# Lines of other programs that share a stream with an access log, clearly not access lines: Apache's
# error log (`[Tue Mar 21 08:52:32.123456 2025] [core:error] ...`), application logs led by a level
# (Spring Boot `2025-03-21 08:52:32.123  INFO 1 --- [main] ...`, with or without the stamp), a shell
# prompt (`user@host:~$ ...`).
_OTHER_PROGRAM = re.compile(
    r"\s*(?:"
    r"\[[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d+)? \d{4}\] \[[\w:]+\] "
    r"|(?:\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)? +)?"
    r"(?:TRACE|DEBUG|INFO|WARN|WARNING|ERROR|FATAL|CRITICAL)\b"
    r"|(?:\([\w.-]+\) )?(?:[\w.-]+@[\w.-]+:[^\s$#]*|\[[\w.-]+@[\w.-]+ [^\]]*\])[$#] "  # bash PS1 (conda env)
    r")",
    re.ASCII,
).match


def other_program(text: str) -> bool:
    """True for a line that is clearly another program's (error log, application log, shell prompt)."""
    return _OTHER_PROGRAM(text) is not None


def json_object(text: str) -> dict[str, Any] | Reject:
    """Parse one JSON log record: the object, or a Reject saying why it is not one. Never raises."""
    try:
        obj = json_loads(text)
    except (ValueError, RecursionError):
        return Reject("invalid JSON")
    if not isinstance(obj, dict):
        return Reject("JSON value is not an object")
    return obj
