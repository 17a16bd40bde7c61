"""A deterministic, seeded traffic simulator for an Ollama server and its attackers.

Given a start time, a number of days and a seed, `simulate` returns the same list of `Event`s every
time: weeks of normal traffic from 25 known clients (office users with a diurnal, weekday rhythm, an
Open WebUI server, a CI bot, a nightly batch job, an admin who pulls models) plus any of the named
SCENARIOS (recon, freeloading, management calls, a known client turning hostile at night, an IPv6
prober, a slow drip, a wave of unknown addresses). `known_settings()` returns the `[known]` config that
matches the simulated clients. Renderers turn an event into an Ollama Gin line or an nginx combined line.

Pure: no I/O except `write_log`. Used by the tests, the demo and the benchmarks.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

from monitor.config import KnownSettings

DEFAULT_START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
MODELS = ("llama3.2:3b", "qwen2.5:7b", "mistral:7b", "nomic-embed-text", "gemma3:12b", "phi4:14b")


class Event(NamedTuple):
    """One simulated request. `ts` is the time the log line records (UTC)."""

    ts: datetime
    client_ip: str
    method: str
    path: str
    status: int
    latency_ms: float
    bytes_sent: int
    user_agent: str
    scenario: str = "normal"


# --- the known clients --------------------------------------------------------------------------
ADMIN_IP = "10.0.0.2"
WEBUI_IP = "10.0.2.10"
CI_IP = "10.0.2.5"
BATCH_IP = "10.0.2.6"
USER_IPS = tuple(f"10.0.1.{n}" for n in range(11, 32))  # 21 office users
KNOWN_IPS = (ADMIN_IP, WEBUI_IP, CI_IP, BATCH_IP, *USER_IPS)  # 25 clients

# Scenario actors.
RECON_IP = "203.0.113.7"
FREELOAD_IP = "198.51.100.23"
MGMT_UNKNOWN_IP = "192.0.2.50"
MGMT_KNOWN_IP = USER_IPS[4]  # 10.0.1.15: a known user who is not an admin
HOSTILE_IP = USER_IPS[9]  # 10.0.1.20
IPV6_IP = "2001:db8:dead::beef"
DRIP_IP = "198.51.100.77"
WAVE_PREFIX = "45.83."

_BROWSER_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
)


def known_settings() -> KnownSettings:
    """Return the `[known]` settings that match the simulated clients (admin separate from users)."""
    return KnownSettings(
        allow=["127.0.0.0/8", "::1/128", "10.0.1.0/24", "10.0.2.0/24"],
        admins=[f"{ADMIN_IP}/32"],
        names={
            ADMIN_IP: "admin-workstation",
            WEBUI_IP: "open-webui",
            CI_IP: "ci-bot",
            BATCH_IP: "nightly-batch",
        },
    )


def known_config() -> dict[str, object]:
    """The same as `known_settings()`, as the `[known]` table of a TOML config."""
    return known_settings().model_dump()


class _Gen:
    """Helpers around one seeded Random; every draw goes through it so runs are reproducible."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def latency(self, kind: str) -> float:
        r = self.rng
        if kind == "inference":
            return r.lognormvariate(7.3, 0.8)  # ~1.5 s median, long tail
        if kind == "embed":
            return r.lognormvariate(3.5, 0.5)  # ~30 ms
        if kind == "pull":
            return r.uniform(20_000, 180_000)
        return r.lognormvariate(0.0, 0.7)  # ~1 ms

    def event(
        self,
        ts: datetime,
        ip: str,
        method: str,
        path: str,
        ua: str,
        kind: str,
        status: int = 200,
        scenario: str = "normal",
    ) -> Event:
        size = {
            "inference": int(self.rng.lognormvariate(7.5, 0.9)),
            "embed": int(self.rng.uniform(2000, 9000)),
        }
        return Event(
            ts,
            ip,
            method,
            path,
            status,
            round(self.latency(kind), 3),
            size.get(kind, int(self.rng.uniform(40, 900))),
            ua,
            scenario,
        )


def _office_user(g: _Gen, ip: str, day: datetime, activity: float) -> list[Event]:
    if day.weekday() >= 5 and g.rng.random() > 0.15:  # most users stay home at the weekend
        return []
    out: list[Event] = []
    start_h = g.rng.uniform(7.5, 10.0)
    end_h = g.rng.uniform(16.0, 19.0)
    t = day + timedelta(hours=start_h)
    end = day + timedelta(hours=end_h)
    mean_gap = 3600.0 / (12 * activity)
    while t < end:
        # Open WebUI-style sessions: tags on load, sometimes show, then a few chats.
        out.append(g.event(t, ip, "GET", "/api/tags", _BROWSER_UA, "meta"))
        if g.rng.random() < 0.3:
            out.append(g.event(t + timedelta(seconds=1), ip, "POST", "/api/show", _BROWSER_UA, "meta"))
        for _ in range(g.rng.randint(1, 6)):
            t += timedelta(seconds=g.rng.expovariate(1 / 40))
            out.append(g.event(t, ip, "POST", "/api/chat", _BROWSER_UA, "inference"))
        t += timedelta(seconds=g.rng.expovariate(1 / mean_gap))
    return out


def _webui(g: _Gen, day: datetime) -> list[Event]:
    out: list[Event] = []
    rate = 60 if day.weekday() < 5 else 20  # requests an hour at the peak
    for hour in range(7, 23):
        n = max(0, int(g.rng.gauss(rate * (1.0 if 9 <= hour <= 17 else 0.4), 5)))
        for _ in range(n):
            t = day + timedelta(hours=hour, seconds=g.rng.uniform(0, 3600))
            if g.rng.random() < 0.15:
                out.append(g.event(t, WEBUI_IP, "GET", "/api/tags", "open-webui/0.6", "meta"))
            else:
                out.append(g.event(t, WEBUI_IP, "POST", "/api/chat", "open-webui/0.6", "inference"))
    return out


def _ci_bot(g: _Gen, day: datetime) -> list[Event]:
    if day.weekday() >= 5:
        return []
    out: list[Event] = []
    for hour in range(9, 18):
        if g.rng.random() < 0.3:
            continue
        t = day + timedelta(hours=hour, minutes=g.rng.uniform(0, 50))
        out.append(g.event(t, CI_IP, "GET", "/api/version", "python-httpx/0.27", "meta"))
        for _ in range(g.rng.randint(10, 25)):
            t += timedelta(seconds=g.rng.uniform(1, 8))
            out.append(g.event(t, CI_IP, "POST", "/api/generate", "python-httpx/0.27", "inference"))
    return out


def _batch_job(g: _Gen, day: datetime) -> list[Event]:
    t = day + timedelta(hours=2, minutes=g.rng.uniform(0, 5))
    out = [g.event(t, BATCH_IP, "GET", "/api/tags", "batch-embedder/1.2", "meta")]
    for _ in range(g.rng.randint(120, 180)):
        t += timedelta(seconds=g.rng.uniform(2, 9))
        out.append(g.event(t, BATCH_IP, "POST", "/api/embed", "batch-embedder/1.2", "embed"))
    return out


def _admin(g: _Gen, day: datetime) -> list[Event]:
    if day.weekday() >= 5:
        return []
    out: list[Event] = []
    t = day + timedelta(hours=g.rng.uniform(9, 11))
    out.append(g.event(t, ADMIN_IP, "GET", "/api/ps", "ollama/0.12 (amd64 linux)", "meta"))
    if day.weekday() == 1:  # Tuesday: model updates
        for model in g.rng.sample(MODELS, 2):
            t += timedelta(minutes=g.rng.uniform(1, 5))
            out.append(g.event(t, ADMIN_IP, "POST", "/api/pull", "ollama/0.12 (amd64 linux)", "pull"))
            del model
        out.append(
            g.event(
                t + timedelta(minutes=4), ADMIN_IP, "GET", "/api/tags", "ollama/0.12 (amd64 linux)", "meta"
            )
        )
    for _ in range(g.rng.randint(0, 8)):
        t += timedelta(minutes=g.rng.uniform(5, 40))
        out.append(g.event(t, ADMIN_IP, "POST", "/api/generate", "ollama/0.12 (amd64 linux)", "inference"))
    return out


def normal_traffic(start: datetime, days: int, seed: int = 7) -> list[Event]:
    """Return `days` days of normal traffic from the 25 known clients, starting at midnight of `start`."""
    g = _Gen(seed)
    activity = {ip: g.rng.uniform(0.5, 1.5) for ip in USER_IPS}
    day0 = start.replace(hour=0, minute=0, second=0, microsecond=0)
    out: list[Event] = []
    for d in range(days):
        day = day0 + timedelta(days=d)
        for ip in USER_IPS:
            out.extend(_office_user(g, ip, day, activity[ip]))
        out.extend(_webui(g, day))
        out.extend(_ci_bot(g, day))
        out.extend(_batch_job(g, day))
        out.extend(_admin(g, day))
    return out


# --- scenarios ------------------------------------------------------------------------------------
def recon(g: _Gen, t: datetime) -> list[Event]:
    """An unknown address looks around: `/`, version, tags, then show on every model."""
    ua, s = "python-requests/2.31", "recon"
    out = [
        g.event(t, RECON_IP, "GET", "/", ua, "meta", scenario=s),
        g.event(t + timedelta(seconds=2), RECON_IP, "GET", "/api/version", ua, "meta", scenario=s),
        g.event(t + timedelta(seconds=3), RECON_IP, "GET", "/api/tags", ua, "meta", scenario=s),
    ]
    for i, _model in enumerate(MODELS):
        out.append(
            g.event(t + timedelta(seconds=5 + i), RECON_IP, "POST", "/api/show", ua, "meta", scenario=s)
        )
    return out


def freeload(g: _Gen, t: datetime) -> list[Event]:
    """An unknown address finds the open port and runs its own chat workload for two hours."""
    ua, s = "python-httpx/0.28", "freeload"
    out = [
        g.event(t, FREELOAD_IP, "GET", "/", ua, "meta", scenario=s),
        g.event(t + timedelta(seconds=1), FREELOAD_IP, "GET", "/api/tags", ua, "meta", scenario=s),
    ]
    for i in range(300):
        out.append(
            g.event(
                t + timedelta(seconds=5 + i * 24),
                FREELOAD_IP,
                "POST",
                "/api/chat",
                ua,
                "inference",
                scenario=s,
            )
        )
    return out


def management_unknown(g: _Gen, t: datetime) -> list[Event]:
    """An unknown address pushes a blob, creates a model and pushes it out (exfiltration footprint)."""
    ua, s, ip = "Go-http-client/1.1", "management-unknown", MGMT_UNKNOWN_IP
    steps = [
        ("POST", "/api/blobs/sha256:" + "ab" * 32, 201),
        ("POST", "/api/create", 200),
        ("POST", "/api/push", 200),
        ("DELETE", "/api/delete", 200),
    ]
    return [
        g.event(t + timedelta(seconds=10 * i), ip, m, p, ua, "meta", status=st, scenario=s)
        for i, (m, p, st) in enumerate(steps)
    ]


def management_known(g: _Gen, t: datetime) -> list[Event]:
    """A known user who is not an admin pulls a model and deletes another."""
    s, ip = "management-known", MGMT_KNOWN_IP
    return [
        g.event(t, ip, "POST", "/api/pull", "ollama/0.12 (amd64 linux)", "pull", scenario=s),
        g.event(
            t + timedelta(minutes=3),
            ip,
            "DELETE",
            "/api/delete",
            "ollama/0.12 (amd64 linux)",
            "meta",
            scenario=s,
        ),
    ]


def hostile_night(g: _Gen, t: datetime) -> list[Event]:
    """A known office user's machine wakes at night and hammers the API with a script (no management)."""
    ua, s, ip = "python-requests/2.32", "hostile-night", HOSTILE_IP
    out: list[Event] = []
    for i in range(900):
        ts = t + timedelta(seconds=i * 3.5)
        if i % 9 == 0:
            out.append(g.event(ts, ip, "POST", "/api/show", ua, "meta", scenario=s))
        elif i % 13 == 0:
            out.append(g.event(ts, ip, "GET", "/api/tags", ua, "meta", scenario=s))
        else:
            out.append(g.event(ts, ip, "POST", "/v1/chat/completions", ua, "inference", scenario=s))
    return out


def ipv6_probe(g: _Gen, t: datetime) -> list[Event]:
    """An IPv6 scanner asks for secrets and web-app paths, then Ollama's own endpoints."""
    ua, s = "Mozilla/5.0 zgrab/0.x", "ipv6-probe"
    paths = [
        "/.env",
        "/.git/config",
        "/wp-login.php",
        "/phpmyadmin/index.php",
        "/",
        "/api/tags",
        "/api/version",
    ]
    return [
        g.event(
            t + timedelta(seconds=i), IPV6_IP, "GET", p, ua, "meta", status=404 if i < 4 else 200, scenario=s
        )
        for i, p in enumerate(paths)
    ]


def slow_drip(g: _Gen, t: datetime, hours: int = 72) -> list[Event]:
    """An unknown address sends one generate request an hour, for days (stays under any rate limit)."""
    ua, s = "curl/8.5.0", "slow-drip"
    return [
        g.event(
            t + timedelta(hours=h, minutes=g.rng.uniform(0, 5)),
            DRIP_IP,
            "POST",
            "/api/generate",
            ua,
            "inference",
            scenario=s,
        )
        for h in range(hours)
    ]


def wave(g: _Gen, t: datetime, count: int = 60) -> list[Event]:
    """Dozens of unknown addresses (a botnet sweep) each call `/` and `/api/tags` within five minutes."""
    ua, s = "Mozilla/5.0 (compatible; scanner)", "wave"
    out: list[Event] = []
    for i in range(count):
        ip = f"{WAVE_PREFIX}{i // 200}.{10 + i % 200}"
        ts = t + timedelta(seconds=g.rng.uniform(0, 300))
        out.append(g.event(ts, ip, "GET", "/", ua, "meta", scenario=s))
        out.append(g.event(ts + timedelta(seconds=1), ip, "GET", "/api/tags", ua, "meta", scenario=s))
    return out


ScenarioFn = Callable[[_Gen, datetime], list[Event]]
SCENARIOS: dict[str, ScenarioFn] = {
    "recon": recon,
    "freeload": freeload,
    "management-unknown": management_unknown,
    "management-known": management_known,
    "hostile-night": hostile_night,
    "ipv6-probe": ipv6_probe,
    "slow-drip": slow_drip,
    "wave": wave,
}
# When each scenario starts, as an offset from the start of the simulation (days, hours):
# chosen so that they do not overlap and fall after the detector has a few days of history.
DEFAULT_SCHEDULE: dict[str, timedelta] = {
    "recon": timedelta(days=3, hours=14, minutes=5),
    "freeload": timedelta(days=4, hours=20, minutes=10),
    "management-unknown": timedelta(days=5, hours=11, minutes=30),
    "management-known": timedelta(days=5, hours=15, minutes=20),
    "hostile-night": timedelta(days=7, hours=2, minutes=40),
    "ipv6-probe": timedelta(days=8, hours=9, minutes=15),
    "slow-drip": timedelta(days=8, hours=12, minutes=0),
    "wave": timedelta(days=9, hours=16, minutes=45),
}


def simulate(
    start: datetime = DEFAULT_START,
    days: int = 21,
    seed: int = 7,
    scenarios: Iterable[str] | dict[str, timedelta] = (),
) -> list[Event]:
    """Return normal traffic plus the named scenarios, sorted by time.

    `scenarios` is a list of names (started at DEFAULT_SCHEDULE offsets) or a mapping name -> offset
    from `start`. Raise KeyError for an unknown scenario name.
    """
    events = normal_traffic(start, days, seed)
    schedule = scenarios if isinstance(scenarios, dict) else {n: DEFAULT_SCHEDULE[n] for n in scenarios}
    g = _Gen(seed + 1)
    base = start.replace(hour=0, minute=0, second=0, microsecond=0)
    for name, offset in schedule.items():
        events.extend(SCENARIOS[name](g, base + offset))
    events.sort(key=lambda e: e.ts)
    return events


# --- renderers --------------------------------------------------------------------------------------
def go_duration(ms: float) -> str:
    """Format milliseconds the way Go prints a time.Duration (`23.668µs`, `605.647173ms`, `1.356s`, `2m10s`)."""
    ns = int(round(ms * 1_000_000))
    if ns == 0:
        return "0s"
    if ns < 1_000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return _trim(ns / 1_000) + "µs"
    if ns < 1_000_000_000:
        return _trim(ns / 1_000_000) + "ms"
    secs = ns / 1_000_000_000
    if secs < 60:
        return _trim(secs) + "s"
    minutes, rest = divmod(secs, 60)
    hours, minutes = divmod(int(minutes), 60)
    text = (f"{hours}h" if hours else "") + f"{minutes}m" + _trim(rest) + "s"
    return text


def _trim(value: float) -> str:
    return f"{value:.9f}".rstrip("0").rstrip(".")


def _go_quote(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
    return '"' + "".join(out) + '"'


def to_gin(ev: Event) -> str:
    """Render an event as Ollama's Gin access line: `[GIN] %v |%s %3d %s| %13v | %15s |%s %-7s %s %#v`."""
    when = ev.ts.astimezone(UTC).strftime("%Y/%m/%d - %H:%M:%S")
    return f"[GIN] {when} | {ev.status:3d} | {go_duration(ev.latency_ms):>13} | {ev.client_ip:>15} | {ev.method:<7}  {_go_quote(ev.path)}"


def to_nginx(ev: Event) -> str:
    """Render an event as an nginx `combined` line (time in UTC, `+0000`)."""
    when = ev.ts.astimezone(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
    ua = ev.user_agent.replace('"', "\\x22")
    return (
        f'{ev.client_ip} - - [{when}] "{ev.method} {ev.path} HTTP/1.1" {ev.status} {ev.bytes_sent} "-" "{ua}"'
    )


RENDERERS: dict[str, Callable[[Event], str]] = {"ollama": to_gin, "nginx": to_nginx}


def render(events: Sequence[Event], fmt: str = "ollama") -> list[str]:
    """Render events as log lines of the format `ollama` (Gin) or `nginx` (combined)."""
    fn = RENDERERS[fmt]
    return [fn(e) for e in events]


def write_log(events: Sequence[Event], path: str | Path, fmt: str = "ollama") -> Path:
    """Write events as a log file of `fmt`; return the path."""
    path = Path(path)
    path.write_text("\n".join(render(events, fmt)) + "\n", encoding="utf-8")
    return path
