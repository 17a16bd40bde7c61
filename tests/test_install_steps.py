"""Follow the README's "Run it as a service" steps in a scratch root, as a new user would.

The steps run as written, with three substitutions a test needs: paths under a temporary root instead
of /opt and /etc, the new venv borrowing the test venv's installed dependencies (no download; the
project itself is installed from this checkout for real), and `systemctl` (no systemd as PID 1 here)
replaced by a recorder. `systemd-analyze verify` checks the installed units for real.
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from tests import services

REPO = Path(__file__).resolve().parent.parent


def install_steps() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- install-steps:begin -->\s*```sh\n(.*?)```", text, re.S)
    assert block, "README lacks the install-steps block"
    return [c.strip() for c in block.group(1).replace("\\\n", " ").splitlines() if c.strip()]


@pytest.mark.slow
def test_readme_install_steps(tmp_path: Path) -> None:
    services.require("systemd-analyze (Debian package systemd)", shutil.which("systemd-analyze"))
    root = tmp_path / "root"
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "systemctl.calls"
    (bin_dir / "systemctl").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "systemctl").chmod(0o755)
    deps = site.getsitepackages()[0]
    script = ["set -eux"]
    for step in install_steps():
        step = step.replace("/opt/", f"{root}/opt/").replace("/etc/", f"{root}/etc/")
        step = step.replace("python3 -m venv", f"{sys.executable} -m venv --without-pip")
        if "/bin/pip install" in step:
            venv = f"{root}/opt/ollama-monitor"
            pyver = f"python{sys.version_info.major}.{sys.version_info.minor}"
            script.append(f"echo {deps} > {venv}/lib/{pyver}/site-packages/_deps.pth")
            step = f"{venv}/bin/python -m pip install --quiet --no-deps --ignore-installed ./"
        if step.startswith("systemd-analyze verify"):
            # The installed unit names the real ExecStart path; point it at the scratch install.
            for unit in ("ollama-monitor.service", "ollama-monitor-summary.service"):
                path = root / "etc" / "systemd" / "system" / unit
                script.append(
                    f"sed -i 's#/opt/#{root}/opt/#g; s#/etc/ollama-monitor#{root}/etc/ollama-monitor#g' {path}"
                )
        script.append(step)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    proc = subprocess.run(
        ["bash", "-c", "\n".join(script)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK" in proc.stdout  # config validate
    assert (root / "etc" / "ollama-monitor" / "monitor.toml").is_file()
    assert "enable --now ollama-monitor.service ollama-monitor-summary.timer" in calls.read_text()
    installed = subprocess.run(
        [f"{root}/opt/ollama-monitor/bin/ollama-monitor", "--version"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert installed.returncode == 0 and "ollama-monitor" in installed.stdout
