"""Log parsers: pure functions from one line of text to a Request, a Skip or a Reject.

Each format family lives in its own module and registers itself here by name with a `sniff`
function (does this line look like mine?) used by `auto` detection. Wrappers (Docker json-file
records, `journalctl -o json` records, syslog/journald text prefixes) are peeled off before the
format parser sees the line; see `monitor.parsers.wrappers`.

Contract for a parser `parse(line, ctx)`:
- `line` has no trailing newline; it may hold anything (binary garbage decoded with backslash escapes).
- It never raises: malformed input gives `Reject(reason)`, a line that is not a request `Skip()`.
- Times become timezone-aware UTC, from the line's own offset, else `ctx.tz`.
- The peer address stays the client unless it is in `ctx.trusted_proxies`; see `resolve_client`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from functools import lru_cache

from monitor.records import ParseResult, Reject, Request, Skip

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class ParseContext:
    """What a parser needs to know about its source besides the line."""

    tz: tzinfo = UTC
    trusted_proxies: tuple[IPNetwork, ...] = ()
    json_fields: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        tz: tzinfo = UTC,
        trusted_proxies: Iterable[str] = (),
        json_fields: dict[str, str] | None = None,
    ) -> ParseContext:
        nets = tuple(ipaddress.ip_network(p, strict=False) for p in trusted_proxies)
        return cls(tz=tz, trusted_proxies=nets, json_fields=dict(json_fields or {}))


ParseFn = Callable[[str, ParseContext], ParseResult]
SniffFn = Callable[[str], bool]


@dataclass(frozen=True)
class Format:
    name: str
    parse: ParseFn
    sniff: SniffFn
    description: str = ""


REGISTRY: dict[str, Format] = {}


def register(name: str, parse: ParseFn, sniff: SniffFn, description: str = "") -> None:
    REGISTRY[name] = Format(name, parse, sniff, description)


@lru_cache(maxsize=65536)
def canonical_ip(text: str) -> str | None:
    """Return the canonical text of an IP address (IPv4-mapped IPv6 becomes IPv4), or None.

    Accepts brackets (`[::1]`); does not strip ports (callers know their format).
    """
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if "%" in text:  # zone index: fe80::1%eth0
        text = text.split("%", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def first_forwarded(value: str | None) -> str | None:
    """Return the left-most address of an X-Forwarded-For value in canonical form, or None."""
    if not value or value == "-":
        return None
    first = value.split(",", 1)[0].strip()
    return canonical_ip(first)


def _in_networks(ip: str, nets: tuple[IPNetwork, ...]) -> bool:
    if not nets:
        return False
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr in net for net in nets)


def resolve_client(peer: str, forwarded_for: str | None, ctx: ParseContext) -> tuple[str, str | None]:
    """Given the peer address as logged and a forwarded-for value, return (client_ip, peer_ip).

    The forwarded-for value replaces the peer only when the peer is a trusted proxy; then peer_ip
    keeps the proxy's address. Otherwise client_ip is the peer and peer_ip is None.
    """
    if forwarded_for and ctx.trusted_proxies and _in_networks(peer, ctx.trusted_proxies):
        client = first_forwarded(forwarded_for)
        if client is not None and client != peer:
            return client, peer
    return peer, None


def get(name: str) -> Format:
    _load_all()
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown format {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def names() -> list[str]:
    _load_all()
    return sorted(REGISTRY)


_LOADED = False


def _load_all() -> None:
    """Import every format module so that it registers itself."""
    global _LOADED
    if _LOADED:
        return
    from monitor.parsers import caddy, clf, haproxy, ollama, traefik  # noqa: F401

    _LOADED = True


def sniff(line: str) -> str | None:
    """Return the name of the first format whose sniff accepts the (unwrapped) line, or None."""
    _load_all()
    for name in DETECT_ORDER:
        fmt = REGISTRY.get(name)
        if fmt is not None and fmt.sniff(line):
            return name
    return None


# JSON formats first (cheap, unambiguous), then the text formats from most to least specific.
DETECT_ORDER = ("caddy", "traefik", "nginx", "ollama", "haproxy", "apache")

__all__ = [
    "REGISTRY",
    "Format",
    "ParseContext",
    "ParseResult",
    "Reject",
    "Request",
    "Skip",
    "canonical_ip",
    "first_forwarded",
    "get",
    "names",
    "register",
    "resolve_client",
    "sniff",
]
