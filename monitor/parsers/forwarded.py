"""Forwarded-for helpers: read an X-Forwarded-For hop, and believe it only from a trusted proxy."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from monitor.parsers.context import IPNetwork, ParseContext, canonical_ip


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
