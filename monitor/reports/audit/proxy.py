"""The reverse proxy and the firewall in front of Ollama, from their configuration: nginx files below
/etc/nginx, the Caddyfile, `ufw status`, `nft list ruleset`. Heuristics, read-only, never raising.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from monitor.reports.audit.host import TEXT_CAP, HostProbe, read_text

CONFIG_FILES_CAP = 500  # files read below /etc/nginx

# --- reverse proxy configuration -------------------------------------------------------------------


@dataclass(frozen=True)
class ProxySite:
    """A reverse-proxy configuration that forwards to an Ollama port."""

    server: str  # "nginx" or "caddy"
    file: str
    name: str  # server_name / site address
    auth: str  # the directive that authenticates, "" when none
    tls: bool


_NGINX_UPSTREAM = re.compile(r"\bupstream\s+([\w.-]+)\s*\{([^}]*)\}", re.S)
# A directive starts a line or follows `{`, `}` or `;` (one-line blocks are common in snippets).
_NGINX_AUTH = re.compile(r"(?:^|[{};])\s*(auth_basic|auth_request|auth_jwt)\s+(?=\S)(?!off\s*;)[^;]*;", re.M)
_NGINX_TLS = re.compile(r"(?:^|[{};])\s*listen\s+[^;]*\b(?:ssl|quic)\b[^;]*;", re.M)
_NGINX_NAME = re.compile(r"(?:^|[{};])\s*server_name\s+([^;]*);", re.M)


def _strip_comments(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def nginx_sites(probe: HostProbe, ports: Iterable[int]) -> tuple[list[ProxySite], list[str]]:
    """Find nginx config files below /etc/nginx that proxy to an Ollama port (directly or through an
    upstream) and say whether each authenticates and listens with TLS. Per-file: a heuristic, not a
    full nginx parser."""
    root = probe.etc_root / "nginx"
    notes: list[str] = []
    texts: dict[Path, str] = {}
    for dirpath, _dirs, filenames in os.walk(
        root, onerror=lambda e: notes.append(f"could not list {e.filename}")
    ):
        for fname in sorted(filenames):
            if len(texts) >= CONFIG_FILES_CAP:
                break
            path = Path(dirpath) / fname
            text = read_text(path)
            if text is None:
                notes.append(f"could not read {path}")
            else:
                texts[path] = _strip_comments(text)
    port_re = "|".join(str(p) for p in sorted(set(ports)))
    to_port = re.compile(rf":(?:{port_re})\b")
    upstreams = {
        m.group(1) for t in texts.values() for m in _NGINX_UPSTREAM.finditer(t) if to_port.search(m.group(2))
    }
    targets = [rf"proxy_pass\s+https?://[^;]*:(?:{port_re})\b"] + [
        rf"proxy_pass\s+https?://{re.escape(u)}\b" for u in sorted(upstreams)
    ]
    proxy_re = re.compile("|".join(targets))
    sites = []
    for path, text in texts.items():
        if not proxy_re.search(text):
            continue
        auth = _NGINX_AUTH.search(text)
        names = " ".join(m.group(1).strip() for m in _NGINX_NAME.finditer(text)) or "_"
        sites.append(
            ProxySite(
                "nginx",
                str(path),
                names[:TEXT_CAP],
                auth.group(1) if auth else "",
                bool(_NGINX_TLS.search(text)),
            )
        )
    return sites, notes


_CADDY_AUTH = re.compile(r"^\s*(basicauth|basic_auth|forward_auth|jwtauth)\b", re.M)


def _caddy_blocks(text: str) -> list[tuple[str, str]]:
    """Split a Caddyfile into top-level (label, body) blocks by brace depth. A Caddyfile with a single
    site may omit the braces: then its first line is the label and the rest the body."""
    blocks: list[tuple[str, str]] = []
    lines = _strip_comments(text).splitlines()
    depth = 0
    label = ""
    body: list[str] = []
    for line in lines:
        stripped = line.strip()
        delta = line.count("{") - line.count("}")
        if depth == 0:
            if stripped.endswith("{"):
                label, body, depth = stripped[:-1].strip(), [], max(delta, 0)
                if depth == 0:
                    blocks.append((label, ""))
            continue
        depth += delta
        if depth <= 0:
            blocks.append((label, "\n".join(body)))
            depth = 0
        else:
            body.append(line)
    if not blocks:
        rest = [ln for ln in lines if ln.strip()]
        if rest:
            blocks.append((rest[0].strip(), "\n".join(rest[1:])))
    return blocks


def _caddy_tls(label: str) -> bool:
    """Caddy serves HTTPS automatically for site addresses that name a host (or say https://)."""
    for address in re.split(r"[\s,]+", label):
        if not address:
            continue
        if address.startswith("https://"):
            return True
        if address.startswith("http://") or address.startswith(":"):
            continue
        host = address.split("/", 1)[0].rsplit(":", 1)[0] if address.count(":") <= 1 else address
        if host and not host.startswith("("):
            return True
    return False


def caddy_sites(probe: HostProbe, ports: Iterable[int]) -> tuple[list[ProxySite], list[str]]:
    """Find Caddyfile sites that `reverse_proxy` to an Ollama port; say whether they authenticate and
    get automatic HTTPS."""
    path = probe.etc_root / "caddy" / "Caddyfile"
    if not path.exists():
        return [], []
    text = read_text(path)
    if text is None:
        return [], [f"could not read {path}"]
    port_re = "|".join(str(p) for p in sorted(set(ports)))
    proxy_re = re.compile(rf"\breverse_proxy\b[^\n]*:(?:{port_re})\b")
    sites = []
    for label, body in _caddy_blocks(text):
        if not label or label.startswith("(") or not proxy_re.search(body):
            continue
        auth = _CADDY_AUTH.search(body)
        sites.append(
            ProxySite("caddy", str(path), label[:TEXT_CAP], auth.group(1) if auth else "", _caddy_tls(label))
        )
    return sites, []


# --- firewall ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FirewallState:
    tool: str  # "ufw" or "nft"
    readable: bool
    active: bool | None = None  # ufw: Status active; nft: any rules loaded
    port_rules: tuple[str, ...] = ()  # rule lines that mention an Ollama port
    note: str = ""


def firewall_states(probe: HostProbe, ports: Iterable[int]) -> list[FirewallState]:
    """Read ufw's status and nftables' ruleset where those tools exist. Both usually need root: a
    failure is reported as unreadable, never raised."""
    port_set = {str(p) for p in ports}
    states = []
    ufw = probe.run(["ufw", "status"])
    if ufw is not None:
        text = ufw.stdout
        if not ufw.ok or "Status:" not in text:
            states.append(
                FirewallState("ufw", False, note=ufw.problem() if not ufw.ok else "unexpected output")
            )
        else:
            active = "Status: active" in text
            rules = tuple(
                " ".join(line.split())[:TEXT_CAP]
                for line in text.splitlines()
                if line.split() and line.split()[0].split("/")[0] in port_set
            )
            states.append(FirewallState("ufw", True, active, rules))
    nft = probe.run(["nft", "list", "ruleset"])
    if nft is not None:
        if not nft.ok:
            states.append(FirewallState("nft", False, note=nft.problem()))
        else:
            port_alt = "|".join(sorted(port_set))
            mention = re.compile(rf"dport\s+(?:\{{[^}}]*\b(?:{port_alt})\b[^}}]*\}}|(?:{port_alt})\b)")
            rules = tuple(
                " ".join(ln.split())[:TEXT_CAP] for ln in nft.stdout.splitlines() if mention.search(ln)
            )
            states.append(FirewallState("nft", True, bool(nft.stdout.strip()), rules))
    return states
