"""Shared fixtures: run the real CLI in a subprocess with an isolated home and state directory."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

CliRunner = Callable[..., subprocess.CompletedProcess[str]]


def isolated_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment whose HOME and XDG_STATE_HOME live under tmp_path, with no config in the way."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OLLAMA_MONITOR_", "NOTIFY_SOCKET", "WATCHDOG_"))
    }
    env["HOME"] = str(tmp_path / "home")
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    env.pop("STATE_DIRECTORY", None)
    env["COLUMNS"] = "160"
    env.update(extra)
    return env


@pytest.fixture
def cli(tmp_path: Path) -> CliRunner:
    """Run `python -m monitor ARGS...` in tmp_path (so ./config/monitor.toml is not picked up)."""

    def run(
        *args: str,
        input: str | None = None,
        timeout: float = 120,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "monitor", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env or isolated_env(tmp_path),
            cwd=cwd or tmp_path,
        )

    return run


def write_config(path: Path, db: Path, extra: str = "") -> Path:
    path.write_text(f'[database]\nurl = "sqlite:///{db}"\n{extra}', encoding="utf-8")
    return path


def assert_no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout, proc.stdout
