"""The model's lifecycle: load the saved detector, decide when to retrain, train, save, and say in
`status` what runs and why. All of the detect package's calls into monitor.detect.model's
persistence (exists, load, save) and training (due, Detector.fit) are here: the daemon, `train`,
`score` and `replay` all go through it.

`ModelLifecycle(settings)` loads the model of [detector] model_dir when there is a usable one; a
missing, corrupt or foreign one (other features, another window length) leaves the pipeline on rules
only, with the reason in `status`, never a crash. `status` is what `train` and `replay` report:
`detector` ("active" or "rules-only"), `reason`, `model_dir`, `min_windows`, `windows`, `warnings`,
and once trained `trained_at` and `threshold` (`error` while the saved model is unusable).
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor.config import Settings
from monitor.core.errors import ModelError
from monitor.detect import scoring as ps
from monitor.detect.known import KnownSources
from monitor.store import Store

if TYPE_CHECKING:
    from monitor.detect.frame import Windows
    from monitor.detect.model import Detector, Finding

log = logging.getLogger(__name__)


def load_saved(model_dir: str | os.PathLike[str]) -> tuple[Detector, dict[str, Any]]:
    """The saved detector and its metadata; raise ModelError when there is none or it is unusable."""
    from monitor.detect import model as dm  # scikit-learn is slow to import: only when a model is used

    return dm.load(model_dir)


class ModelLifecycle:
    """The current detector (None: rules only), its metadata, when it was trained and `status`."""

    def __init__(self, settings: Settings) -> None:
        det = settings.detector
        self.settings = settings
        self.detector_settings = det
        self.window = timedelta(minutes=det.window_minutes)
        self.model_dir = Path(det.model_dir)
        self.detector: Detector | None = None
        self.meta: dict[str, Any] = {}
        self.last_trained: datetime | None = None
        self.status: dict[str, Any] = {
            "detector": "rules-only",
            "reason": "no model yet",
            "model_dir": str(self.model_dir),
            "min_windows": det.min_windows,
            "windows": 0,
            "warnings": [],
        }
        self._next_check: datetime | None = None  # before this, `due` does not even look
        self.load()

    # --- the saved model ---------------------------------------------------------------------------
    def load(self) -> None:
        """Use the model saved in model_dir, if any; an unusable one is logged and said in `status`."""
        from monitor.detect import model as dm

        if not dm.exists(self.model_dir):
            return
        try:
            self.detector, self.meta = load_saved(self.model_dir)
            saved_window = self.meta.get("window_minutes")
            if saved_window is not None and int(saved_window) != self.detector_settings.window_minutes:
                self.detector = None
                raise ModelError(
                    f"the model was trained on {saved_window}-minute windows but [detector] window_minutes is "
                    f"{self.detector_settings.window_minutes}; retrain it with `ollama-monitor train`"
                )
        except ModelError as exc:
            log.warning("detector disabled, running on rules only: %s", exc)
            self.status.update(detector="rules-only", reason=f"model unusable: {exc}", error=str(exc))
            return
        try:
            self.last_trained = datetime.fromisoformat(str(self.meta.get("trained_at")))
        except ValueError:  # unknown age: retrain at the first chance
            self.last_trained = None
        self.status.update(
            detector="active",
            reason=f"model trained {self.meta.get('trained_at')} on {self.meta.get('rows')} windows",
            trained_at=self.meta.get("trained_at"),
            threshold=self.meta.get("threshold"),
            warnings=self.meta.get("warnings", []),
        )

    # --- using it ----------------------------------------------------------------------------------
    def assess(self, frame: Windows) -> list[Finding]:
        """The detector's findings for a window's frame, one per row; none without a model."""
        return self.detector.assess(frame) if self.detector is not None and len(frame) else []

    def training_rows(self) -> int:
        """How many windows the current model was trained on (for the anomaly alert's text)."""
        assert self.detector is not None, "no model"
        return self.meta.get("rows") or self.detector.n_windows_

    # --- retraining --------------------------------------------------------------------------------
    def due(self, now: datetime) -> bool:
        """Whether to train now: never trained, or [detector] retrain_hours have passed since."""
        from monitor.detect import model as dm

        if self._next_check is not None and now < self._next_check:
            return False
        every = timedelta(hours=self.detector_settings.retrain_hours)
        if not dm.due(now, self.last_trained, every):
            self._next_check = self.last_trained + every if self.last_trained else None
            return False
        return True

    def check_again_at(self, when: datetime) -> None:
        """Training found too few windows: `due` looks again at `when` (the next window's close)."""
        self._next_check = when

    def train(
        self, store: Store, known: KnownSources, since: datetime, now: datetime
    ) -> dict[str, Any] | None:
        """Train on the stored windows of known sources in [since, now) and save the model.

        The windows must be computed already (the pipeline's `train` does it). Return the saved
        metadata, or None (and say why in `status`) when there are fewer than `min_windows` windows.
        A model that cannot be saved is used in memory, its metadata says `saved: False`.
        """
        from monitor.detect import model as dm

        frame, groups, info = ps.training_set(store, known, since, now)
        det = self.detector_settings
        self.status["windows"] = len(groups)
        if len(groups) < det.min_windows:
            self.status.update(reason=ps.too_few_reason(store, self.settings, info, since, now))
            if self.detector is None:
                self.status["detector"] = "rules-only"
            return None
        from monitor.detect import training  # fits in a child process: no scikit-learn here

        params = {"threshold_quantile": det.threshold_quantile, "guard_factor": det.guard_factor}
        model = training.fit(frame, groups, {**params, "random_state": det.random_state})
        start, end = info["first"], info["last"] + self.window
        rows = groups
        try:
            meta = dm.save(
                model,
                self.model_dir,
                trained_at=now,
                window_start=start,
                window_end=end,
                window_minutes=det.window_minutes,
            )
        except ModelError as exc:  # keep using it in memory; say it could not be saved
            log.warning("%s", exc)
            meta = {
                "rows": len(rows),
                "threshold": model.threshold_,
                "trained_at": now.isoformat(),
                "training_window": {"start": start.isoformat(), "end": end.isoformat()},
                "saved": False,
                "warnings": [str(exc)],
            }
        self.detector, self.meta, self.last_trained = model, meta, now
        self.status.update(
            detector="active",
            reason=f"model trained {now.isoformat()} on {len(rows)} windows",
            trained_at=now.isoformat(),
            threshold=model.threshold_,
            warnings=meta.get("warnings", []),
        )
        self.status.pop("error", None)
        return meta
