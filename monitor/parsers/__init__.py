"""Log parsers: pure functions from one line of text to a Request, a Skip or a Reject.

Each format family lives in its own module and declares its `FORMATS` (name, parse, and a `sniff`
function, does this line look like mine?, used by `auto` detection); `monitor.parsers.registry`
collects them (see README.md in this package for the interface and how to add a format).
Wrappers (Docker json-file records, `journalctl -o json` records, syslog/journald text prefixes) are
peeled off before the format parser sees the line; see `monitor.parsers.wrappers`.

Contract for a parser `parse(line, ctx)`:
- `line` has no trailing newline; it may hold anything (binary garbage decoded with backslash escapes).
- It never raises: malformed input gives `Reject(reason)`, a line that is not a request `Skip()`.
- Times become timezone-aware UTC, from the line's own offset, else `ctx.tz`.
- The peer address stays the client unless it is in `ctx.trusted_proxies`; then the forwarded-for
  chain is walked from the right (see `resolve_client`). A forwarded value in a format's own field
  (Traefik ClientHost, Caddy client_ip) is believed under the same rule only.
"""

from __future__ import annotations

from monitor.core.records import ParseResult, Reject, Request, Skip
from monitor.parsers.context import Format, IPNetwork, ParseContext, ParseFn, SniffFn, canonical_ip
from monitor.parsers.forwarded import first_forwarded, forwarded_hop, forwarded_unreadable, resolve_client
from monitor.parsers.registry import DETECT_ORDER, REGISTRY, get, names, register, sniff

__all__ = [
    "DETECT_ORDER",
    "REGISTRY",
    "Format",
    "IPNetwork",
    "ParseContext",
    "ParseFn",
    "ParseResult",
    "Reject",
    "Request",
    "SniffFn",
    "Skip",
    "canonical_ip",
    "first_forwarded",
    "forwarded_hop",
    "forwarded_unreadable",
    "get",
    "names",
    "register",
    "resolve_client",
    "sniff",
]
