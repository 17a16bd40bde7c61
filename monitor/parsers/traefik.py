"""Traefik access logs: JSON (v1, v2, v3) and Traefik's text format (CLF plus extras).

JSON (`accessLog.format=json`):
- Peer: the host part of `ClientAddr` (the real TCP peer; `[v6]:port` or `ip:port`), else `ClientHost`.
- `ClientHost` is replaced by Traefik with the raw `X-Forwarded-For` when the request carries one (so it
  may be a list, and it is spoofable): when it differs from the peer it is the forwarded value, believed
  only when the peer is in ctx.trusted_proxies.
- Time: `StartUTC`, else `StartLocal` (has its offset), else `time`. Latency: `Duration` (ns) / 1e6.
  `DownstreamStatus` (0, nothing sent, is None), `DownstreamContentSize`, `request_User-Agent` (only
  when headers are kept). v1 records without `RequestMethod` are read from `RequestLine`.
- JSON without `RequestMethod`/`DownstreamStatus` (Traefik's own log lines) is a Skip.

Text (`accessLog.format=common`, Traefik's default): `<ClientHost> - <user> [time] "<method> <path>
<proto>" <status> <size> "<referer>" "<agent>" <count> "<router>" "<service url>" <N>ms`. Traefik writes
ClientHost there, which is the X-Forwarded-For value when the request had one: the logged client is
spoofable and the real peer is not in the line. A list there (`a, b`) is recorded as forwarded_for; its
right-most hop (the one nearest Traefik) is taken as the peer and the rest is believed only when that
peer is in ctx.trusted_proxies (walked from the right, as `resolve_client` does). The path is written
raw, so it may hold `"`: such a line is split at the first ` "` that the tail's shape confirms.

Other text (plugin output such as `DEBUG: CrowdsecBouncerTraefikPlugin: ...`, Traefik's own logs) is a
Skip; a line that starts like an access record but cannot be read is a Reject.
"""

from __future__ import annotations

import re

from monitor.core.records import ParseResult, Reject, Request, Skip
from monitor.parsers.common import (
    any_time,
    clf_time,
    client_and_peer,
    inert,
    json_object,
    number,
    other_program,
    peer_address,
    split_host_port,
    split_request,
    text_or_none,
)
from monitor.parsers.context import Format, ParseContext

_Q = r'[^"\\]*(?:\\.[^"\\]*)*'
_TEXT = re.compile(
    rf'([^\["]*?) - (\S+) \[([^\]]{{1,40}})\] "({_Q})" (\d{{3}}|-) (\d+|-) "{_Q}" "({_Q})" (\d+|-) "{_Q}" "{_Q}" (\d+)ms\s*',
    re.S,
).fullmatch
# Traefik writes the path raw, so a `"` inside it ends the quoted request early: the fallback splits the
# line into head and tail at a ` "` that the tail's shape confirms (a bounded number of tries).
_TEXT_HEAD = re.compile(r'([^\["]*?) - (\S+) \[([^\]]{1,40})\] "').match
_TEXT_TAIL = re.compile(
    rf'" (\d{{3}}|-) (\d+|-) "{_Q}" "({_Q})" (\d+|-) "{_Q}" "{_Q}" (\d+)ms\s*', re.S
).fullmatch
_TAIL_START = re.compile(r'" (?:\d{3}|-) (?:\d+|-) "')
_TAIL_TRIES = 16
_MESSAGE = re.compile(r'[A-Z]{3,5}[:\[ ]|time="|level=|\d{4}[-/]\d\d[-/]\d\d[T ]').match


def parse(line: str, ctx: ParseContext) -> ParseResult:
    """Parse one Traefik JSON or text access line. Never raises."""
    text = line.strip()
    try:
        if text.startswith("{"):
            return _json(text, ctx)
        return _text(text, ctx)
    except (ValueError, KeyError, TypeError, OverflowError, IndexError, RecursionError):
        return Reject("bad field in Traefik record")


def _json(text: str, ctx: ParseContext) -> ParseResult:
    obj = json_object(text)
    if isinstance(obj, Reject):
        return obj
    if "RequestMethod" not in obj and "DownstreamStatus" not in obj:
        return Skip("not a Traefik access record")
    addr = obj.get("ClientAddr")
    host = text_or_none(obj.get("ClientHost"))
    peer = peer_address(split_host_port(addr)) if isinstance(addr, str) and addr else None
    forwarded: str | None = None
    if peer is None:
        if host is None:
            return Reject("access record without a client address")
        # No peer in the record: the right-most ClientHost hop is the nearest; a list is forwarded.
        peer = peer_address(split_host_port(host.rsplit(",", 1)[-1].strip()))
        if peer is None:
            return Reject("client is not an IP address")
        if "," in host:
            forwarded = host
    elif host is not None and peer_address(host) != peer:
        forwarded = host
    when = None
    for key in ("StartUTC", "StartLocal", "time"):
        if key in obj:
            when = any_time(obj[key], ctx.tz)
            if when is not None:
                break
    if when is None:
        return Reject("access record without a readable time")
    method = text_or_none(obj.get("RequestMethod"))
    path = obj.get("RequestPath")
    if method is None and isinstance(obj.get("RequestLine"), str):
        method, path = split_request(inert(obj["RequestLine"]), decode=False)
    status_value = number(obj.get("DownstreamStatus"))
    size = number(obj.get("DownstreamContentSize"))
    nanos = number(obj.get("Duration"))
    client, via = client_and_peer(peer, forwarded, ctx)
    return Request(
        when,
        client,
        method,
        inert(path) if isinstance(path, str) else None,
        int(status_value) if status_value else None,
        None if nanos is None else nanos / 1e6,
        int(size) if size is not None else None,
        text_or_none(obj.get("request_User-Agent")),
        forwarded,
        via,
    )


def _text(text: str, ctx: ParseContext) -> ParseResult:
    m = _TEXT(text)
    groups = m.groups() if m is not None else _raw_quote_groups(text)
    if groups is None:
        if _MESSAGE(text) or not text or other_program(text):
            return Skip("not a Traefik access record")
        return Reject("not a Traefik access line")
    host, _user, ts, request, status, size, agent, _count, millis = groups
    forwarded: str | None = None
    if "," in host:
        # A list is the X-Forwarded-For value as the client sent it plus what proxies appended: the
        # right-most hop is the one nearest Traefik, the rest is believed only from trusted proxies.
        forwarded = host
        host = host.rsplit(",", 1)[1]
    last = host.strip()
    peer = peer_address(last) or peer_address(split_host_port(last))
    if peer is None:
        return Reject("client is not an IP address")
    method, path = split_request(inert(request), decode=False)  # Traefik escapes nothing
    client, via = client_and_peer(peer, forwarded, ctx)
    return Request(
        clf_time(ts, ctx.tz),
        client,
        method,
        path,
        None if status == "-" else int(status) or None,
        float(millis),
        0 if size == "-" else int(size),
        None if agent == "-" else inert(agent),
        forwarded,
        via,
    )


def _raw_quote_groups(text: str) -> tuple[str, ...] | None:
    """The groups of `_TEXT` for a line whose request holds raw `"` characters, or None."""
    head = _TEXT_HEAD(text)
    if head is None:
        return None
    start = head.end()
    for tries, candidate in enumerate(_TAIL_START.finditer(text, start)):
        if tries >= _TAIL_TRIES:
            break
        tail = _TEXT_TAIL(text, candidate.start())
        if tail is not None:
            return (*head.groups(), text[start : candidate.start()], *tail.groups())
    return None


def sniff(line: str) -> bool:
    """Traefik JSON keys (`ClientAddr`, `RequestMethod`, `DownstreamStatus`) or the text format's tail."""
    try:
        text = line.strip()
        if text.startswith("{"):
            return '"DownstreamStatus"' in text or ('"ClientAddr"' in text and '"RequestMethod"' in text)
        return text.endswith("ms") and (_TEXT(text) is not None or _raw_quote_groups(text) is not None)
    except Exception:  # a sniffer must never break auto-detection
        return False


FORMATS = (Format("traefik", parse, sniff, "Traefik access log: JSON (v1-v3) or the common text format"),)
