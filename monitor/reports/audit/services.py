"""How the Ollama service is configured: the systemd unit's environment (through `systemctl show`, else
its unit files) and Docker containers that run Ollama or publish its port. Read-only; failures come
back as notes, never exceptions. See `monitor.reports.audit.host` for the probe.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from monitor.reports.audit.host import TEXT_CAP, HostProbe, ollama_vars, read_text

# --- systemd -----------------------------------------------------------------------------------------

SYSTEMD_PROPERTIES = "LoadState,Environment,EnvironmentFiles,FragmentPath,DropInPaths"


@dataclass
class UnitEnv:
    """OLLAMA_* variables the ollama unit sets, and where each was set."""

    found: bool = False  # the unit exists
    via: str = ""  # "systemctl" or "unit files"
    env: dict[str, str] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)  # variable -> file that sets it
    notes: list[str] = field(default_factory=list)


def _assignments(value: str) -> list[tuple[str, str]]:
    """Split an `Environment=` value (systemd quoting: double quotes, backslash escapes)."""
    try:
        words = shlex.split(value, posix=True)
    except ValueError:
        words = value.split()
    return [(k, v) for k, sep, v in (w.partition("=") for w in words) if sep and k]


def _env_file_assignments(text: str) -> list[tuple[str, str]]:
    """KEY=VALUE lines of an EnvironmentFile (comments, blank lines and quotes handled)."""
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        pairs.append((key.strip().removeprefix("export ").strip(), value))
    return pairs


def _unit_file_env(text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """Return the Environment= assignments (None-reset aware) and EnvironmentFile= paths of a unit file."""
    pairs: list[tuple[str, str]] = []
    files: list[str] = []
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line
            continue
        if section != "[Service]" or line.startswith(("#", ";")):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep:
            continue
        if key == "Environment":
            if not value.strip():
                pairs.append(("", ""))  # an empty assignment resets the list
            pairs.extend(_assignments(value))
        elif key == "EnvironmentFile" and value.strip():
            files.append(value.strip())
    return pairs, files


def unit_env(probe: HostProbe, unit: str = "ollama") -> UnitEnv:
    """Read the unit's environment through `systemctl show`, else from its files under /etc/systemd."""
    result = UnitEnv()
    props: dict[str, str] = {}
    shown = probe.run(["systemctl", "show", unit, f"--property={SYSTEMD_PROPERTIES}", "--no-pager"])
    if shown is not None and shown.ok:
        for line in shown.stdout.splitlines():
            key, _, value = line.partition("=")
            props[key] = value
    if props:
        result.via = "systemctl"
        if props.get("LoadState") == "not-found" or not props.get("FragmentPath"):
            return result
        result.found = True
        for key, value in _assignments(props.get("Environment", "")):
            _set(result, key, value, "")
        files = [props["FragmentPath"], *props.get("DropInPaths", "").split()]
        # `EnvironmentFiles=/etc/default/ollama (ignore_errors=no)`; ignore_errors=yes is the `-` prefix.
        listed = re.findall(r"(\S+) \(ignore_errors=(yes|no)\)", props.get("EnvironmentFiles", ""))
        _attribute_origins(probe, result, files)
        _read_env_files(
            probe, result, [("-" if optional == "yes" else "") + name for name, optional in listed]
        )
        return result
    if shown is None:
        result.notes.append("systemctl not found; read the unit files instead")
    else:
        result.notes.append(f"systemctl show failed ({shown.problem()}); read the unit files instead")
    result.via = "unit files"
    base = probe.etc_root / "systemd" / "system"
    fragment = base / f"{unit}.service"
    dropins = (
        sorted((base / f"{unit}.service.d").glob("*.conf")) if (base / f"{unit}.service.d").is_dir() else []
    )
    texts = [(p, read_text(p)) for p in [fragment, *dropins]]
    if texts[0][1] is None and not dropins:
        return result
    result.found = True
    env_files: list[str] = []
    for path, text in texts:
        if text is None:
            if path.exists():
                result.notes.append(f"could not read {path}")
            continue
        pairs, files = _unit_file_env(text)
        env_files.extend(files)
        for key, value in pairs:
            if not key:
                result.env.clear()
                result.origin.clear()
            else:
                _set(result, key, value, str(path))
    _read_env_files(probe, result, env_files)
    return result


def _set(result: UnitEnv, key: str, value: str, origin: str) -> None:
    if key.startswith("OLLAMA_"):
        result.env[key] = value[:TEXT_CAP]
        result.origin[key] = origin


def _attribute_origins(probe: HostProbe, result: UnitEnv, files: list[str]) -> None:
    """Name the last unit file (fragment, then drop-ins in order) that assigns each variable."""
    for name in files:
        path = probe.etc_path(name)
        text = read_text(path) if path is not None else None
        if text is None:
            continue
        for key, _ in _unit_file_env(text)[0]:
            if key in result.env:
                result.origin[key] = name


def _read_env_files(probe: HostProbe, result: UnitEnv, names: list[str]) -> None:
    for name in names:
        optional = name.startswith("-")
        name = name.lstrip("-")
        path = probe.etc_path(name)
        text = read_text(path) if path is not None else None
        if text is None:
            if not optional:
                result.notes.append(f"could not read EnvironmentFile {name} (run as root to check)")
            continue
        for key, value in _env_file_assignments(text):
            _set(result, key, value, name)


# --- Docker ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Publish:
    """A published port: container port (`11434/tcp`) to host address and port."""

    container_port: str
    host_ip: str
    host_port: str


@dataclass(frozen=True)
class Container:
    name: str
    image: str
    network_mode: str
    publishes: tuple[Publish, ...]
    env: dict[str, str]


@dataclass
class DockerState:
    available: bool = False  # the CLI exists
    answered: bool = False  # and the daemon answered
    note: str = ""
    containers: list[Container] = field(default_factory=list)


def docker_containers(probe: HostProbe, ports: Iterable[int]) -> DockerState:
    """Return running containers that publish an Ollama port or run an ollama image."""
    state = DockerState()
    listed = probe.run(["docker", "ps", "--no-trunc", "--format", "{{json .}}"])
    if listed is None:
        return state
    state.available = True
    if not listed.ok:
        state.note = listed.problem()
        return state
    ids = []
    for line in listed.stdout.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(row, dict)
            and isinstance(row.get("ID"), str)
            and re.fullmatch(r"[0-9a-f]{6,64}", row["ID"])
        ):
            ids.append(row["ID"])
    state.answered = True
    if not ids:
        return state
    inspected = probe.run(["docker", "inspect", *ids[:200]])
    if inspected is None or not inspected.ok:
        state.note = inspected.problem() if inspected is not None else "docker vanished"
        return state
    try:
        data = json.loads(inspected.stdout)
    except ValueError:
        state.note = "docker inspect did not print JSON"
        return state
    wanted = {str(p) for p in ports} | {"11434"}
    for item in data if isinstance(data, list) else []:
        container = _container(item)
        if container is None:
            continue
        publishes_ollama = any(
            p.container_port.split("/")[0] in wanted or p.host_port in wanted for p in container.publishes
        )
        if publishes_ollama or "ollama" in container.image.lower():
            state.containers.append(container)
    return state


def _container(item: Any) -> Container | None:
    if not isinstance(item, dict):
        return None
    config = item.get("Config") or {}
    host_config = item.get("HostConfig") or {}
    bindings = host_config.get("PortBindings") or {}
    publishes = []
    if isinstance(bindings, dict):
        for cport, binds in bindings.items():
            for b in binds or []:
                if isinstance(b, dict):
                    publishes.append(
                        Publish(str(cport), str(b.get("HostIp") or ""), str(b.get("HostPort") or ""))
                    )
    env_list = config.get("Env") or []
    env = ollama_vars(str(e).partition("=") for e in env_list if "=" in str(e))
    return Container(
        name=str(item.get("Name") or item.get("Id", "?")[:12]).lstrip("/")[:TEXT_CAP],
        image=str(config.get("Image") or "")[:TEXT_CAP],
        network_mode=str(host_config.get("NetworkMode") or ""),
        publishes=tuple(publishes),
        env=env,
    )
