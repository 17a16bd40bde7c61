"""The daemon's side of the detector runs on numpy alone: training fits in a child process, and
computing, scoring and saving windows with a trained model import neither scikit-learn nor pandas
(together ~160 MB of a process's memory, for as long as it lives)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from monitor.core.errors import ModelError
from monitor.detect import training
from monitor.detect.features import FEATURE_NAMES

DAEMON_SIDE = """
import json, sys
from datetime import UTC, datetime, timedelta
from monitor import config
from monitor.core.records import Request
from monitor.detect.known import KnownSources
from monitor.detect.pipeline import Pipeline
from monitor.service import simulate
from monitor.store import Store

db, models = sys.argv[1], sys.argv[2]
t0 = datetime(2026, 3, 2, tzinfo=UTC)
settings = config.validate({
    "database": {"url": f"sqlite:///{db}"},
    "detector": {"model_dir": models},
    "known": {"allow": ["10.0.0.0/8"]},
})

class Quiet:
    def submit(self, alerts, now): return []
    def flush(self, now): return []

events = [e for e in simulate.simulate(t0, days=4, seed=2) if e.ts < t0 + timedelta(days=4)]
def rows(evs, first):
    return [(first + i, Request(e.ts, e.client_ip, e.method, e.path, e.status, e.latency_ms, e.bytes_sent))
            for i, e in enumerate(evs)]
with Store.open(settings.database.url) as store:
    fid = store.file_id("ollama", "fp", "x")
    old = [e for e in events if e.ts < t0 + timedelta(days=3)]
    store.add_batch("ollama", fid, rows(old, 0))
    pipe = Pipeline(settings, store, Quiet(), KnownSources(settings.known))
    meta = pipe.train(t0 + timedelta(days=3))
    assert meta is not None and pipe.detector is not None, pipe.status
    # The daemon goes on: a new day of requests, windows closing, computed and scored by the model.
    new = [e for e in events if e.ts >= t0 + timedelta(days=3)]
    for e in new:
        pipe.process("ollama", [Request(e.ts, e.client_ip, e.method, e.path, e.status, e.latency_ms, e.bytes_sent)], e.ts)
    store.add_batch("ollama", fid, rows(new, len(old)))
    pipe.tick(t0 + timedelta(days=4, minutes=5))
    with store.engine.connect() as conn:
        scored = conn.exec_driver_sql(
            "SELECT count(*) FROM windows WHERE score IS NOT NULL AND window_start >= ?",
            ((t0 + timedelta(days=3)).strftime("%Y-%m-%d %H:%M:%S.%f"),),
        ).scalar_one()
heavy = sorted(m for m in ("sklearn", "pandas", "scipy", "joblib") if m in sys.modules)
print(json.dumps({"heavy": heavy, "rows": meta["rows"], "scored": scored}))
"""


def test_training_and_scoring_keep_scikit_learn_and_pandas_out_of_the_daemon(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", DAEMON_SIDE, str(tmp_path / "m.db"), str(tmp_path / "models")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert result["rows"] >= 256 and result["scored"] > 0
    assert (tmp_path / "models" / "detector.npz").is_file()


def test_a_failed_training_process_is_a_model_error() -> None:
    """The child refuses one window (nothing to learn from): its exit is a ModelError naming why."""
    with pytest.raises(ModelError, match="training failed.*cannot train on 1 window"):
        training.fit(np.ones((1, len(FEATURE_NAMES))), ["10.0.0.1"], {"random_state": 1})


def test_a_child_fit_equals_an_in_process_fit() -> None:
    """The arrays that come back from the child score exactly as the Detector fitted here does."""
    from monitor.detect import model as dm

    rng = np.random.default_rng(5)
    matrix = rng.gamma(2.0, 3.0, size=(600, len(FEATURE_NAMES)))
    groups = [f"10.0.0.{i % 9}" for i in range(600)]
    child = training.fit(matrix, groups, {"random_state": 4, "threshold_quantile": 0.01})
    here = dm.Detector(random_state=4, threshold_quantile=0.01).fit(matrix, groups=groups)
    probe = rng.gamma(2.0, 4.0, size=(200, len(FEATURE_NAMES)))
    np.testing.assert_array_equal(child.score_samples(probe), here.score_samples(probe))
    np.testing.assert_allclose(
        here.score_samples(probe), here.forest_.score_samples(here._matrix(probe)), atol=1e-12
    )
    assert child.threshold_ == here.threshold_ and child.source_p99_.keys() == here.source_p99_.keys()
