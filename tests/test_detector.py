"""The isolation-forest detector: contract, scores, guards, explanations, persistence, fallback."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitor.config import Settings
from monitor.core.errors import ModelError
from monitor.detect import model as dm
from monitor.detect.features import FEATURE_NAMES
from monitor.detect.known import KnownSources
from monitor.detect.pipeline import Pipeline, make_dispatcher
from monitor.store import Store

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def training_frame(n: int = 1200, seed: int = 0) -> pd.DataFrame:
    """Ordinary windows: 20 sources, ~30 requests an hour, mostly inference."""
    rng = np.random.default_rng(seed)
    requests = rng.poisson(30, n).astype(float) + 1
    data = {name: np.zeros(n) for name in FEATURE_NAMES}
    data.update(
        requests=requests,
        inference=np.floor(requests * 0.8),
        enumeration=np.ceil(requests * 0.2),
        distinct_paths=rng.integers(1, 4, n).astype(float),
        latency_p50_ms=rng.lognormal(7, 0.3, n),
        latency_p95_ms=rng.lognormal(8, 0.3, n),
        latency_max_ms=rng.lognormal(8.5, 0.3, n),
        bytes_sent=requests * 1500,
        user_agents=np.ones(n),
        burstiness=rng.uniform(-0.2, 0.4, n),
        hour_rarity=rng.uniform(0.8, 0.95, n),
        source_age_days=rng.uniform(1, 14, n),
    )
    index = pd.MultiIndex.from_arrays(
        [[f"10.0.1.{i % 20}" for i in range(n)], [T0 + timedelta(hours=i // 20) for i in range(n)]],
        names=["client_ip", "window_start"],
    )
    return pd.DataFrame(data, index=index)[list(FEATURE_NAMES)]


@pytest.fixture(scope="module")
def fitted() -> dm.Detector:
    return dm.Detector(random_state=7).fit(training_frame())


def test_estimator_contract() -> None:
    d = dm.Detector(threshold_quantile=0.01, random_state=3)
    assert d.get_params()["threshold_quantile"] == 0.01 and d.random_state == 3
    assert not [k for k in vars(d) if k.endswith("_")]  # __init__ learns nothing
    assert d.fit(training_frame(300)) is d
    learned = [k for k in vars(d) if k.endswith("_")]
    assert {"forest_", "threshold_", "p99_", "n_windows_"} <= set(learned)
    with pytest.raises(ModelError, match="not trained"):
        dm.Detector().score_samples(training_frame(10))


def test_fast_scores_equal_scikit_learn(fitted: dm.Detector) -> None:
    probe = training_frame(500, seed=5)
    probe["requests"] *= np.linspace(0.5, 50, 500)
    ours = fitted.score_samples(probe)
    theirs = fitted.forest_.score_samples(fitted._matrix(probe))
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


def test_threshold_is_the_training_quantile(fitted: dm.Detector) -> None:
    scores = fitted.score_samples(training_frame())
    assert fitted.threshold_ == pytest.approx(np.quantile(scores, 0.002))
    findings = fitted.assess(training_frame(600, seed=9))
    assert sum(f.anomalous for f in findings) <= 3  # ordinary windows stay quiet


def test_guard_catches_what_the_saturated_forest_misses(fitted: dm.Detector) -> None:
    base = training_frame(2, seed=1)
    big = base.copy()
    big.iloc[0, big.columns.get_loc("requests")] = 1_402
    huge = big.copy()
    huge.iloc[0, huge.columns.get_loc("requests")] = 1_402_000_000
    # Saturation: the score barely moves between 1,402 and 1.4e9 requests.
    assert fitted.score_samples(big)[0] == pytest.approx(fitted.score_samples(huge)[0], abs=0.02)
    finding = fitted.assess(big)[0]
    assert finding.anomalous and "requests" in finding.guards
    assert finding.explanation.startswith("requests 1,402 vs typical ")
    assert "score" in finding.explanation and "threshold" in finding.explanation
    assert not fitted.assess(base)[0].anomalous


def test_own_baseline_keeps_a_big_regular_source_quiet() -> None:
    frame = training_frame(1200)
    busy = frame.loc["10.0.1.3"].index[:10]  # one source has a big job now and then (<1% of all windows)
    frame.loc[[("10.0.1.3", t) for t in busy], "requests"] = 400.0
    d = dm.Detector(random_state=7).fit(frame)
    row = frame.loc[[("10.0.1.3", busy[0])]].copy()
    assert not d.assess(row)[0].anomalous
    row.index = pd.MultiIndex.from_tuples([("10.0.1.4", row.index[0][1])], names=row.index.names)
    assert d.assess(row)[0].anomalous  # the same window from an ordinary source is not ordinary


def test_save_and_load_round_trip(tmp_path: Path, fitted: dm.Detector) -> None:
    meta = dm.save(fitted, tmp_path, trained_at=T0, window_start=T0, window_end=T0 + timedelta(days=2))
    assert meta["features"] == list(FEATURE_NAMES) and meta["rows"] == 1200
    assert set(meta["versions"]) >= {"scikit-learn", "numpy", "pandas", "python"}
    assert "requests" in meta["transforms"]["log1p"] and "hour_rarity" not in meta["transforms"]["log1p"]
    saved = json.loads((tmp_path / dm.META_FILE).read_text())
    assert saved["sha256"] == meta["sha256"] and saved["threshold"] == fitted.threshold_
    loaded, meta2 = dm.load(tmp_path)
    probe = training_frame(50, seed=4)
    np.testing.assert_array_equal(loaded.score_samples(probe), fitted.score_samples(probe))
    assert meta2["warnings"] == []


def test_corrupt_mismatched_or_missing_models_are_refused(tmp_path: Path, fitted: dm.Detector) -> None:
    with pytest.raises(ModelError, match="no trained model"):
        dm.load(tmp_path)
    dm.save(fitted, tmp_path, trained_at=T0)
    model = tmp_path / dm.MODEL_FILE
    model.write_bytes(model.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModelError, match="checksum"):
        dm.load(tmp_path)
    dm.save(fitted, tmp_path, trained_at=T0)
    with pytest.raises(ModelError, match="different features"):
        dm.load(tmp_path, features=(*FEATURE_NAMES, "new_feature"))
    (tmp_path / dm.META_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="unreadable"):
        dm.load(tmp_path)


def test_version_mismatch_warns(
    tmp_path: Path, fitted: dm.Detector, caplog: pytest.LogCaptureFixture
) -> None:
    """The saved arrays are read by numpy: a numpy version change warns; scikit-learn's does not
    matter to a model that is scored without it."""
    dm.save(fitted, tmp_path, trained_at=T0)
    meta_path = tmp_path / dm.META_FILE
    meta = json.loads(meta_path.read_text())
    meta["versions"]["numpy"] = "0.1"
    meta["versions"]["scikit-learn"] = "0.2"
    meta_path.write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="monitor.detect.model"):
        _model, loaded = dm.load(tmp_path)
    assert any("numpy 0.1" in w for w in loaded["warnings"])
    assert "numpy 0.1" in caplog.text
    assert not any("scikit-learn" in w for w in loaded["warnings"])


def test_loaded_model_scores_like_scikit_learn_without_importing_it(
    tmp_path: Path, fitted: dm.Detector
) -> None:
    """The saved form is numpy arrays (no pickle): a fresh process loads and scores it with neither
    scikit-learn nor pandas imported, and its scores equal IsolationForest.score_samples."""
    import subprocess
    import sys

    dm.save(fitted, tmp_path, trained_at=T0)
    assert (tmp_path / "detector.npz").is_file() and not (tmp_path / "detector.joblib").exists()
    probe = training_frame(300, seed=11)
    probe["requests"] *= np.linspace(0.2, 80, 300)
    np.save(tmp_path / "probe.npy", fitted._matrix(probe))
    code = (
        "import sys, numpy as np\n"
        "from monitor.detect import model as dm\n"
        f"det, meta = dm.load({str(tmp_path)!r})\n"
        f"np.save({str(tmp_path / 'ours.npy')!r}, det.trees_.score_samples(np.load({str(tmp_path / 'probe.npy')!r})))\n"
        "print(sorted(m for m in ('sklearn', 'pandas', 'joblib', 'scipy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
    ours = np.load(tmp_path / "ours.npy")
    theirs = fitted.forest_.score_samples(fitted._matrix(probe))
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


def test_a_model_of_the_old_pickled_format_still_loads(tmp_path: Path, fitted: dm.Detector) -> None:
    """Models saved before the numpy format (format 1: `detector.joblib`, the Detector pickled with
    joblib, the metadata naming it) load as before, with a warning to retrain; retraining replaces it."""
    import hashlib

    import joblib

    joblib.dump(fitted, tmp_path / "detector.joblib")
    meta = dm.save(fitted, tmp_path / "new", trained_at=T0)
    meta.update(format=1, model_file="detector.joblib")
    meta["sha256"] = hashlib.sha256((tmp_path / "detector.joblib").read_bytes()).hexdigest()
    (tmp_path / dm.META_FILE).write_text(json.dumps(meta))
    loaded, meta2 = dm.load(tmp_path)
    probe = training_frame(80, seed=3)
    np.testing.assert_array_equal(loaded.score_samples(probe), fitted.score_samples(probe))
    assert any("old format" in w and "retrain" in w for w in meta2["warnings"])
    dm.save(loaded, tmp_path, trained_at=T0)
    assert not (tmp_path / "detector.joblib").exists()
    again, meta3 = dm.load(tmp_path)
    assert meta3["warnings"] == [] and meta3["format"] == 2
    np.testing.assert_array_equal(again.score_samples(probe), fitted.score_samples(probe))


def test_a_damaged_array_file_is_refused(tmp_path: Path, fitted: dm.Detector) -> None:
    """Arrays that do not make a forest (a child pointing outside the nodes) are a ModelError, not a crash."""
    import hashlib

    dm.save(fitted, tmp_path, trained_at=T0)
    arrays = dict(np.load(tmp_path / dm.MODEL_FILE))
    arrays["tree_left"] = arrays["tree_left"] + 10**9
    with (tmp_path / dm.MODEL_FILE).open("wb") as fh:
        np.savez(fh, **arrays)
    meta = json.loads((tmp_path / dm.META_FILE).read_text())
    meta["sha256"] = hashlib.sha256((tmp_path / dm.MODEL_FILE).read_bytes()).hexdigest()
    (tmp_path / dm.META_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="cannot be loaded.*left points outside"):
        dm.load(tmp_path)


def test_pipeline_falls_back_to_rules_only_on_a_corrupt_model(
    tmp_path: Path, fitted: dm.Detector, caplog: pytest.LogCaptureFixture
) -> None:
    models = tmp_path / "models"
    dm.save(fitted, models, trained_at=T0)
    (models / dm.MODEL_FILE).write_bytes(b"garbage")
    settings = Settings.model_validate(
        {"database": {"url": f"sqlite:///{tmp_path}/m.db"}, "detector": {"model_dir": str(models)}}
    )
    store = Store.open(settings.database.url)
    try:
        with caplog.at_level(logging.WARNING, logger="monitor.detect.pipeline"):
            pipe = Pipeline(settings, store, make_dispatcher(settings, None), KnownSources(settings.known))
        assert pipe.detector is None
        assert pipe.status["detector"] == "rules-only" and "checksum" in pipe.status["reason"]
        assert "running on rules only" in caplog.text
        assert pipe.tick(T0) == []  # still works: rules only, not enough history to retrain
        assert "windows of history" in pipe.status["reason"] or "checksum" in pipe.status["reason"]
    finally:
        store.close()


def test_due() -> None:
    assert dm.due(T0, None)
    assert not dm.due(T0, T0 - timedelta(hours=23))
    assert dm.due(T0, T0 - timedelta(hours=24))
    assert dm.due(T0, T0 - timedelta(hours=2), every=timedelta(hours=1))


def test_train_and_score_commands(tmp_path: Path, cli) -> None:
    from monitor.core.records import Request
    from monitor.service import simulate
    from tests.conftest import assert_no_traceback

    db, models = tmp_path / "m.db", tmp_path / "models"
    config = tmp_path / "monitor.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{db}"\n[detector]\nmodel_dir = "{models}"\n'
        '[known]\nallow = ["10.0.0.0/8"]\n',
        encoding="utf-8",
    )
    events = simulate.simulate(T0, days=3, seed=2)
    store = Store.open(f"sqlite:///{db}")
    fid = store.file_id("ollama", "fp", "x")
    store.add_batch(
        "ollama",
        fid,
        [
            (i, Request(e.ts, e.client_ip, e.method, e.path, e.status, e.latency_ms, e.bytes_sent))
            for i, e in enumerate(events)
            if e.ts < T0 + timedelta(hours=20)
        ],
    )
    store.close()
    early = cli("--config", str(config), "train")
    assert early.returncode == 0 and "not trained" in early.stdout and "windows of history" in early.stdout
    nomodel = cli("--config", str(config), "score")
    assert (
        nomodel.returncode == 65
        and "no trained model" in nomodel.stderr
        and "ollama-monitor train" in nomodel.stderr
    )

    store = Store.open(f"sqlite:///{db}")
    store.add_batch(
        "ollama",
        store.file_id("ollama", "fp2", "y"),
        [
            (i, Request(e.ts, e.client_ip, e.method, e.path, e.status, e.latency_ms, e.bytes_sent))
            for i, e in enumerate(events)
            if e.ts >= T0 + timedelta(hours=20)
        ],
    )
    store.close()
    trained = cli("--config", str(config), "train")
    assert trained.returncode == 0, trained.stderr
    assert "trained on" in trained.stdout and (models / dm.META_FILE).is_file()
    scored = cli("--config", str(config), "score", "--json", "--window", "2026-03-04T11:20")
    assert scored.returncode == 0, scored.stderr
    data = json.loads(scored.stdout)
    assert data["windows"] and {"client_ip", "score", "anomalous", "window_start"} <= set(data["windows"][0])
    assert {w["window_start"] for w in data["windows"]} == {"2026-03-04T11:00:00+00:00"}
    (models / dm.MODEL_FILE).write_bytes(b"not a model")
    broken = cli("--config", str(config), "score")
    assert broken.returncode == 65 and "checksum" in broken.stderr
    assert_no_traceback(broken)


def test_pipeline_alerts_fresh_anomalies_and_only_records_stale_ones(tmp_path: Path) -> None:
    from monitor.core.records import Request
    from monitor.service import simulate
    from monitor.store import detect_queries as q

    events = simulate.simulate(
        T0, days=3, seed=8, scenarios={"hostile-night": timedelta(days=2, hours=2, minutes=10)}
    )
    settings = Settings.model_validate(
        {
            "database": {"url": f"sqlite:///{tmp_path}/m.db"},
            "detector": {"model_dir": str(tmp_path / "models")},
            "known": simulate.known_config(),
        }
    )
    store = Store.open(settings.database.url)
    try:
        fid = store.file_id("ollama", "fp", "x")
        rows = [
            (i, Request(e.ts, e.client_ip, e.method, e.path, e.status, e.latency_ms))
            for i, e in enumerate(events)
        ]
        store.add_batch("ollama", fid, rows)
        known = KnownSources(settings.known)
        day2 = T0 + timedelta(days=2)
        trainer = Pipeline(settings, store, make_dispatcher(settings, None), known)
        trainer.catch_up(day2)
        assert trainer.train(day2) is not None and trainer.status["detector"] == "active"
        store.set_meta("detector.scored_until", day2.isoformat())

        live = Pipeline(settings, store, make_dispatcher(settings, None), known)
        notes = live.tick(day2 + timedelta(hours=3, minutes=5))  # just after the hostile window closed
        hostile = [n for n in notes if n.rule == "anomaly"]
        assert [n.client_ips for n in hostile] == [(simulate.HOSTILE_IP,)]
        assert "vs typical" in hostile[0].message

        store.set_meta("detector.scored_until", day2.isoformat())
        late = Pipeline(settings, store, make_dispatcher(settings, None), known)
        assert [
            n for n in late.tick(day2 + timedelta(days=1)) if n.rule == "anomaly"
        ] == []  # a day late: stale
        flagged = [w for w in q.load_windows(store, day2, day2 + timedelta(days=1)) if w["anomalous"]]
        assert simulate.HOSTILE_IP in {w["client_ip"] for w in flagged}
    finally:
        store.close()
