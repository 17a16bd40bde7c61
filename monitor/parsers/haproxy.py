"""HAProxy `option httplog` lines, with or without a syslog header.

`client:port [accept date] frontend backend/server [custom] TR/Tw/Tc/Tr/Ta status bytes cookie cookie
flags actconn/feconn/beconn/srvconn/retries srv_queue/backend_queue [{captures}] [{captures}] "request"`

- The syslog header (`Mon DD HH:MM:SS host haproxy[pid]: ` or RFC 3339) is optional and ignored: the time
  is the accept date in brackets, which HAProxy writes in its local time without a zone, so it is read
  in ctx.tz (milliseconds kept).
- The client is split from its port at the LAST colon (IPv6 is logged without brackets); `::ffff:`
  mapped addresses become IPv4. `-` (or `unix`) as client means a Unix-socket bind (typically a local
  TLS-offloading frontend): recorded as 127.0.0.1, like nginx `unix:`.
- latency_ms is Ta (the last timer; `+` from logasap is dropped); -1 (aborted) gives None.
  bytes_sent is the bytes read from the server (the response size). Status -1 gives None.
- `"<BADREQ>"` (an unparsable request) gives a Request with method and path None; a request cut at
  1024 bytes (no closing quote) is parsed as far as it goes. The path is kept as logged (HAProxy
  writes `\\` raw and encodes `"` as `#22`; neither is undone).
- Captured headers `{...}`: an element that is an IP address (or list) is taken as X-Forwarded-For
  (believed only from ctx.trusted_proxies), one shaped like `product/version ...` as the user agent.
- Skipped: startup and status messages ("Proxy x started.", "Server x is DOWN"), "Connect from"
  (the connect-only default format), connection errors (`fe/bind: SSL handshake failure`), and the
  tcplog-style line without a request (TCP mode, nothing HTTP to record). A line that starts with
  `addr:port [date]` but fits none of these is a Reject.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, tzinfo

from monitor.core.records import ParseResult, Reject, Request, Skip
from monitor.parsers.common import (
    LOCAL_PEER,
    MONTHS,
    SYSLOG,
    client_and_peer,
    forwarded_shape,
    other_program,
    peer_address,
    split_request,
)
from monitor.parsers.context import Format, ParseContext, canonical_ip

_HEAD = r"(\S+):(\d{1,5}) \[(\d\d/[A-Za-z]{3}/\d{4}:\d\d:\d\d:\d\d)(?:\.(\d{1,6}))?\] "
_HTTP = re.compile(
    _HEAD + r"(\S+) (\S+)(?: \S+)?? "
    r"(-?\d+)/(-?\d+)/(-?\d+)/(-?\d+)/\+?(-?\d+) (-?\d{1,3}) \+?(-?\d+) \S+ \S+ \S+ "
    r"\d+/\d+/\d+/\d+/\+?\d+ \d+/\d+((?: \{[^}]*\})*)(?: \"(.*))?",
    re.S,
).fullmatch
_TCP = re.compile(
    _HEAD + r"\S+ \S+ -?\d+/-?\d+/\+?-?\d+ \+?-?\d+ \S+ \d+/\d+/\d+/\d+/\+?\d+ \d+/\d+\s*"
).fullmatch
_CONN_ERROR = re.compile(_HEAD + r"[^\s/]+/\S+: ").match
_ADDR_DATE = re.compile(r"\S+:\d{1,5} \[\d").match
_MESSAGE = re.compile(
    r"(?:Proxy \S+ (?:started|stopped)|Connect from |Server \S+ is |backend \S+ has no server|"
    r"Stopping |Pausing |Enabling |Resuming |Health check|\[(?:NOTICE|WARNING|ALERT|INFO)\])"
).match
_AGENT = re.compile(r"[A-Za-z][\w.+-]*/\S").match

_MINUTES: dict[tuple[str, tzinfo], datetime] = {}


def _accept_time(text: str, millis: str | None, tz: tzinfo) -> datetime:
    """`dd/Mon/yyyy:HH:MM:SS` in tz (plus fraction) -> aware UTC; cached per minute and zone."""
    key = (text[:17], tz)
    base = _MINUTES.get(key)
    if base is None:
        local = datetime(
            int(text[7:11]), MONTHS[text[3:6]], int(text[:2]), int(text[12:14]), int(text[15:17]), tzinfo=tz
        )
        base = local.astimezone(UTC)
        if len(_MINUTES) > 20_000:
            _MINUTES.clear()
        _MINUTES[key] = base
    micro = int(millis.ljust(6, "0")) if millis else 0
    return base + timedelta(seconds=int(text[18:20]), microseconds=micro)


def _captures(block: str) -> tuple[str | None, str | None]:
    """Return (forwarded_for, user_agent) guessed from captured header blocks `{a|b} {c}`."""
    forwarded = agent = None
    for group in block.split("} {"):
        for item in group.strip(" {}").split("|"):
            item = item.strip()
            if not item:
                continue
            if forwarded is None and (
                canonical_ip(item.split(",", 1)[0].strip()) is not None or forwarded_shape(item)
            ):
                forwarded = item
            elif agent is None and _AGENT(item) and "://" not in item:
                agent = item
    return forwarded, agent


def parse(line: str, ctx: ParseContext) -> ParseResult:
    """Parse one HAProxy log line. Never raises."""
    try:
        return _parse(line, ctx)
    except (ValueError, KeyError, TypeError, OverflowError, IndexError):
        return Reject("bad field in HAProxy line")


def _parse(line: str, ctx: ParseContext) -> ParseResult:
    header = SYSLOG(line)
    text = line[header.end() :] if header else line
    m = _HTTP(text)
    if m is None:
        if _TCP(text) or _CONN_ERROR(text):
            return Skip("HAProxy connection log, not an HTTP request")
        if _MESSAGE(text) or (header is not None and not _ADDR_DATE(text)):
            return Skip("HAProxy message")
        if other_program(text):
            return Skip("another program's line (error or application log)")
        return Reject("not an HAProxy httplog line")
    ip, _port, date, millis, _fe, _be, _tr, _tw, _tc, _tr2, ta, status, size, captures, request = m.groups()
    peer = LOCAL_PEER if ip == "-" else peer_address(ip)
    if peer is None:
        return Reject("client is not an IP address")
    forwarded = agent = None
    if captures:
        forwarded, agent = _captures(captures)
    method: str | None = None
    path: str | None = None
    if request is not None:
        if request.endswith('"'):
            request = request[:-1]
        if request != "<BADREQ>":
            method, path = split_request(request, decode=False)  # HAProxy logs backslashes raw
    code = int(status)
    total = int(ta)
    client, via = client_and_peer(peer, forwarded, ctx)
    return Request(
        _accept_time(date, millis, ctx.tz),
        client,
        method,
        path,
        code if code > 0 else None,
        float(total) if total >= 0 else None,
        max(int(size), 0),
        agent,
        forwarded,
        via,
    )


def sniff(line: str) -> bool:
    """An httplog line, or any line whose syslog program is haproxy."""
    try:
        header = SYSLOG(line)
        if header is not None and header.group(1) == "haproxy":
            return True
        text = line[header.end() :] if header else line
        return _HTTP(text) is not None or _TCP(text) is not None or _CONN_ERROR(text) is not None
    except Exception:  # a sniffer must never break auto-detection
        return False


FORMATS = (Format("haproxy", parse, sniff, "HAProxy `option httplog` (with or without a syslog header)"),)
