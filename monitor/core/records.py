"""Frozen records that flow one way between the stages: source -> parse -> store -> rules -> alert.

This is the leaf module: it imports nothing of ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple


class Request(NamedTuple):
    """One HTTP request as a log line recorded it.

    A NamedTuple rather than a frozen dataclass: it is just as immutable, but three times cheaper to
    build, and the ingest hot path builds a million of them in a few seconds.

    `ts` is timezone-aware UTC: the time the line says the request happened (the end of the request for
    Gin lines, which log on completion). `client_ip` is the canonical text form of the address we
    believe made the request: the TCP peer, or the forwarded-for value when the peer is a trusted proxy.
    `peer_ip` keeps the address the line gave as the peer when it differs from `client_ip`.
    Fields a format does not carry are None.
    """

    ts: datetime
    client_ip: str
    method: str | None
    path: str | None
    status: int | None
    latency_ms: float | None = None
    bytes_sent: int | None = None
    user_agent: str | None = None
    forwarded_for: str | None = None
    peer_ip: str | None = None


@dataclass(frozen=True, slots=True)
class Reject:
    """A line that could not be parsed, with a short machine-readable reason."""

    reason: str


@dataclass(frozen=True, slots=True)
class Skip:
    """A line that is deliberately not a request."""

    reason: str = "not a request"


ParseResult = Request | Skip | Reject


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """How far a source has been read: a file by fingerprint and byte position, or a journal cursor."""

    source: str
    fingerprint: str
    position: int
    path: str = ""
    cursor: str | None = None


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return {"info": 0, "warning": 1, "critical": 2}[self.value]


@dataclass(frozen=True, slots=True)
class Alert:
    """A finding worth telling a person about.

    `key` deduplicates (rule plus subject); `client_ips` lists every source the alert covers;
    `ts` is the log time that triggered it (UTC). `details` holds structured facts for JSON output.
    """

    ts: datetime
    rule: str
    severity: Severity
    title: str
    message: str
    client_ips: tuple[str, ...]
    key: str
    details: dict[str, object] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True, slots=True)
class Notification:
    """What is actually sent to people: one alert, or a digest of many.

    `client_ips` lists every source the notification covers (a digest lists all of them, even when
    its text names only the top few). `ts` is the log time at which it was emitted (UTC).
    """

    id: str
    ts: datetime
    rule: str
    severity: Severity
    title: str
    message: str
    client_ips: tuple[str, ...]
    alerts: int = 1  # how many alerts it stands for (1, or the digest's count)
