"""`ollama-monitor audit` against fixture /proc and /etc trees, stand-in systemctl/docker/ufw/nft
executables (tests/fixtures/audit/bin-*), real SQLite (and PostgreSQL) databases and real sockets.

The CLI runs in a subprocess (`python -m monitor --config TMP audit ...`) with PATH set to a stand-in
directory only, so the host's own systemctl and docker never answer; the hidden --proc-root/--etc-root
options point it at the fixtures. The real-socket tests read the real /proc.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from monitor.cli import cli
from monitor.config import Settings, validate
from monitor.core.records import Request
from monitor.reports.audit.host import (
    Exposure,
    exposure_of,
    parse_ollama_host,
    parse_proc_net,
    read_sockets,
    socket_owners,
)
from monitor.reports.audit.proxy import _caddy_blocks, caddy_sites, nginx_sites
from monitor.reports.audit.report import HostProbe, run_audit
from monitor.store import Store
from monitor.store import audit_queries as q
from tests import services
from tests.conftest import assert_no_traceback, isolated_env

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "audit"
NOW = datetime.now(UTC)
PUBLIC = "185.220.101.5"  # a globally routable address; only ever data here, never contacted

SOURCES = """
[[sources]]
name = "ollama"
journal_unit = "ollama"
format = "ollama"

[[sources]]
name = "nginx"
path = "/var/log/nginx/access.log"
format = "nginx"

[known]
allow = ["127.0.0.0/8", "::1/128", "192.168.1.0/24"]
admins = ["192.168.1.10/32"]
"""


# --- helpers ----------------------------------------------------------------------------------------


def proc_tree(kind: str, tmp_path: Path) -> Path:
    """Copy a fixture /proc tree and create its /proc/PID/fd/N -> socket:[INODE] links (kept out of git:
    dangling symlinks travel badly)."""
    dest = tmp_path / f"proc-{kind}"
    shutil.copytree(FIXTURES / f"proc-{kind}", dest)
    for pid, fds in json.loads((dest / "fd-links.json").read_text()).items():
        (dest / pid / "fd").mkdir()
        for fd, inode in fds.items():
            os.symlink(f"socket:[{inode}]", dest / pid / "fd" / fd)
    return dest


def write_config(tmp_path: Path, db: Path, extra: str = SOURCES) -> Path:
    path = tmp_path / "monitor.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{db}"\n{extra}', encoding="utf-8")
    return path


def seed(url: str, rows: list[tuple[str, Request]]) -> None:
    """Store requests through the real Store API, one fake file per source."""
    with Store.open(url) as store:
        by_source: dict[str, list[tuple[int, Request]]] = {}
        for source, req in rows:
            by_source.setdefault(source, []).append((len(by_source.get(source, [])) * 100, req))
        for source, parsed in by_source.items():
            fid = store.file_id(source, f"fp-{source}", f"/var/log/{source}.log")
            store.add_batch(source, fid, parsed)


def req(ip: str, method: str, path: str, status: int, hours_ago: float) -> Request:
    return Request(NOW - timedelta(hours=hours_ago), ip, method, path, status)


EXPOSED_ROWS = [
    ("ollama", req("127.0.0.1", "GET", "/api/tags", 200, 30)),
    ("ollama", req(PUBLIC, "GET", "/", 200, 20)),
    ("ollama", req(PUBLIC, "GET", "/api/tags", 200, 20)),
    ("ollama", req(PUBLIC, "POST", "/api/pull", 200, 19)),
    ("ollama", req("192.168.1.50", "POST", "/api/chat", 200, 5)),  # forwarded by nginx: also in its log
    ("nginx", req("192.168.1.50", "POST", "/api/chat", 200, 5)),
    ("nginx", req("192.168.1.10", "POST", "/api/pull?insecure=true", 200, 4)),  # the admin: fine
    ("nginx", req("192.168.1.77", "DELETE", "/api/delete", 200, 3)),  # known but not admin
    ("nginx", req("10.9.9.9", "GET", "/api/tags", 200, 2)),  # unknown, private
    ("nginx", req("203.0.113.99", "POST", "/api/pull", 200, 24 * 30)),  # outside the 7-day window
]
SAFE_ROWS = [
    ("ollama", req("127.0.0.1", "POST", "/api/chat", 200, 6)),
    ("ollama", req("127.0.0.1", "POST", "/api/pull", 200, 6)),  # a local `ollama pull`
    ("nginx", req("192.168.1.50", "POST", "/api/chat", 401, 5)),
    ("nginx", req("192.168.1.50", "POST", "/api/chat", 200, 5)),
]


def run_cli(tmp_path: Path, config: Path, bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # PYTHONPATH: run this checkout's package whatever the venv has installed, from any directory.
    env = isolated_env(tmp_path, PATH=str(bin_dir), PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(config), "audit", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert_no_traceback(proc)
    return proc


def run_json(tmp_path: Path, config: Path, bin_dir: Path, *args: str) -> tuple[int, dict[str, Any]]:
    proc = run_cli(tmp_path, config, bin_dir, "--json", *args)
    return proc.returncode, json.loads(proc.stdout)


def by_id(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for f in report["findings"]:
        found.setdefault(f["id"], []).append(f)
    return found


def evidence(findings: list[dict[str, Any]]) -> str:
    return "\n".join(line for f in findings for line in f["evidence"])


# --- /proc/net parsing --------------------------------------------------------------------------------


def test_fixture_socket_tables_decode_to_the_written_addresses() -> None:
    tcp, bad = parse_proc_net((FIXTURES / "proc-exposed/net/tcp").read_text(), "tcp", "little")
    tcp6, bad6 = parse_proc_net((FIXTURES / "proc-exposed/net/tcp6").read_text(), "tcp6", "little")
    assert bad == bad6 == 0
    listen = {(s.local_ip, s.local_port, s.inode) for s in tcp + tcp6 if s.listening}
    assert listen == {
        ("0.0.0.0", 22, 21001),
        ("0.0.0.0", 11434, 40001),
        ("127.0.0.1", 11434, 40002),
        ("192.168.1.20", 11434, 40003),
        ("::", 11434, 40004),
        ("::1", 11434, 40005),
        ("fd12:3456::20", 11434, 40006),
        ("::", 8080, 21002),
    }
    established = [s for s in tcp if s.state == "01"]
    assert {(s.remote_ip, s.remote_port) for s in established} == {(PUBLIC, 51234), ("127.0.0.1", 40000)}


def test_big_endian_words_and_malformed_rows() -> None:
    text = (
        "  sl  local_address rem_address   st\n"
        "   0: 7F000001:2CAA 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 77 1\n"
        "   1: garbage\n"
        "   2: 7F00000:2CAA 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 78 1\n"
    )
    sockets, bad = parse_proc_net(text, "tcp", "big")
    assert [(s.local_ip, s.local_port, s.uid, s.inode) for s in sockets] == [("127.0.0.1", 11434, 1000, 77)]
    assert bad == 2


@pytest.fixture
def listener() -> Iterator[Any]:
    """Bind real listening sockets (never connected to) and close them afterwards."""
    opened: list[socket.socket] = []

    def bind(host: str, family: int = socket.AF_INET) -> int:
        s = socket.socket(family, socket.SOCK_STREAM)
        s.bind((host, 0))
        s.listen(1)
        opened.append(s)
        return int(s.getsockname()[1])

    yield bind
    for s in opened:
        s.close()


def test_real_kernel_tables_and_socket_owner(listener: Any) -> None:
    port = listener("127.0.0.1")
    probe = HostProbe()
    sockets, notes = read_sockets(probe, [port])
    assert not [n for n in notes if n.startswith("could not read")]
    mine = [s for s in sockets if s.listening]
    assert [(s.family, s.local_ip, s.local_port) for s in mine] == [("tcp", "127.0.0.1", port)]
    owners, _ = socket_owners(probe, [mine[0].inode])
    assert os.getpid() in [p.pid for p in owners[mine[0].inode]]
    if socket.has_ipv6:
        try:
            port6 = listener("::1", socket.AF_INET6)
        except OSError:
            return  # IPv6 disabled on this host
        sockets6, _ = read_sockets(probe, [port6])
        assert [(s.family, s.local_ip) for s in sockets6 if s.listening] == [("tcp6", "::1")]


# --- bind address rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "host", "port", "exposure"),
    [
        ("", "127.0.0.1", 11434, Exposure.LOOPBACK),
        ("0.0.0.0", "0.0.0.0", 11434, Exposure.ALL),
        ("0.0.0.0:8080", "0.0.0.0", 8080, Exposure.ALL),
        (":11434", "", 11434, Exposure.ALL),  # Go listens on every interface for an empty host
        ("http://[::]:11434", "::", 11434, Exposure.ALL),
        ("[::1]:9000", "::1", 9000, Exposure.LOOPBACK),
        ("https://10.1.2.3", "10.1.2.3", 443, Exposure.PRIVATE),
        ("100.101.102.103:11434", "100.101.102.103", 11434, Exposure.PRIVATE),  # Tailscale CGNAT
        ("8.8.8.8", "8.8.8.8", 11434, Exposure.PUBLIC),
        ("localhost:11434", "localhost", 11434, Exposure.LOOPBACK),
        ("ollama.internal", "ollama.internal", 11434, Exposure.UNKNOWN),
        ("1.2.3.4:99999", "1.2.3.4", None, Exposure.PUBLIC),
    ],
)
def test_ollama_host_values(value: str, host: str, port: int | None, exposure: Exposure) -> None:
    assert parse_ollama_host(value) == (host, port)
    assert exposure_of(parse_ollama_host(value)[0]) is exposure


# --- the CLI on fixtures: exposed (2), warnings only (1), safe (0) -----------------------------------


def audit_scenario(tmp_path: Path, scenario: str, rows: Any) -> tuple[int, dict[str, Any]]:
    """Run the audit CLI on one fixture host (stand-in commands, /proc tree, /etc) with seeded logs."""
    db = tmp_path / "m.db"
    seed(f"sqlite:///{db}", rows)
    config = write_config(tmp_path, db)
    return run_json(
        tmp_path,
        config,
        FIXTURES / f"bin-{scenario}",
        "--proc-root",
        str(proc_tree(scenario, tmp_path)),
        "--etc-root",
        str(FIXTURES / f"etc-{scenario}"),
    )


def test_exposed_host_is_critical(tmp_path: Path) -> None:
    code, report = audit_scenario(tmp_path, "exposed", EXPOSED_ROWS)
    found = by_id(report)
    assert code == 2 == report["exit_status"]
    assert report["ports"] == [11434]
    assert report["counts"]["critical"] == len([f for f in report["findings"] if f["severity"] == "critical"])

    # sockets: 0.0.0.0 and :: critical with their owner, private addresses warn, loopback is fine
    assert {e for f in found["socket.listen-all"] for e in f["evidence"] if "LISTEN" in e} == {
        "tcp LISTEN 0.0.0.0:11434",
        "tcp6 LISTEN [::]:11434",
    }
    assert "pid 4242 ollama (/usr/local/bin/ollama serve)" in evidence(found["socket.listen-all"])
    assert all(f["severity"] == "critical" for f in found["socket.listen-all"])
    assert {f["severity"] for f in found["socket.listen-private"]} == {"warning"}
    assert "192.168.1.20:11434" in evidence(found["socket.listen-private"])
    assert "[fd12:3456::20]:11434" in evidence(found["socket.listen-private"])
    assert len(found["socket.listen-loopback"]) == 2
    assert PUBLIC in evidence(found["socket.remote-peers"])
    # sshd on :22 and the web UI on :8080 are not Ollama's port: no finding names them as an address.
    # (Matched as addresses, not substrings: the report's timestamps hold ":22" at minute 22.)
    other_ports = re.compile(r"(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]*\]|\*):(?:22|8080)\b")
    assert not other_ports.findall(
        json.dumps(found.get("socket.listen-all")) + json.dumps(report["findings"])
    )
    assert other_ports.findall('"tcp LISTEN 0.0.0.0:22", "[::]:8080", 2026-12-01 06:22 UTC') == [
        "0.0.0.0:22",
        "[::]:8080",
    ]
    assert 'Environment="OLLAMA_HOST=127.0.0.1:11434"' in found["socket.listen-all"][0]["remediation"]

    # configuration: systemd drop-in and the live process environment; the model runner is skipped
    host_all = evidence(found["config.host-all"])
    assert "/etc/systemd/system/ollama.service.d/override.conf: OLLAMA_HOST=0.0.0.0:11434" in host_all
    assert "process pid 4242" in host_all and "4300" not in host_all
    assert found["config.host-all"][0]["severity"] == "critical"
    origins = found["config.origins-wildcard"][0]
    assert origins["severity"] == "warning" and "OLLAMA_ORIGINS=*" in origins["evidence"][0]
    assert any("container ollama" in e for e in origins["evidence"])

    # Docker: the publish without a host IP; the unrelated open-webui container is left out
    docker = found["docker.publish-all"][0]
    assert docker["severity"] == "critical"
    assert 'HostIp "", HostPort "11434"' in evidence([docker])
    assert "-p 127.0.0.1:11434:11434" in docker["remediation"]
    assert "open-webui" not in json.dumps(report)

    # proxy config (the commented-out auth_basic does not count) and firewall
    no_auth = found["proxy.no-auth"]
    assert {f["evidence"][0].split()[0] for f in no_auth} == {"nginx", "caddy"}
    assert "listen 443 ssl" in no_auth[0]["remediation"] and "auth_basic" in no_auth[0]["remediation"]
    assert "proxy_set_header Host localhost:11434" in no_auth[0]["remediation"]
    assert "limit_req" in no_auth[0]["remediation"]
    assert len(found["proxy.no-tls"]) == 2
    assert found["firewall.ufw-allows-anywhere"][0]["evidence"][0] == "11434/tcp ALLOW Anywhere"
    assert found["firewall.unreadable"][0]["title"] == "could not read the nft rules, run as root to check"
    assert found["firewall.unreadable"][0]["severity"] == "info"

    # stored logs: direct access around the proxy, unknown sources, management from outside
    direct = found["logs.direct-access"][0]
    assert direct["severity"] == "critical"
    assert PUBLIC in evidence([direct]) and "192.168.1.50" not in evidence([direct])
    unknown = found["logs.unknown-sources"][0]
    assert unknown["severity"] == "critical" and "2 unknown source(s)" in unknown["title"]
    assert f"ollama-monitor sources approve {PUBLIC}" in unknown["remediation"]
    assert "10.9.9.9" in evidence([unknown]) and "192.168.1.50" not in evidence([unknown])
    mgmt = found["logs.management-outside"][0]
    assert mgmt["severity"] == "critical"
    assert f"{PUBLIC} (unknown): POST /api/pull x1" in mgmt["evidence"]
    assert "192.168.1.77 (known): DELETE /api/delete x1" in mgmt["evidence"]
    assert "192.168.1.10" not in evidence([mgmt]) and "203.0.113.99" not in json.dumps(report)
    assert "least privilege" in mgmt["remediation"]
    assert found["proxy.no-401"][0]["severity"] == "warning"

    for f in report["findings"]:
        assert set(f) == {"id", "category", "severity", "title", "evidence", "remediation"}
        assert f["severity"] in ("info", "warning", "critical")


def test_safe_host_exits_zero(tmp_path: Path) -> None:
    code, report = audit_scenario(tmp_path, "safe", SAFE_ROWS)
    found = by_id(report)
    assert code == 0 == report["exit_status"], [f for f in report["findings"] if f["severity"] != "info"]
    assert {f["severity"] for f in report["findings"]} == {"info"}
    assert "tcp LISTEN 127.0.0.1:11434" in evidence(found["socket.listen-loopback"])
    assert "socket.remote-peers" not in found
    assert "OLLAMA_HOST=127.0.0.1:11434" in evidence(found["config.host-loopback"])
    assert 'HostIp "127.0.0.1"' in evidence(found["docker.publish-loopback"])
    assert {f["title"] for f in found["proxy.auth"]} == {
        "nginx asks for credentials (auth_basic)",
        "caddy asks for credentials (basic_auth)",
    }
    assert len(found["proxy.tls"]) == 2
    assert "ERROR: You need to be root" in evidence(found["firewall.unreadable"])
    assert "logs.clean" in found  # the local `ollama pull` from 127.0.0.1 is not "outside"
    assert "1 x 401" in evidence(found["proxy.401-seen"])


def test_warnings_only_exit_one(tmp_path: Path) -> None:
    config = write_config(tmp_path, tmp_path / "absent.db")
    code, report = run_json(
        tmp_path,
        config,
        FIXTURES / "bin-safe",
        "--proc-root",
        str(proc_tree("safe", tmp_path)),
        "--etc-root",
        str(FIXTURES / "etc-exposed"),
    )
    assert code == 1
    assert {f["id"] for f in report["findings"] if f["severity"] != "info"} == {
        "proxy.no-auth",
        "proxy.no-tls",
    }
    # the systemd stand-in answered: the unit files under etc-exposed are only read for attribution
    assert "systemd.note" not in by_id(report)
    assert "database file" in evidence(by_id(report)["logs.no-database"])
    assert not (tmp_path / "absent.db").exists()  # a read-only audit creates no database


def test_human_output_is_sanitised(tmp_path: Path) -> None:
    proc = proc_tree("exposed", tmp_path)
    (proc / "4242" / "cmdline").write_bytes(
        b"/usr/local/bin/ollama\0serve\0\x1b[31mEVIL\x1b[0m\x07\x1b]0;title\x07\r\n" + b"A" * 5000
    )
    config = write_config(tmp_path, tmp_path / "absent.db", "")
    out = run_cli(
        tmp_path,
        config,
        FIXTURES / "bin-exposed",
        "--proc-root",
        str(proc),
        "--etc-root",
        str(FIXTURES / "etc-exposed"),
    )
    assert out.returncode == 2
    assert "\x1b" not in out.stdout and "\x07" not in out.stdout and "\r" not in out.stdout
    assert "serve EVIL" in out.stdout and "AAAA" in out.stdout and "A" * 1000 not in out.stdout
    assert (
        "CRITICAL  Port 11434 listens on every interface (0.0.0.0:11434)  [socket.listen-all]" in out.stdout
    )
    assert (
        "sudo systemctl edit ollama" in out.stdout
        and "ufw allow from" in out.stdout
        and "nft add rule" in out.stdout
    )
    assert "fix: as for [socket.listen-all] above" in out.stdout  # a long fix is printed once
    assert "exit status 2" in out.stdout
    # --json, in-process (click's runner; PATH reaches the probe through the environment it sets)
    result = CliRunner().invoke(
        cli,
        [
            "--config",
            str(config),
            "audit",
            "--json",
            "--proc-root",
            str(proc),
            "--etc-root",
            str(FIXTURES / "etc-exposed"),
        ],
        env={"PATH": str(FIXTURES / "bin-exposed")},
    )
    assert result.exit_code == 2, result.output
    assert "\\u001b" not in result.stdout and "\\u0007" not in result.stdout and "serve EVIL" in result.stdout
    assert "\x1b" not in result.stdout


def test_help_hides_fixture_options() -> None:
    result = CliRunner().invoke(cli, ["audit", "--help"])
    assert result.exit_code == 0
    assert "--port" in result.stdout and "--json" in result.stdout and "Exit status" in result.stdout
    assert "--proc-root" not in result.stdout and "--etc-root" not in result.stdout


# --- real sockets on ephemeral ports -----------------------------------------------------------------


def test_real_socket_on_all_interfaces_is_critical(tmp_path: Path, listener: Any) -> None:
    port = listener("0.0.0.0")
    local = listener("127.0.0.1")
    (tmp_path / "etc").mkdir()
    config = write_config(tmp_path, tmp_path / "absent.db", "")
    code, report = run_json(
        tmp_path,
        config,
        FIXTURES / "bin-safe",
        *("--port", str(port), "--port", str(local)),
        *("--etc-root", str(tmp_path / "etc")),
    )
    found = by_id(report)
    assert code == 2 and report["ports"] == [port, local]
    assert [f["evidence"][0] for f in found["socket.listen-all"]] == [f"tcp LISTEN 0.0.0.0:{port}"]
    assert f"pid {os.getpid()} " in evidence(found["socket.listen-all"])  # this test process holds it
    assert f"127.0.0.1:{port}" in found["socket.listen-all"][0]["remediation"]
    assert [f["evidence"][0] for f in found["socket.listen-loopback"]] == [f"tcp LISTEN 127.0.0.1:{local}"]


def test_real_socket_on_loopback_is_fine(tmp_path: Path, listener: Any) -> None:
    port = listener("127.0.0.1")
    (tmp_path / "etc").mkdir()
    config = write_config(tmp_path, tmp_path / "absent.db", "")
    code, report = run_json(
        tmp_path, config, FIXTURES / "bin-safe", "--port", str(port), "--etc-root", str(tmp_path / "etc")
    )
    assert code == 0, [f for f in report["findings"] if f["severity"] != "info"]
    assert f"tcp LISTEN 127.0.0.1:{port}" in evidence(by_id(report)["socket.listen-loopback"])


# --- the library directly: fallbacks and failures ----------------------------------------------------


def _empty_bin(tmp_path: Path) -> Path:
    d = tmp_path / "bin"
    d.mkdir(exist_ok=True)
    return d


def test_unit_files_are_read_when_systemctl_is_missing(tmp_path: Path) -> None:
    probe = HostProbe(
        proc_root=tmp_path / "noproc", etc_root=FIXTURES / "etc-exposed", path=str(_empty_bin(tmp_path))
    )
    report = run_audit(probe, Settings(), ports=[11434])
    found = {f.id: f for f in report.findings}
    assert "systemctl not found" in found["systemd.note"].evidence[0]
    assert found["config.host-all"].evidence[0].endswith("override.conf: OLLAMA_HOST=0.0.0.0:11434")
    assert "socket.unreadable" in found and "socket.none" not in found
    assert "firewall.none" in found and "docker.unavailable" not in found
    assert report.exit_status == 2


def test_configured_port_is_scanned_and_docker_failure_is_info(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    (etc / "systemd" / "system").mkdir(parents=True)
    (etc / "systemd" / "system" / "ollama.service").write_text(
        '[Service]\nExecStart=/usr/local/bin/ollama serve\nEnvironment="OLLAMA_HOST=192.168.1.20:8080"\n'
    )
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    shutil.copy(FIXTURES / "proc-exposed" / "net" / "tcp6", proc / "net" / "tcp6")
    (proc / "net" / "tcp").write_text(
        "  sl  local_address rem_address   st\n"
        "   0: 1401A8C0:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  999 0 9001 1\n"
    )
    bin_dir = _empty_bin(tmp_path)
    (bin_dir / "docker").write_text(
        "#!/bin/sh\nprintf '%s\\n' 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
        "Is the docker daemon running?' >&2\nexit 1\n"
    )
    (bin_dir / "docker").chmod(0o755)
    report = run_audit(HostProbe(proc_root=proc, etc_root=etc, path=str(bin_dir)), Settings())
    found = {f.id: f for f in report.findings}
    assert report.ports == (11434, 8080)  # 8080 comes from OLLAMA_HOST in the unit file
    private = [f.title for f in report.findings if f.id == "socket.listen-private"]
    assert "Port 8080 listens on private address 192.168.1.20:8080" in private
    assert found["config.host-private"].severity.value == "warning"
    assert "Cannot connect to the Docker daemon" in found["docker.unavailable"].evidence[0]
    assert found["docker.unavailable"].severity.value == "info"
    assert report.exit_status == 2  # the fixture tcp6 has [::]:11434


def test_proxy_config_parsing(tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    (etc / "nginx" / "conf.d").mkdir(parents=True)
    (etc / "nginx" / "conf.d" / "other.conf").write_text(
        "server { listen 80; location / { proxy_pass http://127.0.0.1:3000; } }\n"
    )
    (etc / "nginx" / "conf.d" / "off.conf").write_text(
        "server { listen 443 ssl; auth_basic  off; location / { proxy_pass http://localhost:11434/; } }\n"
    )
    (etc / "caddy").mkdir()
    (etc / "caddy" / "Caddyfile").write_text("ollama.example.com\nreverse_proxy localhost:11434\n")
    sites, notes = nginx_sites(HostProbe(etc_root=etc), [11434])
    assert notes == []
    assert [(s.file.endswith("off.conf"), s.auth, s.tls) for s in sites] == [(True, "", True)]
    caddy, _ = caddy_sites(HostProbe(etc_root=etc), [11434])
    assert [(s.name, s.auth, s.tls) for s in caddy] == [("ollama.example.com", "", True)]
    assert _caddy_blocks("{\n\temail a@b\n}\nhttp://x.lan, :9000 {\n\treverse_proxy :11434\n}\n") == [
        ("", "\temail a@b"),
        ("http://x.lan, :9000", "\treverse_proxy :11434"),
    ]


# --- stored-log queries and database states ----------------------------------------------------------


def _settings(url: str) -> Settings:
    import tomllib

    return validate(tomllib.loads(f'[database]\nurl = "{url}"\n{SOURCES}'))


def _check_queries(url: str) -> None:
    seed(url, EXPOSED_ROWS)
    since = NOW - timedelta(days=7)
    with Store.open(url) as store:
        assert q.request_count(store) == len(EXPOSED_ROWS)
        assert q.request_count(store, since) == len(EXPOSED_ROWS) - 1
        clients = {c.client_ip: c for c in q.clients_since(store, since)}
        assert PUBLIC in clients and "203.0.113.99" not in clients
        assert (clients[PUBLIC].requests, clients[PUBLIC].success) == (3, 3)
        assert clients[PUBLIC].first_seen.tzinfo is not None
        assert clients[PUBLIC].first_seen < clients[PUBLIC].last_seen
        assert {c.client_ip for c in q.clients_since(store, since, sources=["ollama"])} == {
            "127.0.0.1",
            PUBLIC,
            "192.168.1.50",
        }
        assert q.clients_since(store, since, sources=[]) == []
        naive = since.replace(tzinfo=None)  # taken as UTC
        assert len(q.clients_since(store, naive)) == len(clients)
        older = {c.client_ip for c in q.clients_since(store, NOW - timedelta(days=60))}
        assert "203.0.113.99" in older
        statuses = {s.source: s for s in q.statuses_by_source(store, since, ["nginx", "ollama"])}
        assert (statuses["nginx"].requests, statuses["nginx"].unauthorized, statuses["nginx"].success) == (
            4,
            0,
            4,
        )
        calls = q.calls_matching(store, since, ["/api/pull", "/api/delete"])
        assert {(c.client_ip, c.method, c.path) for c in calls} == {
            (PUBLIC, "POST", "/api/pull"),
            ("192.168.1.10", "POST", "/api/pull?insecure=true"),
            ("192.168.1.77", "DELETE", "/api/delete"),
        }
        assert q.calls_matching(store, since, ["%"]) == []  # matched literally, not as a wildcard
    report = run_audit(
        HostProbe(proc_root=Path("/nonexistent"), etc_root=Path("/nonexistent"), path=""),
        _settings(url),
        ports=[11434],
        open_store=lambda: Store.open(url),
    )
    ids = {f.id for f in report.findings}
    assert {"logs.direct-access", "logs.unknown-sources", "logs.management-outside", "proxy.no-401"} <= ids


def test_shared_totals_are_read_once_and_never_outlive_the_block(tmp_path: Path) -> None:
    """The audit asks for the same window's totals up to five times; inside `shared_totals` the rollups
    and the edge rows are read once (counted with SQLAlchemy's statement event), the answers are
    those of fresh reads, and after the block a new request is seen again."""
    from sqlalchemy import event

    url = f"sqlite:///{tmp_path / 'q.db'}"
    seed(url, EXPOSED_ROWS)
    since = NOW - timedelta(days=7, hours=5)  # not midnight: a partial edge day is read from the rows
    reads: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "client_days" in statement:
            reads.append(statement)

    with Store.open(url) as store:
        fresh = (
            q.request_count(store, since),
            q.clients_since(store, since),
            q.clients_since(store, since, sources=["ollama"]),
            q.statuses_by_source(store, since, ["nginx", "ollama"]),
        )
        event.listen(store.engine, "before_cursor_execute", count)
        with q.shared_totals(store):
            shared = (
                q.request_count(store, since),
                q.clients_since(store, since),
                q.clients_since(store, since, sources=["ollama"]),
                q.statuses_by_source(store, since, ["nginx", "ollama"]),
            )
            assert q.request_count(store, since) == fresh[0]
        assert shared == fresh
        assert len(reads) == 1
        fid = store.file_id("ollama", "fp-late", "/var/log/late.log")
        store.add_batch("ollama", fid, [(0, req("192.0.2.200", "GET", "/api/tags", 200, 1))])
        assert q.request_count(store, since) == fresh[0] + 1
        assert len(reads) == 2


def test_queries_on_sqlite(tmp_path: Path) -> None:
    _check_queries(f"sqlite:///{tmp_path / 'q.db'}")


@pytest.mark.service
def test_queries_on_postgresql() -> None:
    with services.postgres() as url:
        _check_queries(url)


def test_empty_and_unopenable_databases_are_info(tmp_path: Path) -> None:
    probe = HostProbe(proc_root=tmp_path / "none", etc_root=tmp_path / "none", path="")
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    Store.open(url).close()
    report = run_audit(probe, _settings(url), ports=[11434], open_store=lambda: Store.open(url))
    assert [f.id for f in report.findings if f.category == "logs"] == ["logs.no-data"]
    assert report.exit_status == 0
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"this is not a database" * 100)
    bad_url = f"sqlite:///{broken}"
    report = run_audit(probe, _settings(bad_url), ports=[11434], open_store=lambda: Store.open(bad_url))
    logs = [f for f in report.findings if f.category == "logs"]
    assert [f.id for f in logs] == ["logs.unavailable"] and logs[0].severity.value == "info"
