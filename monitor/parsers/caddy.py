"""Caddy v2 JSON access logs (2.4 to 2.8+): one zap JSON object per line.

- Access records have a logger `http.log.access` or `http.log.access.<name>` and msg `handled request`;
  every other line (other loggers, other messages, Caddy's own startup lines) is a Skip.
- Peer: `request.remote_ip` (2.5+), else the host of `request.remote_addr` (`ip:port`, 2.4 and older).
  `request.client_ip` (2.7+) is Caddy's own trusted-proxy resolution, so it is treated as a forwarded
  value: recorded in forwarded_for when it differs from remote_ip, and believed only when remote_ip is in
  ctx.trusted_proxies. Without a differing client_ip, an `X-Forwarded-For` request header (logged
  by Caddy unless redacted) is the forwarded value, with the same rule.
- `ts`: unix seconds (float, the default), or a string (ISO 8601, `yyyy/mm/dd HH:MM:SS`, numeric);
  zone-less strings are in ctx.tz.
- `status` 0 means the handler wrote nothing; Go's net/http then sends 200, so it is recorded as 200.
- `duration`: seconds (float, the default) or a Go duration string (`duration_format string`); ms.
- `size` is bytes_sent; the user agent is the first `User-Agent` request header.
"""

from __future__ import annotations

import re
from typing import Any

from monitor.core.records import ParseResult, Reject, Request, Skip
from monitor.parsers.common import (
    any_time,
    client_and_peer,
    inert,
    json_object,
    number,
    peer_address,
    split_host_port,
)
from monitor.parsers.context import Format, ParseContext

_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_UNIT_MS = {
    "ns": 1e-6,
    "us": 1e-3,
    "\u00b5s": 1e-3,
    "\u03bcs": 1e-3,
    "ms": 1.0,
    "s": 1e3,
    "m": 6e4,
    "h": 3.6e6,
}
_KEY = re.compile(r'"(?:ts|logger|msg)"\s*:')


def go_duration_ms(text: str) -> float | None:
    """Parse a Go duration (`1.5ms`, `2m10s`, `23.668µs`, `0s`) into milliseconds; None if it is not one."""
    text = text.strip()
    if not text or len(text) > 64:
        return None
    pos, total = 0, 0.0
    for m in _GO_DURATION.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _UNIT_MS[m.group(2)]
        pos = m.end()
    if pos != len(text):
        return 0.0 if text == "0" else None
    return total


def _header(headers: Any, name: str) -> str | None:
    if not isinstance(headers, dict):
        return None
    values = headers.get(name)
    if isinstance(values, list):
        texts = [v for v in values if isinstance(v, str)]
        return ", ".join(texts) if texts else None
    return values if isinstance(values, str) else None


def _duration_ms(value: Any) -> float | None:
    if isinstance(value, str) and not value.replace(".", "", 1).isdigit():
        return go_duration_ms(value)
    seconds = number(value)
    return None if seconds is None else seconds * 1000.0


def parse(line: str, ctx: ParseContext) -> ParseResult:
    """Parse one Caddy JSON line. Never raises."""
    text = line.strip()
    if not text.startswith("{"):
        return Reject("not a JSON line")
    obj = json_object(text)
    if isinstance(obj, Reject):
        return obj
    try:
        return _record(obj, ctx)
    except (ValueError, KeyError, TypeError, OverflowError, IndexError):
        return Reject("bad field in Caddy record")


def _record(obj: dict[str, Any], ctx: ParseContext) -> ParseResult:
    logger = obj.get("logger")
    if (
        not (isinstance(logger, str) and logger.startswith("http.log.access"))
        or obj.get("msg") != "handled request"
    ):
        return Skip("not a Caddy access record")
    request = obj.get("request")
    if not isinstance(request, dict):
        return Reject("access record without a request")
    remote = request.get("remote_ip")
    if not isinstance(remote, str) or not remote:
        addr = request.get("remote_addr")
        remote = split_host_port(addr) if isinstance(addr, str) else None
    if remote is None:
        return Reject("access record without a peer address")
    peer = peer_address(remote)
    if peer is None:
        return Reject("peer is not an IP address")
    forwarded: str | None = None
    client_ip = request.get("client_ip")
    if isinstance(client_ip, str) and client_ip and peer_address(client_ip) != peer:
        forwarded = client_ip
    headers = request.get("headers")
    if forwarded is None:
        forwarded = _header(headers, "X-Forwarded-For")
    when = any_time(obj.get("ts"), ctx.tz)
    if when is None:
        return Reject("access record without a readable ts")
    status_value = number(obj.get("status"))
    status = None if status_value is None else (int(status_value) or 200)  # 0: nothing written, Go sent 200
    size = number(obj.get("size"))
    method = request.get("method")
    uri = request.get("uri")
    client, via = client_and_peer(peer, forwarded, ctx)
    return Request(
        when,
        client,
        method if isinstance(method, str) else None,
        inert(uri) if isinstance(uri, str) else None,
        status,
        _duration_ms(obj.get("duration")),
        int(size) if size is not None else None,
        inert(agent) if (agent := _header(headers, "User-Agent")) else None,
        forwarded,
        via,
    )


def sniff(line: str) -> bool:
    """A zap JSON line with Caddy's keys (`ts` plus `logger` or msg `handled request`)."""
    text = line.lstrip()
    if not text.startswith("{") or '"ts"' not in text:
        return False
    return '"logger"' in text or '"handled request"' in text if _KEY.search(text) else False


FORMATS = (Format("caddy", parse, sniff, "Caddy v2 JSON access log (2.4 to 2.8+)"),)
