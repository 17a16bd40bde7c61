"""The words of the immediate rules' alerts: titles, messages and the "Next:" remediation hints.

Each `*_text` function takes what a rule in `monitor.detect.rules` found and returns `(title, message)`. The
message is several lines: what happened, `Source:`, `When:`, `Calls:` (when there are requests to
show), `Why:` it matters and `Next:` what to do. Log text (paths, methods) is passed through as given:
the parsers have already made control characters inert, and each alert channel escapes for its medium.
Pure functions, no state.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from monitor.core.records import Request
from monitor.detect.known import Status


def fmt_ts(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%d %H:%M:%S UTC")


def approve_hint(ip: str) -> str:
    return f"ollama-monitor sources approve {ip} --note 'who this is'"


def block_hint(ip: str) -> str:
    if ":" in ip:
        return f"sudo ip6tables -I INPUT -s {ip} -p tcp --dport 11434 -j DROP (or `deny {ip};` in nginx)"
    return f"sudo iptables -I INPUT -s {ip} -p tcp --dport 11434 -j DROP (or `deny {ip};` in nginx)"


def _calls(reqs: Sequence[Request], limit: int = 5) -> str:
    """Summarise requests as `POST /api/pull (200) x2, ...` for a message."""
    counts: dict[tuple[str, str, str], int] = {}
    for r in reqs:
        key = (r.method or "-", (r.path or "-")[:120], str(r.status) if r.status is not None else "-")
        counts[key] = counts.get(key, 0) + 1
    parts = [f"{m} {p} ({s})" + (f" x{n}" if n > 1 else "") for (m, p, s), n in list(counts.items())[:limit]]
    if len(counts) > limit:
        parts.append(f"and {len(counts) - limit} more")
    return ", ".join(parts)


def _via(source: str) -> str:
    return f" via {source}" if source else ""


def who(ip: str, name: str | None, status: Status) -> str:
    """`ip (name, status)`, or `ip (status)` for a source without a name."""
    ip = ip or "unknown client"
    return f"{ip} ({name}, {status.value})" if name else f"{ip} ({status.value})"


def wave_text(
    ips: Sequence[str],
    total: int,
    sources: Sequence[str],
    first: datetime,
    last: datetime,
    more: int = 0,
) -> tuple[str, str]:
    """A wave of new unknown sources (`ips` in order of first sighting, and `more` not listed;
    `sources` the log sources)."""
    count = len(ips) + more
    shown = ", ".join(ips[:15]) + (f" and {count - 15:,} more" if count > 15 else "")
    message = (
        f"A wave of new unknown sources is using the Ollama API: {count:,} not reported before "
        f"({total} requests); any earlier ones were alerted on their own.\n"
        f"Sources: {shown}{' via ' + ', '.join(sources) if sources else ''}\n"
        f"When: {fmt_ts(first)} to {fmt_ts(last)}\n"
        f"Why: none of them is in [known] allow or admins or approved; many new addresses within minutes is a "
        f"scan or a botnet sweep, and means the port is reachable from the internet.\n"
        f"Next: firewall port 11434 (or bind Ollama to 127.0.0.1) rather than blocking addresses one by one; "
        f"`ollama-monitor sources list` shows them all."
    )
    return f"Wave of unknown sources using the Ollama API ({count:,} new)", message


def unknown_source_text(
    ip: str,
    reason: str,
    source: str,
    ts: datetime,
    first_seen: datetime,
    total: int,
    reqs: Sequence[Request],
    inference: int,
) -> tuple[str, str]:
    """An unknown source; `reason` is "first seen", "escalated" or "still active"; `total` requests so far."""
    what = {
        "first seen": "A source that is not on the known list is using the Ollama API",
        "escalated": "An unknown source moved on to more dangerous endpoints",
        "still active": "An unknown source is still using the Ollama API",
    }[reason]
    if not ip:  # the line named no address (Gin's empty client column): still a sender we do not know
        message = (
            f"{what}.\nSource: unknown client (the log line gives no address){_via(source)}\n"
            f"When: {fmt_ts(ts)} (first seen {fmt_ts(first_seen)}; {total} request(s) so far)\n"
            f"Calls: {_calls(reqs)}\n"
            f"Why: Ollama logged no client address (a unix-socket peer, or an empty forwarded header), so "
            f"no allow-list can vouch for it.\n"
            f"Next: find the request in the log of whatever connects to Ollama's socket or proxy."
        )
        return f"Unknown source (unknown client) {reason} using the Ollama API", message
    message = (
        f"{what}.\nSource: {ip} (unknown){_via(source)}\n"
        f"When: {fmt_ts(ts)} (first seen {fmt_ts(first_seen)}; {total} request(s) so far)\n"
        f"Calls: {_calls(reqs)}\n"
        f"Why: {ip} is not in [known] allow or admins and has not been approved"
        + (f"; it ran {inference} inference request(s) on your hardware" if inference else "")
        + ".\n"
        f"Next: if you know this client, approve it: {approve_hint(ip)}\n"
        f"Otherwise block it: {block_hint(ip)}"
    )
    return f"Unknown source {ip} {reason} using the Ollama API", message


def privileged_text(
    ip: str,
    source_who: str,
    status: Status,
    management: bool,
    source: str,
    ts: datetime,
    hits: Sequence[Request],
    succeeded: int,
) -> tuple[str, str]:
    """Management (`management`) or account/cloud endpoint calls by a source that is not an admin."""
    kind = "management (changes the model store)" if management else "account/cloud"
    next_step = (
        f"Next: if {ip} should manage models, add it to [known] admins; if not, check what changed "
        f"(`ollama list`) and block it: {block_hint(ip)}"
        if status is not Status.UNKNOWN
        else f"Next: block it now: {block_hint(ip)}; then check `ollama list` for models you did not create"
    )
    message = (
        f"{len(hits)} {kind} call(s) from a source that is not an admin"
        f" ({succeeded} succeeded).\nSource: {source_who}{_via(source)}\n"
        f"When: {fmt_ts(ts)}\nCalls: {_calls(hits)}\n"
        f"Why: only [known] admins may call these endpoints; they can pull, push, overwrite or delete models.\n"
        + next_step
    )
    title = f"{'Management' if management else 'Account'} endpoint called by {ip} ({status.value})"
    return title, message


def recon_text(
    ip: str, paths: Sequence[str], calls: int, window: timedelta, source: str, first: datetime, last: datetime
) -> tuple[str, str]:
    """An unknown source walking the enumeration endpoints `paths` (`calls` calls within `window`)."""
    message = (
        f"An unknown source walked Ollama's enumeration endpoints: {', '.join(paths)} "
        f"({calls} calls within {int(window.total_seconds() // 60)} minutes).\n"
        f"Source: {ip} (unknown){_via(source)}\nWhen: {fmt_ts(first)} to {fmt_ts(last)}\n"
        f"Why: listing models and the server version is what scanners and freeloaders do before using the API.\n"
        f"Next: block it: {block_hint(ip)}; if it is yours, approve it: {approve_hint(ip)}"
    )
    return f"Reconnaissance of the Ollama API from {ip}", message


def probe_text(ip: str, source_who: str, source: str, hits: Sequence[Request]) -> tuple[str, str]:
    """Requests (`hits`, at least one) for paths only vulnerability scanners ask for."""
    message = (
        f"{len(hits)} request(s) for paths only vulnerability scanners ask for.\n"
        f"Source: {source_who}{_via(source)}\nWhen: {fmt_ts(hits[0].ts)}\n"
        f"Calls: {_calls(hits)}\n"
        f"Why: an Ollama host has no .env, .git or PHP pages; someone is scanning this address.\n"
        f"Next: block it ({block_hint(ip)}) and make sure port 11434 is not reachable from the internet."
    )
    return f"Scanner probing from {ip}", message


def auth_text(
    ip: str,
    source_who: str,
    source: str,
    failures: Sequence[datetime],
    window: timedelta,
    threshold: int,
) -> tuple[str, str]:
    """A burst of 401/403 responses at the times `failures` (oldest first) within `window`.

    The rule fires at `threshold` failures."""
    first, last = failures[0], failures[-1]
    message = (
        f"{len(failures)} authentication failures (401/403) within {int(window.total_seconds() // 60)} minutes.\n"
        f"Source: {source_who} via {source or 'the proxy'}\n"
        f"When: {fmt_ts(first)} to {fmt_ts(last)}\n"
        f"Why: a burst of rejected credentials is password or token guessing "
        f"(threshold: {threshold}).\n"
        f"Next: block it ({block_hint(ip)}) or rate-limit it in the proxy; rotate the token if it was leaked."
    )
    return f"Burst of authentication failures from {ip}", message


def forwarded_text(
    ip: str, source_who: str, source: str, ts: datetime, count: int, claimed: Sequence[str]
) -> tuple[str, str]:
    """`count` requests whose X-Forwarded-For names `claimed` (sorted), from the untrusted peer `ip`."""
    message = (
        f"{count} request(s) carried an X-Forwarded-For naming {', '.join(claimed[:5])}, "
        f"but came from {ip}, which is not a trusted proxy.\n"
        f"Source: {source_who}{_via(source)}\nWhen: {fmt_ts(ts)}\n"
        f"Why: Ollama (Gin) logs the forwarded value as the client, so a forged header hides the real sender.\n"
        f"Next: if {ip} is your proxy, add it to the source's trusted_proxies; otherwise treat {ip} as the client "
        f"and block it if unwanted: {block_hint(ip)}"
    )
    return f"Forwarded-for from untrusted peer {ip}", message


def forwarded_unreadable_text(
    ip: str, source_who: str, source: str, ts: datetime, count: int, values: Sequence[str]
) -> tuple[str, str]:
    """`count` requests from the trusted proxy `ip` whose X-Forwarded-For chain has a hop that is no address."""
    shown = ", ".join(repr(v[:80]) for v in values[:3])
    message = (
        f"{count} request(s) came through the trusted proxy {ip} with an X-Forwarded-For hop that is not an "
        f"address ({shown}), so the sender behind it is unknown.\n"
        f"Source: {source_who}{_via(source)}\nWhen: {fmt_ts(ts)}\n"
        f"Why: a client can write any text into X-Forwarded-For; the chain is read from the right up to the "
        f"first hop that is not a trusted proxy, and a hop that cannot be read hides who sent the request.\n"
        f"Next: check the proxy in front of {ip} (it should append the peer address with "
        f"$proxy_add_x_forwarded_for) and look up the request in its own log."
    )
    return f"Unreadable forwarded-for behind trusted proxy {ip}", message


def direct_text(ip: str, source_who: str, source: str, ts: datetime, req: Request) -> tuple[str, str]:
    """A request in Ollama's own log (`source`) that no proxy source logged."""
    message = (
        f"Ollama's own log shows a request from {ip} that no proxy source logged.\n"
        f"Source: {source_who} in {source or 'the Ollama log'}\nWhen: {fmt_ts(ts)}\n"
        f"Calls: {_calls([req])}\n"
        f"Why: a proxy is configured, so clients should reach Ollama only through it; this one went around it "
        f"(Ollama bound to 0.0.0.0, or a forged X-Forwarded-For).\n"
        f"Next: bind Ollama to 127.0.0.1 (OLLAMA_HOST=127.0.0.1:11434) or firewall port 11434: {block_hint(ip)}"
    )
    return f"Direct access to Ollama from {ip}, bypassing the proxy", message
