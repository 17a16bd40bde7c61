"""`ollama-monitor status`: the model's state from its metadata, a corrupt model, and the daemon states."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from monitor.detect import model as dm
from monitor.detect.features import FEATURE_NAMES
from monitor.store import Store
from tests.conftest import isolated_env


def status(tmp_path: Path, cfg: Path) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(cfg), "status", "--json"],
        capture_output=True,
        text=True,
        env=isolated_env(tmp_path),
        cwd=tmp_path,
        timeout=60,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_status_model_states_and_stuck_daemon(tmp_path: Path) -> None:
    db = tmp_path / "monitor.db"
    models = tmp_path / "models"
    log = tmp_path / "access.log"
    log.write_text("")
    cfg = tmp_path / "monitor.toml"
    cfg.write_text(
        f'[database]\nurl = "sqlite:///{db}"\n[detector]\nmodel_dir = "{models}"\n'
        f'[[sources]]\nname = "nginx"\npath = "{log}"\nformat = "nginx"\n'
    )

    code, data = status(tmp_path, cfg)
    assert code == 3 and data["daemon"]["state"] == "never run"  # configured sources, no daemon yet
    assert data["model"]["trained"] is False and "rules only" in data["model"]["note"]

    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.gamma(2.0, 3.0, size=(400, len(FEATURE_NAMES))), columns=list(FEATURE_NAMES))
    model = dm.Detector(random_state=1).fit(frame)
    dm.save(model, models, trained_at=datetime(2026, 1, 5, tzinfo=UTC))
    _, data = status(tmp_path, cfg)
    assert data["model"]["trained"] is True and data["model"]["windows"] == 400
    assert data["model"]["trained_at"].startswith("2026-01-05")

    with (models / dm.MODEL_FILE).open("ab") as fh:  # corrupt the model file
        fh.write(b"tampered")
    _, data = status(tmp_path, cfg)
    assert data["model"]["trained"] is False and "checksum" in data["model"]["note"]

    # A daemon whose heartbeat is older than [daemon] stuck_minutes looks stuck: exit 2.
    with Store.open(f"sqlite:///{db}") as store:
        store.set_meta("daemon.heartbeat", (datetime.now(UTC) - timedelta(hours=1)).isoformat())
    code, data = status(tmp_path, cfg)
    assert code == 2 and data["daemon"]["state"] == "stuck"
    with Store.open(f"sqlite:///{db}") as store:
        store.set_meta("daemon.heartbeat", datetime.now(UTC).isoformat())
    code, data = status(tmp_path, cfg)
    assert code == 0 and data["daemon"]["state"] == "running"


def test_status_shows_rejects_per_source(tmp_path: Path) -> None:
    """Rejected lines of the last 24 hours, by reason, per source (real lines of another format)."""
    from monitor.ingest.backfill import ingest_file
    from tests.test_parse_failures import CADDY, write

    db = tmp_path / "monitor.db"
    log = write(tmp_path / "access.log", CADDY[:7])
    cfg = tmp_path / "monitor.toml"
    cfg.write_text(
        f'[database]\nurl = "sqlite:///{db}"\n[detector]\nmodel_dir = "{tmp_path / "models"}"\n'
        f'[[sources]]\nname = "nginx"\npath = "{log}"\nformat = "nginx"\n'
    )
    with Store.open(f"sqlite:///{db}") as store:
        report = ingest_file(store, log, "nginx", "nginx")
    assert report.rejected == 7
    _, data = status(tmp_path, cfg)
    [src] = data["sources"]
    assert src["rejects"] == 7 and sum(src["rejects_24h"].values()) == 7
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(cfg), "status"],
        capture_output=True,
        text=True,
        env=isolated_env(tmp_path),
        cwd=tmp_path,
        timeout=60,
    )
    reason = next(iter(src["rejects_24h"]))
    assert f"rejects of nginx in the last 24 h: {reason} x7" in proc.stdout, proc.stdout
