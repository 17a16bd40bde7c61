"""The isolation-forest detector: fit on per-window features, score, explain, save, load.

`Detector` follows scikit-learn's estimator contract: `__init__` only stores its keyword parameters,
`fit(X) -> self` learns, learned state ends in `_`, `random_state` is stored raw. Facts that shape it
(measured, see ARCHITECTURE.md): count features are log1p-transformed (scaling changes nothing, log1p a lot); the
threshold is the `threshold_quantile` of the training scores rather than contamination="auto"; the
forest's scores saturate beyond the training range, so per-feature guards flag any feature above
`guard_factor` x its training p99 even when the score does not move; and a window is only called
anomalous by the forest when at least one feature is also above its training p99, so that every
anomaly can explain itself as "actual vs typical".

A saved model is two files in the model dir: `detector.npz` (numpy arrays: the trees in the form of
monitor.detect.forest, the threshold, the p50/p99 and each source's own p99; read without pickle) and
`detector.json` (versions, features and order, transforms, training window, rows, threshold,
SHA-256 of the model file). `load` refuses a checksum or feature mismatch with ModelError and warns
(logging) on a library version mismatch. Loading and scoring need numpy only; scikit-learn is
imported by `fit` (and to read a model of the old pickled format, `detector.joblib`).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from monitor.core.errors import ModelError
from monitor.detect.features import COUNT_FEATURES, FEATURE_NAMES, FEATURES, format_value
from monitor.detect.forest import Forest, pack, unpack
from monitor.detect.frame import Windows
from monitor.detect.model_meta import sha256, versions

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

MODEL_FILE = "detector.npz"
OLD_MODEL_FILE = "detector.joblib"  # format 1: the Detector pickled (loads with scikit-learn)
META_FILE = "detector.json"
FORMAT_VERSION = 2
# Features a guard watches (counts and volumes: what an abuser inflates), with a floor for the p99 so
# that a feature that is almost always 0 in training does not make one stray request an anomaly.
GUARDED: dict[str, float] = {
    "requests": 20,
    "inference": 20,
    "enumeration": 10,
    "management": 10,
    "other": 10,
    "distinct_paths": 5,
    "bytes_sent": 100_000,
    "user_agents": 3,
}
# Features that explain an anomaly when high (all but burstiness, which is unusual at both ends).
EXPLAINERS: tuple[str, ...] = tuple(f for f in FEATURE_NAMES if f not in ("burstiness", "source_age_days"))
OWN_MIN_WINDOWS = (
    2  # windows a source needs in training before it gets its own baseline (a daily job has 1 a day)
)
PARAMS = (
    "n_estimators",
    "max_samples",
    "threshold_quantile",
    "guard_factor",
    "random_state",
    "features",
    "log_features",
)
MARGIN = 1.25  # a feature must exceed its typical value by this factor to count as unusual


@dataclass(frozen=True)
class Finding:
    """One assessed window: its score, whether it is anomalous, and why."""

    client_ip: str
    window_start: datetime | None
    score: float
    anomalous: bool
    guards: tuple[str, ...]
    top: tuple[tuple[str, float, float], ...]  # (feature, actual, typical), most surprising first
    explanation: str


class Detector:
    """Isolation forest over per-window features with calibrated threshold and per-feature guards."""

    def __init__(
        self,
        *,
        n_estimators: int = 100,
        max_samples: int | str = "auto",
        threshold_quantile: float = 0.002,
        guard_factor: float = 3.0,
        random_state: int | None = 42,
        features: tuple[str, ...] = FEATURE_NAMES,
        log_features: tuple[str, ...] = COUNT_FEATURES,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.threshold_quantile = threshold_quantile
        self.guard_factor = guard_factor
        self.random_state = random_state
        self.features = features
        self.log_features = log_features

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {k: getattr(self, k) for k in PARAMS}

    # --- learning -------------------------------------------------------------------------------
    def _matrix(self, X: Any) -> np.ndarray:
        """The forest's input: the feature columns in order (a frame's, or a matrix already in that
        order), NaN and infinities as 0, log1p of the count features."""
        m = self._raw(X).copy()
        for j, f in enumerate(self.features):
            if f in self.log_features:
                m[:, j] = np.log1p(np.clip(m[:, j], 0, None))
        return m

    def _raw(self, X: Any) -> np.ndarray:
        if isinstance(X, Windows):
            X = (
                np.column_stack([X.column(f) for f in self.features])
                if len(X)
                else np.zeros((0, len(self.features)))
            )
        if isinstance(X, np.ndarray):
            if X.ndim != 2 or X.shape[1] != len(self.features):
                raise ModelError(f"feature matrix has shape {X.shape}, expected (n, {len(self.features)})")
            m = X.astype(float)
        else:
            missing = [f for f in self.features if f not in X.columns]
            if missing:
                raise ModelError(f"feature frame lacks {missing}")
            m = X[list(self.features)].to_numpy(dtype=float, copy=True)
        return np.nan_to_num(m, nan=0.0, posinf=0.0, neginf=0.0)

    def fit(
        self, X: Any, groups: Sequence[Any] | None = None, group_names: Sequence[str] | None = None
    ) -> Detector:
        """Learn from a feature frame (one row per window; or a matrix of the feature columns in order).
        Return self. Imports scikit-learn (and with it pandas): the daemon fits in a child process
        (monitor.detect.training), so that it never loads them.

        `groups` (the client IP of each row, or its code into `group_names`; default: level 0 of a
        MultiIndex, if any) gives each source
        with at least OWN_MIN_WINDOWS windows its own p99 baseline: a window is only unusual where it
        exceeds both the p99 of all sources and the source's own.
        """
        from sklearn.ensemble import IsolationForest

        m = self._matrix(X)
        if len(m) < 2:
            raise ModelError(f"cannot train on {len(m)} window(s)")
        self.forest_ = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=self.max_samples,
            random_state=self.random_state,
            n_jobs=1,
        ).fit(m)
        self.trees_ = Forest.from_sklearn(self.forest_)
        train_scores = self.trees_.score_samples(m)
        self.threshold_ = float(np.quantile(train_scores, self.threshold_quantile))
        raw = self._raw(X)
        self.p50_ = np.quantile(raw, 0.5, axis=0)
        self.p99_ = np.quantile(raw, 0.99, axis=0)
        if groups is None and getattr(getattr(X, "index", None), "nlevels", 1) > 1:
            groups = [str(v) for v in X.index.get_level_values(0)]
        self.source_p99_: dict[str, np.ndarray] = {}
        if groups is not None and group_names is not None:  # groups are codes into group_names
            labels, codes = np.asarray(group_names, dtype=str), np.asarray(groups, dtype=np.int64)
        elif groups is not None:
            labels, codes = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
        if groups is not None:
            order = np.argsort(codes, kind="stable")
            bounds = np.searchsorted(codes[order], np.arange(len(labels) + 1))
            for k, ip in enumerate(labels.tolist()):
                rows = order[bounds[k] : bounds[k + 1]]
                if len(rows) >= OWN_MIN_WINDOWS:
                    self.source_p99_[str(ip)] = np.quantile(raw[rows], 0.99, axis=0)
        self.n_windows_ = len(m)
        self.feature_names_in_ = np.array(self.features, dtype=object)
        return self

    def __getstate__(self) -> dict[str, Any]:
        # Pickled models are the old format (detector.joblib); the numpy form is derived, not pickled.
        state = dict(self.__dict__)
        state.pop("trees_", None)
        state.pop("paths_", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.pop("paths_", None)
        if "forest_" in state:
            self.trees_ = Forest.from_sklearn(self.forest_)

    def _check_fitted(self) -> None:
        if not hasattr(self, "trees_"):
            raise ModelError("the detector is not trained yet")

    def score_samples(self, X: Any) -> np.ndarray:
        """Return the forest's score per row: lower is more abnormal (batch it: single calls cost ~5 ms)."""
        self._check_fitted()
        return self.trees_.score_samples(self._matrix(X))  # equal to IsolationForest's (a test checks it)

    # --- judging ----------------------------------------------------------------------------------
    def assess(self, X: Windows | pd.DataFrame) -> list[Finding]:
        """Score every row of window features (a Windows, or a frame indexed by (client_ip,
        window_start)); explain each."""
        self._check_fitted()
        if len(X) == 0:
            return []
        scores = self.score_samples(X)
        raw = self._raw(X)
        idx = {f: j for j, f in enumerate(self.features)}
        # Typical per row: the larger of the global p99 and the source's own p99 (when it has one).
        ips = [str(v) for v in X.index.get_level_values(0)] if X.index.nlevels > 1 else [""] * len(X)
        base = np.tile(self.p99_, (len(X), 1))
        for i, ip in enumerate(ips):
            own = self.source_p99_.get(ip)
            if own is not None:
                base[i] = np.maximum(base[i], own)
        # Surprise: how far above its training p99 a feature is, in units of its p50..p99 spread.
        surprise = np.zeros_like(raw)
        for f in EXPLAINERS:
            j = idx[f]
            if f in self.log_features:
                t_x, t50, t99 = (
                    np.log1p(np.clip(raw[:, j], 0, None)),
                    np.log1p(self.p50_[j]),
                    np.log1p(base[:, j]),
                )
                spread = np.maximum(t99 - t50, np.log1p(1.0))
            else:
                t_x, t50, t99 = raw[:, j], self.p50_[j], base[:, j]
                spread = np.maximum(t99 - t50, 0.05)
            surprise[:, j] = np.where(raw[:, j] > base[:, j] * MARGIN, 1.0 + (t_x - t99) / spread, 0.0)
        guard_hits = np.zeros_like(raw, dtype=bool)
        for f, floor in GUARDED.items():
            if f in idx:
                j = idx[f]
                guard_hits[:, j] = raw[:, j] > self.guard_factor * np.maximum(base[:, j], floor)
        forest_flag = (scores < self.threshold_) & (surprise.max(axis=1) > 0)
        anomalous = forest_flag | guard_hits.any(axis=1)
        findings = []
        starts = [None] * len(X)
        if X.index.nlevels > 1:
            level = X.index.get_level_values(1)
            starts = list(level) if isinstance(level, list) else list(level.to_pydatetime())
        score_list, flagged = scores.tolist(), anomalous.tolist()
        for i in range(len(X)):
            if not flagged[i]:  # ordinary windows need no explanation (and skipping it keeps batches fast)
                findings.append(Finding(ips[i], starts[i], score_list[i], False, (), (), ""))
                continue
            order = np.argsort(-surprise[i])
            top = tuple(
                (self.features[j], float(raw[i, j]), float(base[i, j]))
                for j in order[:3]
                if surprise[i, j] > 0
            )
            guards = tuple(self.features[j] for j in np.flatnonzero(guard_hits[i]))
            findings.append(
                Finding(
                    ips[i],
                    starts[i],
                    score_list[i],
                    True,
                    guards,
                    top,
                    self._explain(top, guards, score_list[i]),
                )
            )
        return findings

    def _explain(
        self, top: tuple[tuple[str, float, float], ...], guards: tuple[str, ...], score: float
    ) -> str:
        parts = [
            f"{name.replace('_', ' ')} {format_value(name, actual)} vs typical {format_value(name, p99)}"
            for name, actual, p99 in top
        ]
        text = "; ".join(parts) if parts else "an unusual combination of otherwise ordinary values"
        text += f" (score {score:.3f}, threshold {self.threshold_:.3f}"
        if guards:
            text += f"; above {self.guard_factor:g}x p99: {', '.join(guards)}"
        return text + ")"


def due(now: datetime, last_trained: datetime | None, every: timedelta = timedelta(hours=24)) -> bool:
    """Return True when the detector should be (re)trained: never trained, or `every` has passed."""
    return last_trained is None or now - last_trained >= every


# --- persistence ------------------------------------------------------------------------------------
def to_arrays(detector: Detector) -> dict[str, np.ndarray]:
    """The learned state as named arrays (the saved form, and what a training child sends back)."""
    detector._check_fitted()
    return pack(
        detector.trees_,
        detector.threshold_,
        detector.n_windows_,
        detector.p50_,
        detector.p99_,
        detector.source_p99_,
    )


def with_params(params: dict[str, Any]) -> Detector:
    """An unfitted Detector of saved parameters (JSON lists back to tuples)."""
    kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
    return Detector(**kwargs)


def from_arrays(arrays: Any, params: dict[str, Any]) -> Detector:
    """A fitted Detector (numpy scoring form, no scikit-learn object) from `to_arrays` output."""
    detector = with_params(params)
    state = unpack(arrays, len(detector.features))
    detector.__dict__.update(state, feature_names_in_=np.array(detector.features, dtype=object))
    return detector


def save(
    detector: Detector,
    model_dir: str | os.PathLike[str],
    *,
    trained_at: datetime,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
    window_minutes: int = 60,
) -> dict[str, Any]:
    """Write the model and its metadata atomically into model_dir; return the metadata. A model of
    the old format (a pickle) in the directory is removed once the new one is in place."""
    detector._check_fitted()
    folder = Path(model_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp_model = folder / (MODEL_FILE + ".tmp")
        with tmp_model.open("wb") as fh:
            np.savez_compressed(fh, allow_pickle=False, **to_arrays(detector))
        checksum = sha256(tmp_model)
        meta = {
            "format": FORMAT_VERSION,
            "trained_at": trained_at.astimezone(UTC).isoformat(),
            "versions": versions(),
            "features": list(detector.features),
            "feature_descriptions": {f: FEATURES.get(f, "") for f in detector.features},
            "transforms": {"log1p": [f for f in detector.features if f in detector.log_features]},
            "window_minutes": window_minutes,
            "training_window": {
                "start": window_start.isoformat() if window_start else None,
                "end": window_end.isoformat() if window_end else None,
            },
            "rows": detector.n_windows_,
            "threshold": detector.threshold_,
            "threshold_quantile": detector.threshold_quantile,
            "guard_factor": detector.guard_factor,
            "p50": dict(zip(detector.features, map(float, detector.p50_), strict=True)),
            "p99": dict(zip(detector.features, map(float, detector.p99_), strict=True)),
            "params": {
                k: v if not isinstance(v, tuple) else list(v) for k, v in detector.get_params().items()
            },
            "model_file": MODEL_FILE,
            "sha256": checksum,
        }
        tmp_meta = folder / (META_FILE + ".tmp")
        tmp_meta.write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp_model, folder / MODEL_FILE)
        os.replace(tmp_meta, folder / META_FILE)
        (folder / OLD_MODEL_FILE).unlink(missing_ok=True)
    except OSError as exc:
        raise ModelError(
            f"cannot save the model in {folder}: {exc.strerror or exc}",
            hint="set [detector] model_dir to a writable directory",
        ) from None
    return meta


def exists(model_dir: str | os.PathLike[str]) -> bool:
    return (Path(model_dir) / META_FILE).is_file()


def read_metadata(model_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the saved metadata; raise ModelError if it is missing or unreadable."""
    path = Path(model_dir) / META_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"no trained model in {model_dir}", hint="run `ollama-monitor train`") from None
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"model metadata {path} is unreadable: {exc}", hint="retrain with `ollama-monitor train`"
        ) from None
    if not isinstance(meta, dict):
        raise ModelError(
            f"model metadata {path} is not a JSON object", hint="retrain with `ollama-monitor train`"
        )
    return meta


def load(
    model_dir: str | os.PathLike[str], features: tuple[str, ...] = FEATURE_NAMES
) -> tuple[Detector, dict[str, Any]]:
    """Load a saved detector; return (detector, metadata with a `warnings` list).

    Raise ModelError when the files are missing, the checksum or the feature list does not match, or the
    model file cannot be read. A numpy version mismatch is logged and listed in metadata["warnings"].
    The model file is numpy arrays (read without pickle, scored without scikit-learn); a model of the
    old format (`detector.joblib`, a pickle) still loads, with scikit-learn, and a warning to retrain.
    """
    folder = Path(model_dir)
    meta = read_metadata(folder)
    retrain = "retrain with `ollama-monitor train`"
    saved = meta.get("features")
    if saved != list(features):
        raise ModelError(
            f"the model in {folder} was trained on different features ({saved!r:.200}); this version uses "
            f"{list(features)}",
            hint=retrain,
        )
    old = meta.get("format", 1) == 1
    model_path = folder / str(meta.get("model_file", OLD_MODEL_FILE if old else MODEL_FILE))
    if not model_path.is_file():
        raise ModelError(f"model file {model_path} is missing", hint=retrain)
    if sha256(model_path) != meta.get("sha256"):
        raise ModelError(
            f"model file {model_path} does not match its checksum (corrupt or replaced)", hint=retrain
        )
    notes = []
    current = versions()
    saved_versions = meta.get("versions") or {}
    for lib in ("scikit-learn", "numpy") if old else ("numpy",):
        if saved_versions.get(lib) != current[lib]:
            notes.append(
                f"model saved with {lib} {saved_versions.get(lib)}, running {current[lib]}: {retrain}"
            )
    if old:
        detector = _load_pickle(model_path, retrain)
        notes.append(
            f"model file {model_path.name} is the old format (a pickle: loading it needs scikit-learn, "
            f"~160 MB more memory): {retrain}"
        )
    else:
        try:
            with np.load(model_path, allow_pickle=False) as saved_arrays:
                detector = from_arrays(
                    {k: saved_arrays[k] for k in saved_arrays.files}, meta.get("params") or {}
                )
        except Exception as exc:  # a damaged or foreign file fails in many ways; all mean "unusable"
            raise ModelError(
                f"model file {model_path} cannot be loaded: {type(exc).__name__}: {str(exc)[:200]}",
                hint=retrain,
            ) from None
    if tuple(detector.features) != tuple(features):
        raise ModelError(f"model file {model_path} does not hold a detector for these features", hint=retrain)
    for note in notes:
        log.warning(note)
    meta["warnings"] = notes
    return detector, meta


def _load_pickle(model_path: Path, retrain: str) -> Detector:
    """A model of format 1: the Detector pickled with joblib (imports scikit-learn)."""
    import joblib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's InconsistentVersionWarning: reported as a note
        try:
            detector = joblib.load(model_path)
        except Exception as exc:  # a pickle can fail in many ways; all mean "unusable"
            raise ModelError(
                f"model file {model_path} cannot be loaded: {type(exc).__name__}: {str(exc)[:200]}",
                hint=retrain,
            ) from None
    if not isinstance(detector, Detector) or not hasattr(detector, "trees_"):
        raise ModelError(f"model file {model_path} does not hold a trained detector", hint=retrain)
    return detector
