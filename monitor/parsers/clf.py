"""nginx and Apache access logs: the Common/Combined Log Format family, and nginx `escape=json` logs.

Registers `nginx` and `apache` (the same parser: the two servers write the same shapes and differ only
in how they escape, and one unescaper reads both). The helpers the proxy parsers share (syslog
header, request line, CLF time, unescaping, unix-socket peers) are in `monitor.parsers.common`.

What a line may look like, and what it parses to:
- `combined` / `common`, optionally prefixed by a virtual host (`host `, `host:port `), optionally
  followed by extra fields. Extras are read by shape: the first quoted extra that is `"-"`, starts
  with an IP address, or is a comma list of address-like hops (`garbage, 203.0.113.11`, `unknown`,
  `203.0.113.12:4444`) is `$http_x_forwarded_for`; the first bare `N.NNN` number (nginx prints
  `$request_time` and `$upstream_response_time` with exactly three decimals) is `$request_time`, in
  seconds. Integer extras (Apache `%D`/`%T`, `$request_length`) are ambiguous and ignored.
- An optional syslog header (`Mon DD HH:MM:SS host prog[pid]: ` or RFC 3339) is stripped.
- Times come from the line's own `[dd/Mon/yyyy:HH:MM:SS +zzzz]`; without an offset, `ctx.tz`.
- The request line: `METHOD target HTTP/x.y` (or `METHOD target`, HTTP/0.9 or truncated) gives method
  and path, unescaped. Anything else (TLS handshakes, `HELP`, `batman`, Gh0st probes) is still a
  Request from that peer, with method None and the raw escaped text as path: a scanner is a scanner.
  `-` or an empty request (no request line was read) gives method None and path None.
- Unescaping (`\\xHH` from nginx, `\\"`, `\\\\`, `\\xhh` from Apache) turns printable and high bytes back
  into text (UTF-8; invalid bytes stay as `\\xhh`) but keeps control characters escaped, so log text
  cannot inject newlines or terminal escapes into alerts.
- Status `-` (Apache) and `000` (nginx: no response was sent; any code below 100) are None. `%b` `-`
  is 0 bytes. A user agent of `-` is None (an empty `""` one stays "").
- A peer without an IP address (nginx `unix:`, HAProxy `-`/`unix`: a Unix-domain socket) is a local
  process and is recorded as 127.0.0.1 (so listing 127.0.0.1 in trusted_proxies lets the
  forwarded-for through). Any other non-IP client (Apache `HostnameLookups`) is rejected.
- nginx JSON: see `parse_json`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from monitor.core.records import ParseResult, Reject, Request, Skip
from monitor.parsers.common import (
    SYSLOG,
    any_time,
    clf_time,
    client_and_peer,
    forwarded_shape,
    inert,
    json_object,
    number,
    other_program,
    peer_address,
    split_host_port,
    split_request,
    text_or_none,
    unescape,
)
from monitor.parsers.context import Format, ParseContext, canonical_ip
from monitor.parsers.forwarded import resolve_client

# Build Requests without the NamedTuple's Python-level __new__: the hot path saves ~0.2 us a line.
_new = tuple.__new__

# A quoted field; `\` escapes the next character (Apache `\"`; nginx never writes a raw `"` or `\`).
_Q = r'[^"\\]*(?:\\.[^"\\]*)*'
# Fast path: exactly `ip ident user [time] "METHOD /path HTTP/x.y" status bytes "referer" "agent"`,
# with a path holding no space, `"` or `\`, then anything (extras). Everything else (escaped or garbage
# requests, vhosts, common format, syslog headers) takes the slow path. Apache writes a quote inside a
# field as `\"`: the fast regex can only stop early on one in the agent (every other field must be
# followed by ` "`, which Apache never writes inside a field), so an agent holding `\` goes slow too.
# Measured choices: [0-9] is cheaper than \d (which also accepts non-ASCII digits), and splitting the
# request in the regex is cheaper than str.split.
_FAST = re.compile(
    r'(\S+) \S+ \S+ \[([^\]]{1,40})\] "([A-Z]{1,16}) ([^ "\\]+) HTTP/[0-9.]{1,4}" ([0-9]{3}) ([0-9]+|-) "[^"]*" "([^"]*)"(.*)'
).match
# Slow path: any prefix without `[` or `"` (vhost, users with spaces, ...).
_SLOW = re.compile(
    rf'([^\["]*) \[([^\]]{{1,40}})\] "({_Q})" (-?[0-9]{{1,3}}|-) ([0-9]+|-)(?: "{_Q}" "({_Q})")?(.*)', re.S
).match
_NGINX_ERROR = re.compile(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[[a-z]+\] ").match
_SECONDS = re.compile(r"(?:[a-z_]+=)?([0-9]{1,9}\.[0-9]{3})").fullmatch
_MAIN_TAIL = re.compile(r' "([^"\\]*)" (?:[a-z_]+=)?([0-9]{1,9}\.[0-9]{3})(?: |$)').match
_EXTRA = re.compile(rf' *(?:"({_Q})"|(\S+))').match
# Status text -> int; `-` (Apache), `000` (nginx: nothing sent) and other codes below 100 -> None.
_STATUS: dict[str, int | None] = {f"{n:03d}": n if n >= 100 else None for n in range(1000)} | {"-": None}

# The line before's time is reused when the time text is the same (a string compare; common.clf_time
# caches per minute otherwise).
_LAST: tuple[str, datetime] = ("", datetime(1970, 1, 1, tzinfo=UTC))  # (time text, time) of the last line


# --- CLF text ------------------------------------------------------------------------------------


def _extras(tail: str) -> tuple[str | None, float | None]:
    """Read forwarded-for and $request_time (ms) from the fields after the user agent."""
    if tail == ' "-"':  # the packaged nginx `main` format
        return None, None
    m = _MAIN_TAIL(tail)  # the usual `"$http_x_forwarded_for" $request_time ...`
    if m is not None:
        quoted, seconds = m.groups()
        if quoted == "-":
            return None, float(seconds) * 1000.0
        if canonical_ip(quoted.split(",", 1)[0].strip()) is not None:
            return quoted, float(seconds) * 1000.0
    forwarded: str | None = None
    seen_quoted = False
    latency: float | None = None
    pos, end = 0, len(tail)
    while pos < end:
        m = _EXTRA(tail, pos)
        if m is None or m.end() == pos:
            break
        pos = m.end()
        quoted, bare = m.group(1), m.group(2)
        if quoted is not None:
            if not seen_quoted and (
                quoted == "-"
                or canonical_ip(quoted.split(",", 1)[0].strip()) is not None
                or forwarded_shape(quoted)
            ):
                seen_quoted = True
                forwarded = None if quoted == "-" else quoted
        elif latency is None and bare is not None:
            s = _SECONDS(bare)
            if s is not None:
                latency = float(s.group(1)) * 1000.0
    return forwarded, latency


def _clf_slow(line: str, ctx: ParseContext) -> ParseResult:
    header = SYSLOG(line)
    if header is not None:
        line = line[header.end() :]
    m = _SLOW(line)
    if m is None:
        if _NGINX_ERROR(line):
            return Skip("nginx error log line")
        if other_program(line):
            return Skip("another program's line (error or application log)")
        return Reject("not a common/combined log line")
    prefix, ts, request, status, size, agent, tail = m.groups()
    tokens = prefix.split()
    if not tokens:
        return Reject("no client address")
    peer = peer_address(tokens[0])
    if len(tokens) >= 4 and tokens[2] == "-":  # `vhost[:port] ip - user`
        second = peer_address(tokens[1])
        if second is not None:
            peer = second
    elif peer is None and len(tokens) >= 2:
        peer = peer_address(tokens[1])
    if peer is None:
        return Reject("client is not an IP address")
    method, path = split_request(request)
    forwarded = latency = None
    if tail:
        forwarded, latency = _extras(tail)
    if agent is not None:
        agent = None if agent == "-" else unescape(agent)
    code = _STATUS.get(status)
    client, via = client_and_peer(peer, forwarded, ctx)
    return Request(
        clf_time(ts, ctx.tz),
        client,
        method,
        path,
        code,
        latency,
        0 if size == "-" else int(size),
        agent,
        forwarded,
        via,
    )


def parse_clf(line: str, ctx: ParseContext) -> ParseResult:
    """Parse one common/combined line (Apache or nginx text), or an nginx JSON record. Never raises.

    The hot path of ingestion: keep it flat (no helper calls on a plain combined line).
    """
    global _LAST
    try:
        m = _FAST(line)
        if m is not None:
            ip, ts, method, path, status, size, agent, tail = m.groups()
            peer = canonical_ip(ip)
            # A `\` in the agent may be Apache's `\"`, which the fast regex would end the field on.
            if peer is not None and "\\" not in agent:
                if tail:
                    forwarded, latency = _extras(tail)
                else:
                    forwarded = latency = None
                if forwarded is not None and ctx.trusted_proxies:
                    client, via = resolve_client(peer, forwarded, ctx)
                else:
                    client, via = peer, None
                last = _LAST  # one read: another thread may replace it (never mutate it in place)
                if ts == last[0]:
                    when = last[1]
                else:
                    when = clf_time(ts, ctx.tz)
                    if len(ts) == 26 and ts[20] == " ":  # has its own offset: the same text, the same time
                        _LAST = (ts, when)
                return _new(
                    Request,
                    (
                        when,
                        client,
                        method,
                        path,
                        _STATUS[status],
                        latency,
                        0 if size == "-" else int(size),
                        None if agent == "-" else agent,
                        forwarded,
                        via,
                    ),
                )
        if line[:1] == "{" or line.lstrip()[:1] == "{":
            return parse_json(line.strip(), ctx)
        return _clf_slow(line, ctx)
    except (ValueError, KeyError, TypeError, OverflowError, IndexError):
        return Reject("bad field in common/combined line")


def sniff_clf(line: str) -> bool:
    """Does this look like a common/combined access line (optionally syslog-wrapped)?"""
    if _FAST(line) is not None:
        return True
    header = SYSLOG(line)
    return _SLOW(line[header.end() :] if header else line) is not None


# --- nginx JSON ------------------------------------------------------------------------------------

_TIME_KEYS = ("time_iso8601", "time_local", "msec", "time", "timestamp", "@timestamp")


def _field(obj: dict[str, Any], ctx: ParseContext, name: str, default: str) -> Any:
    return obj.get(ctx.json_fields.get(name) or default)


def parse_json(line: str, ctx: ParseContext) -> ParseResult:
    """Parse one nginx `escape=json` record keyed by nginx variable names (or ctx.json_fields).

    Client `remote_addr`; method/path from `request_method`/`request_uri`, else from `request`;
    `status`, `body_bytes_sent`, `request_time` (seconds), `http_user_agent`, `http_x_forwarded_for`;
    the time from the configured key, else time_iso8601, time_local, msec, time, timestamp, @timestamp
    (a record without any is rejected). Values may be strings or numbers. Never raises.
    """
    obj = json_object(line)
    if isinstance(obj, Reject):
        return obj
    try:
        return _json_record(obj, ctx)
    except (ValueError, KeyError, TypeError, OverflowError, IndexError):
        return Reject("bad field in JSON record")


def _json_record(obj: dict[str, Any], ctx: ParseContext) -> ParseResult:
    raw_ip = _field(obj, ctx, "client_ip", "remote_addr")
    if not isinstance(raw_ip, str):
        return Reject("JSON record without a client address")
    peer = peer_address(raw_ip) or peer_address(split_host_port(raw_ip))
    if peer is None:
        return Reject("client is not an IP address")
    when: datetime | None = None
    time_key = ctx.json_fields.get("time")
    for key in (time_key,) if time_key else _TIME_KEYS:
        if key in obj:
            when = any_time(obj[key], ctx.tz)
            if when is not None:
                break
    if when is None:
        return Reject("JSON record without a readable time")
    method = text_or_none(_field(obj, ctx, "method", "request_method"))
    path = text_or_none(_field(obj, ctx, "path", "request_uri"))
    request = _field(obj, ctx, "request", "request")
    if (method is None or path is None) and isinstance(request, str):
        req_method, req_path = split_request(inert(request), decode=False)
        method = method or req_method
        path = path or req_path
    status_value = number(_field(obj, ctx, "status", "status"))
    status = int(status_value) if status_value else None
    size = number(_field(obj, ctx, "bytes_sent", "body_bytes_sent"))
    seconds = number(_field(obj, ctx, "latency", "request_time"))
    agent = text_or_none(_field(obj, ctx, "user_agent", "http_user_agent"))
    forwarded = text_or_none(_field(obj, ctx, "forwarded_for", "http_x_forwarded_for"))
    client, via = client_and_peer(peer, forwarded, ctx)
    return Request(
        when,
        client,
        method,
        path,
        status,
        None if seconds is None else seconds * 1000.0,
        int(size) if size is not None else None,
        agent,
        forwarded,
        via,
    )


def sniff_json(line: str) -> bool:
    head = line.lstrip()[:1]
    return head == "{" and ('"remote_addr"' in line or ('"request' in line and '"status"' in line))


# --- registration ----------------------------------------------------------------------------------


def sniff_nginx(line: str) -> bool:
    try:
        return sniff_json(line) or sniff_clf(line)
    except Exception:  # a sniffer must never break auto-detection
        return False


def sniff_apache(line: str) -> bool:
    try:
        return sniff_clf(line)
    except Exception:
        return False


def parse_apache(line: str, ctx: ParseContext) -> ParseResult:
    """Apache: common/combined text only."""
    if line[:1] == "{" or line.lstrip()[:1] == "{":
        return Reject("JSON line: use format nginx")
    return parse_clf(line, ctx)


FORMATS = (
    Format(
        "nginx",
        parse_clf,
        sniff_nginx,
        "nginx access log: combined/common (+ vhost, extras, syslog) or escape=json",
    ),
    Format("apache", parse_apache, sniff_apache, "Apache access log: common, combined, vhost_combined"),
)
