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


# Modules whose tests start daemons, real services or long property runs (each module took 4 s or
# more of the suite's time, measured with `pytest --durations`): marked `slow`, so `make test-fast`
# (`-m "not slow"`) is the edit loop and `make test` runs everything.
SLOW_MODULES = frozenset(
    {
        "test_alerts.py",
        "test_alerts_delivery.py",
        "test_alerts_isolation.py",
        "test_alerts_replay_send.py",
        "test_audit.py",
        "test_backlog_windows.py",
        "test_config_show.py",
        "test_demo.py",
        "test_detector.py",
        "test_e2e_nginx.py",
        "test_evasions.py",
        "test_faults.py",
        "test_features_stream.py",
        "test_follow.py",
        "test_follow_daemon.py",
        "test_follow_faults.py",
        "test_follow_model.py",
        "test_ingest.py",
        "test_ingest_reading.py",
        "test_ingest_worker.py",
        "test_install_steps.py",
        "test_journald.py",
        "test_parse_failures.py",
        "test_parser_fuzz.py",
        "test_parser_prefixes.py",
        "test_pipeline_memory.py",
        "test_replay.py",
        "test_rollups.py",
        "test_rules_flood.py",
        "test_run_kill.py",
        "test_sanitize.py",
        "test_score_sources.py",
        "test_service.py",
        "test_services_require.py",
        "test_sources_cmd.py",
        "test_status.py",
        "test_store.py",
        "test_store_migration.py",
        "test_summary.py",
        "test_summary_html.py",
        "test_summary_send.py",
        "test_unit_seccomp.py",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
