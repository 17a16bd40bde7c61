"""The types every log parser shares: its context, its function shapes, its format record.

`canonical_ip` lives here too: it is the one address helper both the format modules and the
forwarded-for walk (`monitor.parsers.forwarded`) need.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from functools import lru_cache

from monitor.core.records import ParseResult

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
