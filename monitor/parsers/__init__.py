"""Log parsers: pure functions from one line of text to a Request, a Skip or a Reject.

Each format family lives in its own module and registers itself here by name with a `sniff`
function (does this line look like mine?) used by `auto` detection. Wrappers (Docker json-file
records, `journalctl -o json` records, syslog/journald text prefixes) are peeled off before the
format parser sees the line; see `monitor.parsers.wrappers`.

Contract for a parser `parse(line, ctx)`:
- `line` has no trailing newline; it may hold anything (binary garbage decoded with backslash escapes).
- It never raises: malformed input gives `Reject(reason)`, a line that is not a request `Skip()`.
- Times become timezone-aware UTC, from the line's own offset, else `ctx.tz`.
- The peer address stays the client unless it is in `ctx.trusted_proxies`; then the forwarded-for
  chain is walked from the right (see `resolve_client`). A forwarded value in a format's own field
  (Traefik ClientHost, Caddy client_ip) is believed under the same rule only.
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


def forwarded_hop(text: str) -> str | None:
    """Return one X-Forwarded-For element as a canonical address, or None if it is not one.

    Accepts a bare IPv4 or IPv6 address, `[v6]`, `ip:port` and `[v6]:port` (ports are dropped).
    `unknown`, obfuscated identifiers (`_hidden`) and IPv4 with leading zeros (`010.000.000.005`,
    which some stacks read as octal) are not addresses.
    """
    text = text.strip()
    ip = canonical_ip(text)
    if ip is not None or not text:
        return ip
    if text[0] == "[":
        end = text.find("]")
        port = text[end + 2 :]
        if end > 1 and text[end + 1 : end + 2] == ":" and _is_port(port):
            return canonical_ip(text[1:end])
        return None
    host, sep, port = text.rpartition(":")
    if sep and ":" not in host and _is_port(port):
        return canonical_ip(host)
    return None


def _is_port(text: str) -> bool:
    return 0 < len(text) <= 5 and text.isascii() and text.isdigit()


def first_forwarded(value: str | None) -> str | None:
    """Return the left-most address of an X-Forwarded-For value in canonical form, or None.

    This is what the client claims (it writes the left end itself): never the client to believe,
    only the claim a forwarded-mismatch alert names.
    """
    if not value or value == "-":
        return None
    return forwarded_hop(value.split(",", 1)[0])


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

    Only a peer in ctx.trusted_proxies makes the forwarded value count. Then the chain is walked
    from the RIGHT (the end the proxies wrote), skipping trusted proxies: the first untrusted hop is
    the client and peer_ip keeps the peer (nginx `real_ip_recursive on`). When every hop is trusted,
    the left-most is the client. A hop that is not an address ends the walk at the last trusted
    address, which is then returned as both client_ip and peer_ip: `client_ip == peer_ip` marks a
    request whose sender is hidden behind an unreadable forwarded value (the forwarded-mismatch rule
    reports it). Without a trusted peer, client_ip is the peer and peer_ip is None.
    """
    if forwarded_for and ctx.trusted_proxies and _in_networks(peer, ctx.trusted_proxies):
        return _walk(peer, forwarded_for, ctx.trusted_proxies)
    return peer, None


@lru_cache(maxsize=16384)
def _walk(peer: str, forwarded_for: str, nets: tuple[IPNetwork, ...]) -> tuple[str, str | None]:
    last = peer
    for hop in reversed(forwarded_for.split(",")):
        addr = forwarded_hop(hop)
        if addr is None:
            return last, last
        if not _in_networks(addr, nets):
            return addr, peer
        last = addr
    return (last, peer) if last != peer else (peer, None)


def forwarded_unreadable(client_ip: str, peer_ip: str | None) -> bool:
    """True for a request whose forwarded chain stopped at an unreadable hop (see resolve_client)."""
    return peer_ip is not None and peer_ip == client_ip


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
    "forwarded_hop",
    "forwarded_unreadable",
    "get",
    "names",
    "register",
    "resolve_client",
    "sniff",
]
