"""A saved model trained on windows of another length is refused, and the pipeline says why."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from monitor import config
from monitor.detect import model as dm
from monitor.detect.features import FEATURE_NAMES
from monitor.detect.known import KnownSources
from monitor.detect.pipeline import Pipeline
from monitor.store import Store


class _Quiet:
    def submit(self, alerts: object, now: datetime) -> list[object]:
        return []

    def flush(self, now: datetime) -> list[object]:
        return []


def test_model_with_other_window_length_falls_back_to_rules(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        np.random.default_rng(3).gamma(2.0, 3.0, size=(300, len(FEATURE_NAMES))), columns=list(FEATURE_NAMES)
    )
    dm.save(
        dm.Detector(random_state=1).fit(frame),
        tmp_path / "models",
        trained_at=datetime(2026, 1, 1, tzinfo=UTC),
        window_minutes=60,
    )
    for minutes, usable in ((60, True), (30, False)):
        settings = config.validate(
            {
                "database": {"url": f"sqlite:///{tmp_path / 'm.db'}"},
                "detector": {"model_dir": str(tmp_path / "models"), "window_minutes": minutes},
            }
        )
        with Store.open(settings.database.url) as store:
            pipeline = Pipeline(settings, store, _Quiet(), KnownSources(settings.known))  # type: ignore[arg-type]
        assert (pipeline.detector is not None) is usable
        if not usable:
            assert pipeline.status["detector"] == "rules-only"
            assert "30" in pipeline.status["reason"] and "window" in pipeline.status["reason"]
