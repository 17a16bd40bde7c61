"""Immediate rules: evaluated on every stored batch of requests, they alert within seconds of log time.

`RulesEngine.evaluate(requests, now, source=..., is_proxy=...)` returns `Alert`s. The engine is a plain
object: the caller passes the clock (log time in replay, wall time live), cooldown state lives in
memory, and `seed()` restores it from the `alerts` table so a restart does not re-alert inside a
cooldown. No threads, no I/O. The alerts' titles, messages and "Next:" hints are written by
`monitor.rules_text`.

Rules (ids from config.RULE_IDS; each can be disabled in `[rules] disabled`):
- unknown-source: a source that is not known (allow-list, admins, approvals). One alert when it is
  first seen; after that only when it escalates (touches a more dangerous endpoint category) once the
  cooldown has passed, or as a daily reminder while it stays active. This is why a slow drip of one
  request an hour gives a few alerts, not one an hour. More than WAVE_THRESHOLD new ones within ten
  minutes form a wave (one alert for all); the count is kept per minute of log time, so each address
  costs constant work, and at most `max_tracked` addresses are remembered (least recently active first
  out), so no flood of distinct addresses grows the memory.
- management-endpoint (critical): pull, push, create, copy, delete, blobs by anyone not in admins.
- account-endpoint: the ollama.com account and cloud endpoints by anyone not in admins.
- recon-sequence: an unknown source walking the enumeration endpoints (`/` + tags, show + tags, or
  three distinct enumeration calls within ten minutes). Known sources are exempt: Open WebUI and
  friends call tags and show all day.
- scanner-probe: paths only scanners ask for (endpoints.is_probe), from any source.
- auth-failures: a burst of 401/403 responses from one source behind an authenticating proxy
  (proxy sources only: Ollama itself answers 403 to CORS rejections).
- direct-access: Ollama's own log shows a non-loopback client that no proxy source saw, while a proxy
  source is configured: someone bypasses the proxy.
- forwarded-mismatch: a forwarded-for value from a peer that is not a trusted proxy, naming another
  address (a spoofing attempt, or trusted_proxies is missing the proxy).
- parse-failures: a log source's rejected lines reach `[rules] parse_failures_threshold` within ten
  minutes (monitor.rules_rejects): a changed log format, or lines crafted to hide their sender.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from monitor import rules_rejects, rules_text
from monitor.config import RuleSettings
from monitor.endpoints import Category, classify, is_probe, normalise
from monitor.known import KnownSources, Status
from monitor.records import Alert, Request, Severity

RECON_WINDOW = timedelta(minutes=10)
AUTH_WINDOW = timedelta(minutes=10)
DIRECT_GRACE = timedelta(minutes=2)  # a Gin line may be stored before the proxy's line for the same request
PROXY_SEEN = timedelta(minutes=10)
REMINDER = timedelta(hours=24)
WAVE_WINDOW = timedelta(minutes=10)  # new unknown sources within this span count towards a wave
WAVE_THRESHOLD = 3  # more new unknown sources than this in WAVE_WINDOW: one wave alert, not one each
WAVE_BUCKET = timedelta(minutes=1)  # new unknown sources are counted per minute of log time
WAVE_LISTED = 1_000  # addresses a wave alert lists (client_ips); the rest are counted
MAX_TRACKED = 50_000  # unknown addresses (and proxy-seen clients) remembered; least recently active go first
_RANK = {
    Category.OTHER: 0,
    Category.ENUMERATION: 1,
    Category.INFERENCE: 2,
    Category.ACCOUNT: 3,
    Category.MANAGEMENT: 4,
}


@dataclass(slots=True)
class _SourceMemory:
    """What the unknown-source rule remembers about one unknown address (a few fixed-size fields)."""

    first_seen: datetime
    last_alert: datetime | None = None
    worst: int = -1  # highest category rank alerted so far
    seen_rank: int = -1  # highest category rank seen so far
    requests: int = 0
    in_wave: bool = False
    unlisted: int = -1  # the wave alert (generation) that counts it without listing it


@dataclass
class _ReconMemory:
    seen: deque[tuple[datetime, str]] = field(default_factory=deque)


def _is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


class RulesEngine:
    """Evaluates the immediate rules. Create once; call `evaluate` for every stored batch."""

    def __init__(
        self,
        settings: RuleSettings,
        known: KnownSources,
        *,
        proxy_configured: bool = False,
        trusted_proxies: Iterable[str] = (),
        max_tracked: int = MAX_TRACKED,
    ) -> None:
        self.settings = settings
        self.known = known
        self.proxy_configured = proxy_configured
        self._trusted = tuple(ipaddress.ip_network(n, strict=False) for n in trusted_proxies)
        self._last: dict[str, datetime] = {}  # dedup key -> last alert time (cooldowns)
        self._unknown: dict[str, _SourceMemory] = {}
        self._recon: dict[str, _ReconMemory] = {}
        self._auth: dict[str, deque[datetime]] = {}
        self._proxy_seen: dict[str, datetime] = {}  # client ip -> last time a proxy source saw it
        self._pending_direct: dict[str, tuple[datetime, Request, str]] = {}
        self._last_prune: datetime | None = None
        self._rejects = rules_rejects.ParseFailures(settings.parse_failures_threshold)
        self._max_tracked = max_tracked
        # Wave detection, linear in the number of new addresses: first sightings counted per minute of
        # log time, and the recent ones that are not wave members yet (at most WAVE_THRESHOLD + a few).
        self._new_per_minute: dict[datetime, int] = {}
        self._candidates: deque[tuple[datetime, str]] = deque()
        self._window_minute: datetime | None = None  # the minute whose window sum is _window_count
        self._window_count = 0
        # Wave members not yet reported: ip -> (first seen, requests, log source); at most WAVE_LISTED,
        # the others counted in _wave_more (members, requests, last time) under generation _wave_gen.
        self._wave: dict[str, tuple[datetime, int, str]] = {}
        self._wave_more: list[int] = [0, 0]
        self._wave_more_last: datetime | None = None
        self._wave_gen = 0
        self._last_wave: datetime | None = None

    # --- state ---------------------------------------------------------------------------------
    def seed(self, last_alerts: Mapping[str, tuple[datetime, Mapping[str, object]]]) -> None:
        """Restore cooldowns from stored alerts: dedup key -> (time of the last alert, its details)."""
        for key, (ts, details) in last_alerts.items():
            self._last[key] = max(ts, self._last.get(key, ts))
            if key.startswith("unknown-source:"):
                ip = key.split(":", 1)[1]
                first = details.get("first_seen")
                worst = details.get("worst_rank", -1)
                mem = _SourceMemory(
                    first_seen=datetime.fromisoformat(first) if isinstance(first, str) else ts,
                    last_alert=ts,
                    worst=worst if isinstance(worst, int) else -1,
                )
                self._unknown[ip] = mem
        self._cap(self._unknown)

    def state_sizes(self) -> dict[str, int]:
        """How many entries each piece of per-address state holds (for tests and benchmarks)."""
        return {
            "unknown": len(self._unknown),
            "cooldowns": len(self._last),
            "recon": len(self._recon),
            "auth": len(self._auth),
            "proxy_seen": len(self._proxy_seen),
            "pending_direct": len(self._pending_direct),
            "wave_listed": len(self._wave),
            "wave_candidates": len(self._candidates),
        }

    def _cap(self, state: dict[str, Any]) -> None:
        """Forget the oldest entries (insertion order = least recently active) beyond max_tracked."""
        while len(state) > self._max_tracked:
            del state[next(iter(state))]

    def set_known(self, known: KnownSources) -> None:
        """Use new known sources (after an approval or a config reload)."""
        self.known = known
        for ip in [ip for ip in self._unknown if known.is_known(ip)]:
            del self._unknown[ip]

    def enabled(self, rule: str) -> bool:
        return rule not in self.settings.disabled

    def cooldown(self, rule: str) -> timedelta:
        return timedelta(minutes=self.settings.cooldown_for(rule))

    def gate(self, key: str, rule: str, ts: datetime, minimum: timedelta = timedelta(0)) -> bool:
        """Return True (and start a cooldown) if an alert with this key may be raised at `ts`.

        The cooldown is the rule's (settings), or `minimum` if longer."""
        last = self._last.get(key)
        if last is not None and ts - last < max(self.cooldown(rule), minimum):
            return False
        self._last[key] = ts
        return True

    # --- evaluation ----------------------------------------------------------------------------------
    def evaluate(
        self,
        requests: Sequence[Request],
        now: datetime,
        *,
        source: str = "",
        is_proxy: bool = False,
        rejects: Sequence[tuple[int, str, str]] = (),
    ) -> list[Alert]:
        """Given one stored batch from `source` (its requests, and its rejected lines as the store
        keeps them: offset, reason, text), return the alerts it raises (cooldowns applied)."""
        alerts: list[Alert] = []
        if rejects and self.enabled("parse-failures"):
            alerts.extend(self._parse_failures(source, rejects, now))
        by_ip: dict[str, list[Request]] = {}
        for r in requests:
            by_ip.setdefault(r.client_ip, []).append(r)
        if is_proxy:
            for ip, reqs in by_ip.items():
                self._proxy_seen[ip] = max(self._proxy_seen.pop(ip, reqs[-1].ts), reqs[-1].ts)
            self._cap(self._proxy_seen)
        for ip, reqs in by_ip.items():
            status = self.known.status(ip)
            if self.enabled("unknown-source") and status is Status.UNKNOWN:
                alerts.extend(self._unknown_source(ip, reqs, source))
            if status is not Status.ADMIN:
                if self.enabled("management-endpoint"):
                    alerts.extend(self._privileged(ip, reqs, status, Category.MANAGEMENT, source))
                if self.enabled("account-endpoint"):
                    alerts.extend(self._privileged(ip, reqs, status, Category.ACCOUNT, source))
            if self.enabled("recon-sequence") and status is Status.UNKNOWN:
                alerts.extend(self._recon_rule(ip, reqs, source))
            if self.enabled("scanner-probe"):
                alerts.extend(self._probe(ip, reqs, status, source))
            if self.enabled("auth-failures") and is_proxy:
                alerts.extend(self._auth_rule(ip, reqs, source))
            if self.enabled("forwarded-mismatch"):
                alerts.extend(self._forwarded(ip, reqs, source))
            if (
                self.enabled("direct-access")
                and self.proxy_configured
                and not is_proxy
                and not _is_loopback(ip)
                and not self._is_trusted_proxy(ip)
                and ip not in self._pending_direct
            ):
                self._pending_direct[ip] = (reqs[0].ts, reqs[0], source)
                self._cap(self._pending_direct)
        if self.enabled("direct-access"):
            alerts.extend(self._direct(now))
        alerts.extend(self.flush(now))
        self._prune(now)
        return alerts

    def flush(self, now: datetime) -> list[Alert]:
        """Return alerts held for aggregation (a wave of new unknown sources) that are due by `now`."""
        if not self._wave or (self._last_wave is not None and now - self._last_wave < WAVE_WINDOW):
            return []
        members, self._wave = self._wave, {}
        (more, more_requests), self._wave_more = self._wave_more, [0, 0]
        more_last, self._wave_more_last = self._wave_more_last, None
        self._wave_gen += 1
        self._last_wave = now
        ips = tuple(sorted(members, key=lambda ip: members[ip][0]))
        first = min(ts for ts, _n, _s in members.values())
        last = max([ts for ts, _n, _s in members.values()] + ([more_last] if more_last else []))
        total = sum(n for _ts, n, _s in members.values()) + more_requests
        sources = sorted({src for _ts, _n, src in members.values() if src})
        title, message = rules_text.wave_text(ips, total, sources, first, last, more)
        return [
            Alert(
                max(now, last),
                "unknown-source",
                Severity.WARNING,
                title,
                message,
                ips,
                f"unknown-source:wave:{first.isoformat()}",
                {"reason": "wave", "sources": len(ips) + more},
            )
        ]

    def _who(self, ip: str, status: Status) -> str:
        return rules_text.who(ip, self.known.name(ip), status)

    def _count_new(self, ts: datetime) -> int:
        """Count a first sighting at `ts`; return the first sightings in the WAVE_WINDOW up to `ts`
        (whole minutes: the current one and the 9 before it). At most a dozen buckets are kept."""
        minute = floor_minute(ts)
        buckets = self._new_per_minute
        buckets[minute] = buckets.get(minute, 0) + 1
        if minute == self._window_minute:  # the common case: the window's sum is known
            self._window_count += 1
            return self._window_count
        if len(buckets) > WAVE_WINDOW // WAVE_BUCKET + 2:
            newest = max(buckets)
            for old in [m for m in buckets if newest - m >= WAVE_WINDOW]:
                del buckets[old]
        self._window_minute = minute
        self._window_count = sum(n for m, n in buckets.items() if timedelta(0) <= minute - m < WAVE_WINDOW)
        return self._window_count

    def _join_wave(self, ip: str, mem: _SourceMemory, ts: datetime, source: str) -> None:
        """Make `ip` a wave member; one not alerted before is reported by the next wave alert."""
        mem.in_wave = True
        if mem.last_alert is not None:
            return
        mem.last_alert, mem.worst = ts, mem.seen_rank
        if len(self._wave) < WAVE_LISTED:
            self._wave[ip] = (mem.first_seen, mem.requests, source)
        else:  # counted, not listed: a flood must not grow one alert without bound
            mem.unlisted = self._wave_gen
            self._wave_more[0] += 1
            self._wave_more[1] += mem.requests
            self._wave_more_last = max(ts, self._wave_more_last or ts)

    def _unknown_source(self, ip: str, reqs: list[Request], source: str) -> list[Alert]:
        ts = reqs[0].ts
        rank = max(_RANK[classify(r.method, r.path)] for r in reqs)
        known_before = self._unknown.pop(ip, None)  # re-inserted at the end: the dict's order is recency
        mem = self._unknown[ip] = known_before or _SourceMemory(first_seen=ts)
        self._cap(self._unknown)
        if known_before is None:
            self._candidates.append((ts, ip))
            while self._candidates and ts - self._candidates[0][0] > WAVE_WINDOW:
                self._candidates.popleft()
            if self._count_new(ts) > WAVE_THRESHOLD:
                # Part of a wave: reported together (flush). The recent first sightings join it too,
                # each once: it leaves the candidates as it joins, so the work per address is constant.
                while self._candidates:
                    _t, member = self._candidates.popleft()
                    m = self._unknown.get(member)
                    if m is not None and not m.in_wave:
                        self._join_wave(member, m, ts, source)
        mem.requests += len(reqs)
        in_wave = mem.in_wave
        if in_wave and ip in self._wave:
            ts0, n, src = self._wave[ip]
            self._wave[ip] = (ts0, n + len(reqs), src)
        elif in_wave and mem.unlisted == self._wave_gen:
            self._wave_more[1] += len(reqs)
        mem.seen_rank = max(mem.seen_rank, rank)
        key = f"unknown-source:{ip}"
        assert mem.last_alert is not None or not in_wave
        if mem.last_alert is None:
            reason = "first seen"
        elif rank > mem.worst and ts - mem.last_alert >= self.cooldown("unknown-source"):
            reason = "escalated"  # wave members too: a scanner that starts using the API is news
        elif not in_wave and ts - mem.last_alert >= max(REMINDER, self.cooldown("unknown-source")):
            reason = "still active"
        else:
            return []
        mem.last_alert = ts
        mem.worst = max(mem.worst, rank)
        self._last[key] = ts
        inference = sum(1 for r in reqs if classify(r.method, r.path) is Category.INFERENCE)
        severity = Severity.CRITICAL if rank >= _RANK[Category.INFERENCE] else Severity.WARNING
        title, message = rules_text.unknown_source_text(
            ip, reason, source, ts, mem.first_seen, mem.requests, reqs, inference
        )
        return [
            Alert(
                ts,
                "unknown-source",
                severity,
                title,
                message,
                (ip,),
                key,
                {
                    "source": source,
                    "reason": reason,
                    "requests": mem.requests,
                    "first_seen": mem.first_seen.isoformat(),
                    "worst_rank": mem.worst,
                },
            )
        ]

    def _parse_failures(
        self, source: str, rejects: Sequence[tuple[int, str, str]], now: datetime
    ) -> list[Alert]:
        found = self._rejects.observe(source, rejects, now)
        if found is None:
            return []
        key = f"parse-failures:{source}"
        if not self.gate(key, "parse-failures", now):
            return []
        ips = [ip for ip, _n in found.addresses[:20]]
        named = [(self._who(ip, self.known.status(ip)), n) for ip, n in found.addresses[:10]]
        title, message = rules_text.parse_failures_text(
            found, named, rules_rejects.WINDOW, self.settings.parse_failures_threshold
        )
        details: dict[str, object] = {
            "source": source,
            "rejects": found.total,
            "reasons": dict(found.reasons[:20]),
            "addresses": dict(found.addresses[:20]),
        }
        return [Alert(now, "parse-failures", Severity.WARNING, title, message, tuple(ips), key, details)]

    def _privileged(
        self, ip: str, reqs: list[Request], status: Status, cat: Category, source: str
    ) -> list[Alert]:
        hits = [r for r in reqs if classify(r.method, r.path) is cat]
        if not hits:
            return []
        rule = "management-endpoint" if cat is Category.MANAGEMENT else "account-endpoint"
        key = f"{rule}:{ip}"
        ts = hits[0].ts
        if not self.gate(key, rule, ts):
            return []
        ok = [r for r in hits if r.status is not None and r.status < 400]
        severity = (
            Severity.CRITICAL
            if cat is Category.MANAGEMENT or any(r.method == "DELETE" for r in hits)
            else Severity.WARNING
        )
        title, message = rules_text.privileged_text(
            ip, self._who(ip, status), status, cat is Category.MANAGEMENT, source, ts, hits, len(ok)
        )
        return [
            Alert(
                ts,
                rule,
                severity,
                title,
                message,
                (ip,),
                key,
                {"source": source, "calls": len(hits), "succeeded": len(ok), "status": status.value},
            )
        ]

    def _recon_rule(self, ip: str, reqs: list[Request], source: str) -> list[Alert]:
        mem_ = self._unknown.get(ip)
        if mem_ is not None and mem_.in_wave:  # the wave alert covers it
            return []
        found = [
            (r.ts, normalise(r.path)) for r in reqs if classify(r.method, r.path) is Category.ENUMERATION
        ]
        mem = self._recon.get(ip)
        if mem is None:
            if not found:
                return []
            mem = self._recon[ip] = _ReconMemory()
        mem.seen.extend(found)
        if not mem.seen:
            return []
        last_ts = mem.seen[-1][0]
        while mem.seen and last_ts - mem.seen[0][0] > RECON_WINDOW:
            mem.seen.popleft()
        paths = {p for _, p in mem.seen}
        tags = "/api/tags" in paths or "/v1/models" in paths
        if not (
            (tags and ("/" in paths or "/api/show" in paths or "/api/version" in paths)) or len(paths) >= 3
        ):
            return []
        key = f"recon-sequence:{ip}"
        ts = mem.seen[0][0]
        if not self.gate(key, "recon-sequence", last_ts):
            return []
        title, message = rules_text.recon_text(
            ip, sorted(paths), len(mem.seen), RECON_WINDOW, source, ts, last_ts
        )
        return [
            Alert(
                last_ts,
                "recon-sequence",
                Severity.WARNING,
                title,
                message,
                (ip,),
                key,
                {"source": source, "paths": sorted(paths)},
            )
        ]

    def _probe(self, ip: str, reqs: list[Request], status: Status, source: str) -> list[Alert]:
        hits = [r for r in reqs if is_probe(r.path)]
        if not hits:
            return []
        key = f"scanner-probe:{ip}"
        if not self.gate(key, "scanner-probe", hits[0].ts):
            return []
        title, message = rules_text.probe_text(ip, self._who(ip, status), source, hits)
        return [
            Alert(
                hits[0].ts,
                "scanner-probe",
                Severity.WARNING,
                title,
                message,
                (ip,),
                key,
                {"source": source, "calls": len(hits)},
            )
        ]

    def _auth_rule(self, ip: str, reqs: list[Request], source: str) -> list[Alert]:
        failed = [r.ts for r in reqs if r.status in (401, 403)]
        q = self._auth.get(ip)
        if q is None:
            if not failed:  # no state for the clients that never failed
                return []
            q = self._auth[ip] = deque()
            self._cap(self._auth)
        q.extend(failed)
        while q and q[-1] - q[0] > AUTH_WINDOW:
            q.popleft()
        if len(q) < self.settings.auth_failures_threshold:
            return []
        key = f"auth-failures:{ip}"
        if not self.gate(key, "auth-failures", q[-1]):
            return []
        who_ = self._who(ip, self.known.status(ip))
        title, message = rules_text.auth_text(
            ip, who_, source, q, AUTH_WINDOW, self.settings.auth_failures_threshold
        )
        return [
            Alert(
                q[-1],
                "auth-failures",
                Severity.WARNING,
                title,
                message,
                (ip,),
                key,
                {"source": source, "failures": len(q)},
            )
        ]

    def _forwarded(self, ip: str, reqs: list[Request], source: str) -> list[Alert]:
        from monitor.parsers import first_forwarded

        hits = []
        for r in reqs:
            if r.forwarded_for and r.peer_ip is None:
                claimed = first_forwarded(r.forwarded_for)
                if claimed is not None and claimed != ip:
                    hits.append((r, claimed))
        if not hits:
            return []
        key = f"forwarded-mismatch:{ip}"
        ts = hits[0][0].ts
        if not self.gate(key, "forwarded-mismatch", ts):
            return []
        claimed_ips = sorted({c for _, c in hits})
        title, message = rules_text.forwarded_text(
            ip, self._who(ip, self.known.status(ip)), source, ts, len(hits), claimed_ips
        )
        return [
            Alert(
                ts,
                "forwarded-mismatch",
                Severity.WARNING,
                title,
                message,
                (ip,),
                key,
                {"source": source, "claimed": claimed_ips[:20]},
            )
        ]

    def _is_trusted_proxy(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in n for n in self._trusted)

    def _direct(self, now: datetime) -> list[Alert]:
        out: list[Alert] = []
        for ip, (ts, req, source) in list(self._pending_direct.items()):
            if now - ts < DIRECT_GRACE:
                continue
            del self._pending_direct[ip]
            seen = self._proxy_seen.get(ip)
            if seen is not None and abs(seen - ts) <= PROXY_SEEN:
                continue
            key = f"direct-access:{ip}"
            if not self.gate(key, "direct-access", ts):
                continue
            status = self.known.status(ip)
            title, message = rules_text.direct_text(ip, self._who(ip, status), source, ts, req)
            out.append(
                Alert(
                    ts,
                    "direct-access",
                    Severity.WARNING,
                    title,
                    message,
                    (ip,),
                    key,
                    {"source": source},
                )
            )
        return out

    def _prune(self, now: datetime) -> None:
        """Forget state that no rule can use any more (keeps memory bounded under a wave of addresses)."""
        if self._last_prune is not None and now - self._last_prune < timedelta(minutes=10):
            return
        self._last_prune = now
        horizon = max(
            REMINDER,
            max((self.cooldown(r) for r in ("unknown-source", "management-endpoint")), default=REMINDER),
        )
        self._last = {
            k: v for k, v in self._last.items() if now - v < max(horizon, self.cooldown(k.split(":", 1)[0]))
        }
        self._unknown = {
            ip: m
            for ip, m in self._unknown.items()
            if m.last_alert is None or now - m.last_alert < horizon * 2
        }
        self._recon = {
            ip: m for ip, m in self._recon.items() if m.seen and now - m.seen[-1][0] < RECON_WINDOW
        }
        self._auth = {ip: q for ip, q in self._auth.items() if q and now - q[-1] < AUTH_WINDOW}
        self._proxy_seen = {ip: t for ip, t in self._proxy_seen.items() if now - t < PROXY_SEEN * 2}
        self._rejects.forget(now)


def floor_minute(ts: datetime) -> datetime:
    return ts.replace(second=0, microsecond=0)
