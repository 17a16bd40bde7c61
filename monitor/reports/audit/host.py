"""Facts about this host that decide whether its Ollama is exposed: read-only, useful without root.

Everything goes through a `HostProbe`: where /proc and /etc are, and how to run a command (found on
PATH). Tests point it at fixture directories and stand-in executables; nothing here is patched.
This module holds the probe, bind-address classification, sockets (/proc/net/tcp{,6}) and processes;
`monitor.reports.audit.services` reads systemd and Docker, `monitor.reports.audit.proxy` the proxy and firewall.
They return facts; `monitor.reports.audit.report` turns them into findings. Nothing here raises on a missing file, a permission problem or a command
that fails: each comes back as a note, because an audit that dies on the first unreadable file tells
its owner nothing.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal

OUTPUT_CAP = 4 * 1024 * 1024  # bytes kept from a command's output
FILE_CAP = 1024 * 1024  # bytes read from one config file

TEXT_CAP = 400  # characters kept from one value read off the system (cmdline, env value)


@dataclass(frozen=True)
class CommandResult:
    """What a command did. `returncode` is None when it could not be run or timed out (see `error`)."""

    returncode: int | None
    stdout: str = ""
    stderr: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def problem(self) -> str:
        """One line saying why the command failed (its stderr's first line, or the error)."""
        if self.error:
            return self.error
        first = next((ln.strip() for ln in self.stderr.splitlines() if ln.strip()), "")
        return first or f"exit status {self.returncode}"


@dataclass(frozen=True)
class HostProbe:
    """Where the audit looks: the /proc and /etc roots, the PATH commands are looked up on, and the
    byte order of /proc/net address words (the kernel prints them in host order)."""

    proc_root: Path = Path("/proc")
    etc_root: Path = Path("/etc")
    path: str | None = None  # None: the process's PATH
    timeout: float = 5.0
    byteorder: Literal["little", "big"] = sys.byteorder

    def which(self, name: str) -> str | None:
        return shutil.which(name, path=self.path if self.path is not None else os.environ.get("PATH", ""))

    def run(self, argv: Sequence[str]) -> CommandResult | None:
        """Run a command found on PATH; return None when it is not installed. Never raises."""
        exe = self.which(argv[0])
        if exe is None:
            return None
        env = dict(os.environ, LC_ALL="C", LANG="C")
        if self.path is not None:
            env["PATH"] = self.path
        try:
            proc = subprocess.run(
                [exe, *argv[1:]], capture_output=True, timeout=self.timeout, env=env, stdin=subprocess.DEVNULL
            )
        except subprocess.TimeoutExpired:
            return CommandResult(None, error=f"{argv[0]} did not answer within {self.timeout:g} s")
        except OSError as exc:
            return CommandResult(None, error=f"{argv[0]}: {exc.strerror or exc}")
        out = proc.stdout[:OUTPUT_CAP].decode("utf-8", "replace")
        err = proc.stderr[:OUTPUT_CAP].decode("utf-8", "replace")
        return CommandResult(proc.returncode, out, err)

    def etc_path(self, absolute: str) -> Path | None:
        """Map an absolute path under /etc (as a unit file names it) into `etc_root`; None if outside /etc
        while `etc_root` is not the real /etc (so a fixture run never reads the host's files)."""
        p = Path(absolute)
        try:
            rel = p.relative_to("/etc")
        except ValueError:
            return p if self.etc_root == Path("/etc") else None
        return self.etc_root / rel


def read_text(path: Path, cap: int = FILE_CAP) -> str | None:
    """Return a file's text (decoded leniently, capped), or None when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return fh.read(cap).decode("utf-8", "replace")
    except OSError:
        return None


# --- bind addresses -------------------------------------------------------------------------------


class Exposure(StrEnum):
    """How far a bind address reaches."""

    LOOPBACK = "loopback"  # this host only
    PRIVATE = "private"  # a specific non-public address (LAN, VPN, link-local, CGNAT)
    PUBLIC = "public"  # a specific globally routable address
    ALL = "all"  # every interface: 0.0.0.0, ::, or an empty host
    UNKNOWN = "unknown"  # a host name we do not resolve (resolution could change)


def exposure_of(host: str) -> Exposure:
    """Classify a bind host (`0.0.0.0`, `::`, `10.0.0.5`, `[::1]`, `localhost`, ``)."""
    host = host.strip().strip("[]")
    if host in ("", "*"):
        return Exposure.ALL
    if host.lower() in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return Exposure.LOOPBACK
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return Exposure.UNKNOWN
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.is_unspecified:
        return Exposure.ALL
    if addr.is_loopback:
        return Exposure.LOOPBACK
    return Exposure.PUBLIC if addr.is_global else Exposure.PRIVATE


def parse_ollama_host(value: str) -> tuple[str, int | None]:
    """Split an OLLAMA_HOST value the way Ollama reads it: `[scheme://]host[:port][/path]`.

    Return (host, port). A bare host keeps the default port (11434; 80/443 with an http/https scheme);
    `:8080` gives an empty host, which Go binds on every interface. An unset value means 127.0.0.1:11434.
    """
    text = value.strip()
    default_port = 11434
    scheme, sep, rest = text.partition("://")
    if sep:
        default_port = {"http": 80, "https": 443}.get(scheme.lower(), 11434)
    else:
        rest = text
    rest = rest.split("/", 1)[0]
    if not rest:
        return "127.0.0.1", default_port
    if rest.startswith("["):  # [::1]:11434 or [::1]
        host, _, tail = rest[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    elif rest.count(":") == 1:
        host, port_text = rest.split(":")
    else:  # a bare IPv6 address or a bare host
        host, port_text = rest, ""
    if not port_text:
        return host, default_port
    return host, int(port_text) if port_text.isdigit() and 0 < int(port_text) < 65536 else None


def wildcard_origins(value: str) -> list[str]:
    """Return the OLLAMA_ORIGINS entries that allow any web page (`*`, `http://*`, `https://*`)."""
    entries = [e.strip() for e in value.split(",")]
    return [e for e in entries if e in ("*", "http://*", "https://*", "http://*:*", "https://*:*")]


# --- sockets: /proc/net/tcp and tcp6 -----------------------------------------------------------------

TCP_STATES = {"01": "ESTABLISHED", "0A": "LISTEN"}


@dataclass(frozen=True)
class Socket:
    """One row of /proc/net/tcp{,6}: addresses in canonical text, the state code, owner uid and inode."""

    family: str  # "tcp" or "tcp6"
    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    state: str  # hex state code, "0A" = LISTEN
    uid: int
    inode: int

    @property
    def listening(self) -> bool:
        return self.state == "0A"


def _decode_address(text: str, byteorder: Literal["little", "big"]) -> tuple[str, int]:
    hex_ip, _, hex_port = text.partition(":")
    port = int(hex_port, 16)
    # The kernel prints each 32-bit word of the address in host byte order.
    if len(hex_ip) == 8:
        return str(ipaddress.IPv4Address(int(hex_ip, 16).to_bytes(4, byteorder))), port
    if len(hex_ip) == 32:
        raw = b"".join(int(hex_ip[i : i + 8], 16).to_bytes(4, byteorder) for i in range(0, 32, 8))
        addr = ipaddress.IPv6Address(raw)
        return str(addr.ipv4_mapped or addr), port
    raise ValueError(f"address of {len(hex_ip)} hex digits")


def parse_proc_net(
    text: str, family: str, byteorder: Literal["little", "big"] = sys.byteorder
) -> tuple[list[Socket], int]:
    """Parse the text of /proc/net/tcp or tcp6; return (sockets, number of malformed rows)."""
    sockets: list[Socket] = []
    bad = 0
    for line in text.splitlines()[1:]:  # the first line is the column header
        parts = line.split()
        if not parts:
            continue
        try:
            local_ip, local_port = _decode_address(parts[1], byteorder)
            remote_ip, remote_port = _decode_address(parts[2], byteorder)
            sockets.append(
                Socket(
                    family,
                    local_ip,
                    local_port,
                    remote_ip,
                    remote_port,
                    parts[3].upper(),
                    int(parts[7]),
                    int(parts[9]),
                )
            )
        except (IndexError, ValueError):
            bad += 1
    return sockets, bad


def read_sockets(probe: HostProbe, ports: Iterable[int]) -> tuple[list[Socket], list[str]]:
    """Return the sockets on any of `ports` (listening, and connections to them) and notes on files
    that could not be read."""
    wanted = set(ports)
    found: list[Socket] = []
    notes: list[str] = []
    for family in ("tcp", "tcp6"):
        path = probe.proc_root / "net" / family
        text = read_text(path, OUTPUT_CAP)
        if text is None:
            notes.append(f"could not read {path}")
            continue
        sockets, bad = parse_proc_net(text, family, probe.byteorder)
        if bad:
            notes.append(f"{bad} malformed row(s) in {path}")
        found.extend(s for s in sockets if s.local_port in wanted)
    return found, notes


# --- processes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Process:
    pid: int
    comm: str
    cmdline: str


def _pids(probe: HostProbe) -> list[int]:
    try:
        return sorted(int(n) for n in os.listdir(probe.proc_root) if n.isdigit())
    except OSError:
        return []


def process_info(probe: HostProbe, pid: int) -> Process:
    base = probe.proc_root / str(pid)
    comm = (read_text(base / "comm", 4096) or "").strip()
    raw = read_text(base / "cmdline", 64 * 1024) or ""
    cmdline = " ".join(a for a in raw.split("\0") if a)[:TEXT_CAP]
    return Process(pid, comm[:TEXT_CAP], cmdline)


def socket_owners(probe: HostProbe, inodes: Iterable[int]) -> tuple[dict[int, list[Process]], int]:
    """Map socket inodes to the processes holding them (via /proc/PID/fd links `socket:[INODE]`).

    Return (owners, number of processes whose fds could not be listed: other users' without root)."""
    wanted = {f"socket:[{i}]": i for i in inodes if i}
    owners: dict[int, list[Process]] = {}
    hidden = 0
    if not wanted:
        return owners, hidden
    for pid in _pids(probe):
        fd_dir = probe.proc_root / str(pid) / "fd"
        try:
            names = os.listdir(fd_dir)
        except OSError:
            hidden += 1
            continue
        for name in names:
            try:
                target = os.readlink(fd_dir / name)
            except OSError:
                continue
            inode = wanted.get(target)
            if inode is not None:
                procs = owners.setdefault(inode, [])
                if all(p.pid != pid for p in procs):
                    procs.append(process_info(probe, pid))
    return owners, hidden


@dataclass(frozen=True)
class OllamaProcess:
    """A running `ollama serve` and the OLLAMA_* part of its environment (None: unreadable)."""

    process: Process
    env: dict[str, str] | None


def ollama_processes(probe: HostProbe) -> list[OllamaProcess]:
    """Find running Ollama servers (comm `ollama`, not a model runner) and read their environment."""
    found = []
    for pid in _pids(probe):
        comm = (read_text(probe.proc_root / str(pid) / "comm", 4096) or "").strip()
        if comm != "ollama":
            continue
        proc = process_info(probe, pid)
        args = proc.cmdline.split()
        if len(args) > 1 and args[1] == "runner":
            continue  # `ollama runner --model ...`: a child of the server, same environment
        raw = read_text(probe.proc_root / str(pid) / "environ", 256 * 1024)
        env = None if raw is None else ollama_vars(a.partition("=") for a in raw.split("\0") if "=" in a)
        found.append(OllamaProcess(proc, env))
    return found


def ollama_vars(pairs: Iterable[tuple[str, str, str]]) -> dict[str, str]:
    return {k: v[:TEXT_CAP] for k, _, v in pairs if k.startswith("OLLAMA_")}
