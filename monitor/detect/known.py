"""Known sources: who is expected to use this Ollama server.

A source is `admin` (in `[known] admins`: may call management endpoints), `known` (in `[known] allow`),
`approved` (approved with `ollama-monitor sources approve`, kept in the database) or `unknown`.
Pure: the approvals are passed in, so the daemon can rebuild this on SIGHUP or after an approval.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from enum import StrEnum
from functools import lru_cache

from monitor.config import KnownSettings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Status(StrEnum):
    ADMIN = "admin"
    KNOWN = "known"
    APPROVED = "approved"
    UNKNOWN = "unknown"


def parse_network(text: str) -> Network:
    """Parse an address or CIDR (`10.0.0.5`, `10.0.0.0/8`, `::1`); raise ValueError if it is neither."""
    return ipaddress.ip_network(text.strip(), strict=False)


class KnownSources:
    """Classifies client addresses against the allow-list, the admins and the approvals."""

    def __init__(self, known: KnownSettings, approved: Iterable[str] = ()) -> None:
        self.allow = tuple(parse_network(n) for n in known.allow)
        self.admins = tuple(parse_network(n) for n in known.admins)
        self.approved = tuple(parse_network(n) for n in approved)
        self._names = tuple((parse_network(k), v) for k, v in known.names.items())
        self.status = lru_cache(maxsize=65536)(self._status)  # type: ignore[method-assign]

    def _status(self, ip: str) -> Status:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return Status.UNKNOWN
        if any(addr in net for net in self.admins):
            return Status.ADMIN
        if any(addr in net for net in self.allow):
            return Status.KNOWN
        if any(addr in net for net in self.approved):
            return Status.APPROVED
        return Status.UNKNOWN

    def status(self, ip: str) -> Status:  # replaced per instance by a cached version in __init__
        return self._status(ip)

    def is_known(self, ip: str) -> bool:
        return self.status(ip) is not Status.UNKNOWN

    def name(self, ip: str) -> str | None:
        """Return the friendly name configured for this address (most specific network wins)."""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        matches = [(net.prefixlen, name) for net, name in self._names if addr in net]
        return max(matches)[1] if matches else None


def canonical_network(text: str) -> str:
    """Return `10.0.0.5` for an address (or a /32, /128) and `10.0.0.0/24` for a network, the form an
    approval is stored in; raise ValueError for anything else."""
    net = parse_network(text)
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


class ApprovalNotes:
    """The note given with each approval (`sources approve --note`): for an address, the note of the
    most specific approved network holding it that has one."""

    def __init__(self, approvals: Iterable[tuple[str, str | None]]) -> None:
        self._notes = tuple((parse_network(net), note) for net, note in approvals if note)

    def note(self, ip: str) -> str | None:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        matches = [
            (net.prefixlen, note) for net, note in self._notes if addr.version == net.version and addr in net
        ]
        return max(matches)[1] if matches else None
