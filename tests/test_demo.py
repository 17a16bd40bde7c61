"""`make demo` runs `ollama-monitor demo`: the real daemon on a simulated log must show the alerts."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import isolated_env
from tests.receivers import HttpReceiver


@pytest.mark.slow
def test_demo_shows_unknown_source_and_management_alerts(tmp_path: Path) -> None:
    started = time.monotonic()
    with HttpReceiver() as hook:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "monitor",
                "demo",
                "--seconds",
                "15",
                "--notify",
                hook.apprise_url("/demo"),
            ],
            capture_output=True,
            text=True,
            env=isolated_env(tmp_path),
            cwd=tmp_path,
            timeout=170,
        )
        received = [r.json["title"] for r in hook.received()]
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "Traceback" not in proc.stderr
    for expected in (
        "unknown-source",
        "management-endpoint",
        "Unknown source 203.0.113.7",
        "Management endpoint called by 192.0.2.50",
        "Trained the isolation forest",
        "what it saw",
    ):
        assert expected in out, expected
    assert "10.0.1.11" not in out.split("what it saw")[0]  # a known client never alerts
    assert elapsed < 120
    # Every notification it printed also reached the --notify URL, the last ones (the anomaly of the
    # window closed at the end, the digest) included.
    printed = int(re.search(r"Notifications: (\d+)", out).group(1))  # type: ignore[union-attr]
    assert len(received) == printed >= 4, received
    assert any("Unknown source 203.0.113.7" in t for t in received)
    assert not any((tmp_path / "state").glob("**/*.db"))  # nothing written outside its temporary directory
