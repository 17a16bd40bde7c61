"""parse-failures: lines of a log source that could not be parsed (rejects), in bulk.

A reject is a line that should have been a request but could not be read. One now and then is noise
(a TLS handshake on a plain port, a truncated line); a stream of them is a changed log format (the
requests are no longer watched) or someone writing lines we cannot read to hide among them. Both need
a person, and a line we cannot read must never hide its sender: the first IP-looking token of a
rejected line is taken as its client and named in the alert.

`ParseFailures.rejected(source, rejects, now)` counts a batch's rejects per minute of `now` (the
clock of the batch: wall time live, log time in replay); once the source's rejects within WINDOW
reach `[rules] parse_failures_threshold` it raises one alert per source per cooldown. State is a
dozen minute buckets per log source, each with a bounded number of reasons and addresses, plus three
samples: nothing grows with the traffic.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from monitor.core.records import Alert, Severity
from monitor.core.sanitize import for_terminal, neutralise
from monitor.detect.rules import text as rules_text
from monitor.detect.rules.base import Shared

WINDOW = timedelta(minutes=10)
SAMPLES = 3  # sample lines kept per source (the latest)
KEEP = 50  # distinct reasons and addresses counted per minute; more are lumped together
SCAN_CHARS = 1_000  # an address is looked for in the first characters of a line only
_OTHER = "(other reasons)"

# Runs of hex digits, dots and colons with at least one separator: every IPv4 and IPv6 literal
# (with a port, in brackets or after `for=`) is one such run or starts one.
_CANDIDATE = re.compile(r"[0-9A-Fa-f]*[.:][0-9A-Fa-f.:]*")


def first_address(line: str) -> str | None:
    """Return the first IP address written in `line` (canonical text; IPv4-mapped IPv6 as IPv4), or None.

    `203.0.113.5:4444` gives 203.0.113.5; `[2001:db8::5]:443` gives 2001:db8::5. Timestamps, versions
    and durations (`08:52:32`, `HTTP/1.1`, `1.35s`) are not addresses; neither is `0.0.0.0` or `::`.
    """
    for match in _CANDIDATE.finditer(line, 0, SCAN_CHARS):
        token = match.group().rstrip(".:").lstrip(".")
        if token.startswith(":") and not token.startswith("::"):  # `host:1.2.3.4`, `"ip":...`
            token = token[1:]
        if len(token) < 3:
            continue
        for text in (token, token.rsplit(":", 1)[0] if token.count(":") == 1 else ""):
            if not text:
                continue
            try:
                addr = ipaddress.ip_address(text)
            except ValueError:
                continue
            if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
                addr = addr.ipv4_mapped
            if not addr.is_unspecified:
                return str(addr)
    return None


@dataclass(frozen=True, slots=True)
class Finding:
    """A source's rejects within WINDOW: counts by reason and by address (most first), samples."""

    source: str
    total: int
    reasons: list[tuple[str, int]]
    addresses: list[tuple[str, int]]
    samples: list[tuple[str, str]]  # (reason, raw text), the latest last
    first: datetime
    last: datetime


@dataclass(slots=True)
class _Minute:
    reasons: Counter[str] = field(default_factory=Counter)
    addresses: Counter[str] = field(default_factory=Counter)


def _count(counter: Counter[str], key: str, other: str | None) -> None:
    if key in counter or len(counter) < KEEP:
        counter[key] += 1
    elif other is not None:
        counter[other] += 1


@dataclass(slots=True)
class _SourceRejects:
    minutes: dict[datetime, _Minute] = field(default_factory=dict)
    samples: deque[tuple[datetime, str, str]] = field(default_factory=lambda: deque(maxlen=SAMPLES))


class ParseFailures:
    """Counts rejects per log source over a sliding WINDOW; see the module docstring."""

    id = "parse-failures"

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.threshold = shared.settings.parse_failures_threshold
        self._sources: dict[str, _SourceRejects] = {}

    def rejected(self, source: str, rejects: Sequence[tuple[int, str, str]], now: datetime) -> list[Alert]:
        """The alert (at most one) that `rejects` of `source` at `now` raise."""
        found = self.observe(source, rejects, now)
        if found is None:
            return []
        key = f"parse-failures:{source}"
        if not self.shared.cooldowns.gate(key, self.id, now):
            return []
        ips = tuple(ip for ip, _n in found.addresses[:20])
        named = [(self.shared.who(ip), n) for ip, n in found.addresses[:10]]
        title, message = parse_failures_text(found, named, WINDOW, self.threshold)
        details: dict[str, object] = {
            "source": source,
            "rejects": found.total,
            "reasons": dict(found.reasons[:20]),
            "addresses": dict(found.addresses[:20]),
        }
        return [Alert(now, self.id, Severity.WARNING, title, message, ips, key, details)]

    def observe(self, source: str, rejects: Sequence[tuple[int, str, str]], now: datetime) -> Finding | None:
        """Count `rejects` ((offset, reason, raw text) as the store keeps them) of `source` at `now`;
        return a Finding when the source's rejects within WINDOW reach the threshold."""
        state = self._sources.setdefault(source, _SourceRejects())
        minute = now.replace(second=0, microsecond=0)
        bucket = state.minutes.setdefault(minute, _Minute())
        for _offset, reason, text in rejects:
            _count(bucket.reasons, reason[:200], _OTHER)
            address = first_address(text)
            if address is not None:
                _count(bucket.addresses, address, None)
        for _offset, reason, text in rejects[-SAMPLES:]:
            state.samples.append((now, reason, text[:SCAN_CHARS]))
        for old in [m for m in state.minutes if abs(minute - m) >= WINDOW]:  # out of every window
            del state.minutes[old]
        live = [(m, b) for m, b in state.minutes.items() if timedelta(0) <= minute - m < WINDOW]
        reasons: Counter[str] = Counter()
        addresses: Counter[str] = Counter()
        for _m, b in live:
            reasons.update(b.reasons)
            addresses.update(b.addresses)
        total = sum(reasons.values())
        if total < self.threshold:
            return None
        first = min(m for m, _b in live)
        samples = [(r, t) for ts, r, t in state.samples if now - ts < WINDOW]
        return Finding(source, total, reasons.most_common(), addresses.most_common(KEEP), samples, first, now)

    def prune(self, now: datetime) -> None:
        """Drop the sources that had no reject within WINDOW of `now`."""
        for source in [
            s for s, st in self._sources.items() if not st.minutes or now - max(st.minutes) >= WINDOW
        ]:
            del self._sources[source]


def parse_failures_text(
    found: Finding, addresses: Sequence[tuple[str, int]], window: timedelta, threshold: int
) -> tuple[str, str]:
    """A log source's rejected lines (`found`); `addresses` = (who, count) of the addresses they carry.

    The raw lines are the attacker's text that no parser vouched for: samples are shown with control
    characters as visible escapes, chat syntax defused and capped, like everything else a person reads."""
    reasons = ", ".join(f"{for_terminal(r, 80)} x{n:,}" for r, n in found.reasons[:6])
    if len(found.reasons) > 6:
        reasons += f" and {len(found.reasons) - 6} more"
    named = ", ".join(f"{who} x{n:,}" for who, n in addresses)
    samples = "".join(
        f"\n  [{for_terminal(r, 60)}] {neutralise(for_terminal(t, 160))}" for r, t in found.samples
    )
    minutes = int(window.total_seconds() // 60)
    message = (
        f"{found.total:,} lines of log source {found.source or '(unnamed)'} could not be parsed within "
        f"{minutes} minutes (threshold: {threshold}).\n"
        f"When: {rules_text.fmt_ts(found.first)} to {rules_text.fmt_ts(found.last)}\n"
        f"Reasons: {reasons}\n"
        + (f"Addresses in the rejected lines: {named}\n" if named else "")
        + f"Samples:{samples}\n"
        f"Why: a stream of lines the monitor cannot read is a changed log format (those requests are not "
        f"being watched) or someone writing lines crafted to be unreadable, whose requests then raise no alert.\n"
        f"Next: `ollama-monitor check FILE --show-rejects` lists them; fix the source's `format` (or the "
        f"proxy's log_format); if the lines name a client you do not know, block it"
        + (f": {rules_text.block_hint(found.addresses[0][0])}" if found.addresses else ".")
    )
    return f"Unreadable lines in log source {found.source or '(unnamed)'} ({found.total:,} rejected)", message
