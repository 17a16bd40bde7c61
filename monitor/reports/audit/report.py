"""Host exposure audit: is this host's Ollama reachable from elsewhere, and how to fix it.

`run_audit(probe, settings, ...)` gathers facts through a `HostProbe` (see `monitor.reports.audit.host`,
`monitor.reports.audit.services`, `monitor.reports.audit.proxy`) and the stored logs (`monitor.reports.audit.logs`), and
returns a `Report`: findings with an id (`category.name`, stable for scripts), a severity (info,
warning, critical), a title, evidence lines and a remediation naming the concrete fix. The report's
exit status is 0 when nothing is above info, 1 with warnings, 2 with anything critical.

Read-only: it reads /proc, /etc and the database, and runs `systemctl show`, `docker ps`/`inspect`,
`ufw status`, `nft list ruleset`. Without root some of that is unreadable; each such gap becomes an
info finding, never an error. Text in findings comes from the system and the logs (attacker-controlled):
the CLI sanitises it before display.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from monitor.config import Settings
from monitor.core.records import Severity
from monitor.reports.audit import remedies as fix
from monitor.reports.audit.findings import SCHEMA_VERSION, Finding, Report
from monitor.reports.audit.host import (
    Exposure,
    HostProbe,
    exposure_of,
    ollama_processes,
    parse_ollama_host,
    read_sockets,
    socket_owners,
    wildcard_origins,
)
from monitor.reports.audit.proxy import ProxySite, caddy_sites, firewall_states, nginx_sites
from monitor.reports.audit.services import docker_containers, unit_env

DEFAULT_PORT = 11434
# Display order within a severity: the sockets are the ground truth, then what configures them.
CATEGORIES = ("socket", "config", "docker", "systemd", "process", "proxy", "firewall", "logs")

__all__ = ["DEFAULT_PORT", "SCHEMA_VERSION", "Finding", "HostProbe", "Report", "run_audit"]


@dataclass
class _Audit:
    probe: HostProbe
    settings: Settings
    ports: tuple[int, ...]
    findings: list[Finding] = field(default_factory=list)

    def add(
        self, id: str, severity: Severity, title: str, evidence: Iterable[str] = (), remediation: str = ""
    ) -> None:
        self.findings.append(Finding(id, severity, title, tuple(evidence), remediation))

    @property
    def port(self) -> int:
        return self.ports[0]


_SEVERITY = {
    Exposure.ALL: Severity.CRITICAL,
    Exposure.PUBLIC: Severity.CRITICAL,
    Exposure.PRIVATE: Severity.WARNING,
    Exposure.UNKNOWN: Severity.WARNING,
    Exposure.LOOPBACK: Severity.INFO,
}
_REACH = {
    Exposure.ALL: "every interface",
    Exposure.PUBLIC: "a public address",
    Exposure.PRIVATE: "a private address",
    Exposure.UNKNOWN: "a host name",
    Exposure.LOOPBACK: "loopback only",
}


def run_audit(
    probe: HostProbe,
    settings: Settings,
    *,
    ports: Iterable[int] | None = None,
    days: int = 7,
    now: datetime | None = None,
    open_store: Callable[[], Any] | None = None,
) -> Report:
    """Audit this host. `ports` are the Ollama ports to look at (default: 11434 plus any port the
    service configuration names); `days` the window of stored logs examined; `open_store` returns an
    open Store (None: skip the log checks). Never raises for what it cannot read."""
    from monitor.reports.audit.logs import log_findings

    now = now or datetime.now(UTC)
    since = now - timedelta(days=days)
    explicit = tuple(dict.fromkeys(ports or ()))
    audit = _Audit(probe, settings, explicit or (DEFAULT_PORT,))
    config_ports = _service_config(audit, check_ports=not explicit)
    if not explicit:
        audit.ports = tuple(dict.fromkeys([DEFAULT_PORT, *config_ports]))
    _sockets(audit)
    sites = _proxy_config(audit)
    _firewall(audit)
    audit.findings.extend(log_findings(settings, open_store, since, days, audit.port, sites))
    order = sorted(audit.findings, key=lambda f: (-f.severity.rank, CATEGORIES.index(f.category)))
    return Report(socket.gethostname(), audit.ports, now, since, tuple(order))


# --- listening sockets -------------------------------------------------------------------------------


def _sockets(audit: _Audit) -> None:
    sockets, notes = read_sockets(audit.probe, audit.ports)
    for note in notes:
        audit.add("socket.unreadable", Severity.INFO, "Some socket tables could not be read", [note])
    listening = [s for s in sockets if s.listening]
    owners, hidden = socket_owners(audit.probe, [s.inode for s in listening])
    ports_text = ", ".join(map(str, audit.ports))
    unreadable = [n for n in notes if n.startswith("could not read")]
    if not listening and len(unreadable) < 2:
        audit.add(
            "socket.none",
            Severity.INFO,
            f"Nothing listens on port {ports_text} in this network namespace",
            [
                "Ollama is stopped, listens on another port (use --port), or runs in a container without a published port"
            ],
        )
    for s in listening:
        where = f"[{s.local_ip}]:{s.local_port}" if ":" in s.local_ip else f"{s.local_ip}:{s.local_port}"
        procs = owners.get(s.inode, [])
        who = "; ".join(f"pid {p.pid} {p.comm} ({p.cmdline})" for p in procs)
        if not who:
            who = (
                f"owner not readable (uid {s.uid}; run as root to see the process)"
                if hidden
                else f"uid {s.uid}"
            )
        exposure = exposure_of(s.local_ip)
        evidence = [f"{s.family} LISTEN {where}", f"process: {who}"]
        remedy = fix.bind(s.local_port)
        if any(p.comm == "docker-proxy" for p in procs):
            evidence.append("docker-proxy holds it: a container publishes this port")
            remedy = fix.docker("11434", str(s.local_port))
        if exposure is Exposure.LOOPBACK:
            audit.add(
                "socket.listen-loopback",
                Severity.INFO,
                f"Port {s.local_port} listens on loopback only ({where})",
                evidence,
            )
            continue
        title = {
            Exposure.ALL: f"Port {s.local_port} listens on every interface ({where})",
            Exposure.PUBLIC: f"Port {s.local_port} listens on public address {where}",
        }.get(exposure, f"Port {s.local_port} listens on private address {where}")
        audit.add(
            f"socket.listen-{exposure.value}",
            _SEVERITY[exposure],
            title,
            evidence,
            remedy + "\n" + fix.firewall(s.local_port),
        )
    peers = [s for s in sockets if s.state == "01" and exposure_of(s.remote_ip) is not Exposure.LOOPBACK]
    if peers:
        shown = sorted({s.remote_ip for s in peers})
        audit.add(
            "socket.remote-peers",
            Severity.WARNING,
            f"{len(shown)} non-loopback client(s) connected to port {ports_text} right now",
            [f"connected from {ip}" for ip in shown[:10]]
            + ([f"... and {len(shown) - 10} more"] if len(shown) > 10 else []),
            fix.approve(shown[0]) + "\n" + fix.firewall(audit.port),
        )


# --- service configuration: systemd, process environment, Docker -----------------------------------


def _service_config(audit: _Audit, check_ports: bool) -> list[int]:
    """Add findings on OLLAMA_HOST / OLLAMA_ORIGINS and Docker publishes; return ports they name."""
    hosts: list[tuple[str, str]] = []  # (where, value)
    origins: list[tuple[str, str]] = []
    unit = unit_env(audit.probe)
    for note in unit.notes:
        audit.add("systemd.note", Severity.INFO, "systemd: read the unit files directly", [note])
    if unit.found:
        for key, bucket in (("OLLAMA_HOST", hosts), ("OLLAMA_ORIGINS", origins)):
            if key in unit.env:
                where = unit.origin.get(key) or "the ollama unit"
                bucket.append((f"systemd ({unit.via}): {where}", unit.env[key]))
        if "OLLAMA_HOST" not in unit.env:
            audit.add(
                "systemd.default-bind",
                Severity.INFO,
                "The ollama unit does not set OLLAMA_HOST (default 127.0.0.1:11434)",
                [f"read through {unit.via}"],
            )
    else:
        audit.add(
            "systemd.none",
            Severity.INFO,
            "No ollama systemd unit found",
            [f"looked through {unit.via or 'systemctl'}"],
        )
    procs = ollama_processes(audit.probe)
    for p in procs:
        label = f"process pid {p.process.pid} ({p.process.cmdline or p.process.comm})"
        if p.env is None:
            audit.add(
                "process.env-unreadable",
                Severity.INFO,
                f"Could not read the environment of ollama pid {p.process.pid}",
                [label, "run as root (or as the ollama user) to check"],
            )
            continue
        hosts.append((label, p.env.get("OLLAMA_HOST", "")))
        if "OLLAMA_ORIGINS" in p.env:
            origins.append((label, p.env["OLLAMA_ORIGINS"]))
    _docker(audit, hosts, origins)
    ports: list[int] = []
    by_exposure: dict[Exposure, list[str]] = {}
    for where, value in hosts:
        host, port = parse_ollama_host(value)
        if port is not None and check_ports:
            ports.append(port)
        by_exposure.setdefault(exposure_of(host), []).append(f"{where}: OLLAMA_HOST={value or '(unset)'}")
    for exposure, evidence in sorted(by_exposure.items(), key=lambda kv: -_SEVERITY[kv[0]].rank):
        if exposure is Exposure.LOOPBACK:
            audit.add("config.host-loopback", Severity.INFO, "OLLAMA_HOST keeps Ollama on loopback", evidence)
        else:
            audit.add(
                f"config.host-{exposure.value}",
                _SEVERITY[exposure],
                f"OLLAMA_HOST makes Ollama listen on {_REACH[exposure]}",
                evidence,
                fix.bind(audit.port),
            )
    wild = [f"{where}: OLLAMA_ORIGINS={value}" for where, value in origins if wildcard_origins(value)]
    if wild:
        audit.add(
            "config.origins-wildcard",
            Severity.WARNING,
            "OLLAMA_ORIGINS allows every web origin: any page a browser opens can call the API",
            wild,
            fix.ORIGINS,
        )
    return ports


def _docker(audit: _Audit, hosts: list[tuple[str, str]], origins: list[tuple[str, str]]) -> None:
    state = docker_containers(audit.probe, audit.ports)
    if not state.available:
        return
    if not state.answered or state.note:
        audit.add(
            "docker.unavailable",
            Severity.INFO,
            "docker did not answer: containers not checked",
            [state.note, "run as root or as a member of the docker group to check"],
        )
        return
    if not state.containers:
        audit.add("docker.none", Severity.INFO, "No running container runs Ollama or publishes its port")
    for c in state.containers:
        label = f"container {c.name} (image {c.image})"
        if c.network_mode == "host":
            hosts.append((f"{label}, network host", c.env.get("OLLAMA_HOST", "")))
        if "OLLAMA_ORIGINS" in c.env:
            origins.append((label, c.env["OLLAMA_ORIGINS"]))
        for p in c.publishes:
            exposure = exposure_of(p.host_ip)
            shown = (
                f"{p.host_ip}:{p.host_port}"
                if p.host_ip
                else f"host port {p.host_port} with no host IP (all interfaces)"
            ) + f" -> {p.container_port}"
            evidence = [
                f"{label} publishes {shown}",
                f'HostConfig.PortBindings "{p.container_port}": HostIp "{p.host_ip}", HostPort "{p.host_port}"',
            ]
            if exposure is Exposure.LOOPBACK:
                audit.add(
                    "docker.publish-loopback",
                    Severity.INFO,
                    f"Container {c.name} publishes its port on loopback only",
                    evidence,
                )
                continue
            if exposure is Exposure.ALL:
                title = f"Container {c.name} publishes port {p.host_port} on every interface" + (
                    " (no host IP given)" if not p.host_ip else ""
                )
            else:
                title = f"Container {c.name} publishes port {p.host_port} on {_REACH[exposure]} {p.host_ip}"
            audit.add(
                f"docker.publish-{exposure.value}",
                _SEVERITY[exposure],
                title,
                evidence,
                fix.docker(p.container_port.split("/")[0], p.host_port),
            )


# --- reverse proxy and firewall ---------------------------------------------------------------------


def _proxy_config(audit: _Audit) -> list[ProxySite]:
    sites, notes = nginx_sites(audit.probe, audit.ports)
    caddy, caddy_notes = caddy_sites(audit.probe, audit.ports)
    sites += caddy
    if notes or caddy_notes:
        shown = (notes + caddy_notes)[:10]
        audit.add(
            "proxy.unreadable",
            Severity.INFO,
            "Some proxy configuration could not be read (run as root to check)",
            shown,
        )
    if not sites:
        audit.add(
            "proxy.none",
            Severity.INFO,
            "No nginx or Caddy configuration proxies to Ollama",
            [
                f"looked in {audit.probe.etc_root / 'nginx'} and {audit.probe.etc_root / 'caddy' / 'Caddyfile'}"
            ],
            "If Ollama must be reachable from other machines, put an authenticating reverse proxy with TLS in front:\n"
            + fix.proxy(audit.port),
        )
    for site in sites:
        where = f"{site.server} {site.file} (server {site.name})"
        if site.auth:
            audit.add(
                "proxy.auth", Severity.INFO, f"{site.server} asks for credentials ({site.auth})", [where]
            )
        else:
            audit.add(
                "proxy.no-auth",
                Severity.WARNING,
                f"{site.server} proxies to Ollama without authentication",
                [where, "no auth_basic / auth_request (nginx) or basic_auth / forward_auth (Caddy) found"],
                fix.proxy(audit.port),
            )
        if site.tls:
            audit.add("proxy.tls", Severity.INFO, f"{site.server} serves Ollama over TLS", [where])
        else:
            audit.add(
                "proxy.no-tls",
                Severity.WARNING,
                f"{site.server} serves Ollama without TLS",
                [where, "no `listen 443 ssl` (nginx) or host-named site address (Caddy)"],
                "Serve the proxy over TLS (credentials and prompts travel in clear otherwise):\n"
                + fix.proxy(audit.port),
            )
    return sites


def _firewall(audit: _Audit) -> None:
    states = firewall_states(audit.probe, audit.ports)
    if not states:
        audit.add(
            "firewall.none",
            Severity.INFO,
            "Neither ufw nor nft found: no firewall hint",
            [],
            fix.firewall(audit.port),
        )
    for st in states:
        if not st.readable:
            audit.add(
                "firewall.unreadable",
                Severity.INFO,
                f"could not read the {st.tool} rules, run as root to check",
                [st.note],
            )
        elif st.tool == "ufw" and not st.active:
            audit.add(
                "firewall.ufw-inactive",
                Severity.INFO,
                "ufw is installed but inactive",
                ["ufw status: inactive"],
                fix.firewall(audit.port),
            )
        elif not st.port_rules:
            audit.add(
                f"firewall.{st.tool}-no-rule",
                Severity.INFO,
                f"No {st.tool} rule mentions port {audit.port}",
                ["the default policy applies" if st.tool == "ufw" else "no `dport` rule for the Ollama port"],
                fix.firewall(audit.port),
            )
        else:
            opens = [r for r in st.port_rules if "ALLOW" in r and "Anywhere" in r.split("ALLOW", 1)[1]]
            if opens:
                audit.add(
                    f"firewall.{st.tool}-allows-anywhere",
                    Severity.WARNING,
                    f"{st.tool} allows port {audit.port} from anywhere",
                    opens,
                    fix.firewall(audit.port),
                )
            else:
                audit.add(
                    f"firewall.{st.tool}-rules",
                    Severity.INFO,
                    f"{st.tool} has rules for port {audit.port}",
                    list(st.port_rules),
                )
