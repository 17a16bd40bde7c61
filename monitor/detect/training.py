"""Fit the detector in a child process, so that the daemon (and `train`) never import scikit-learn.

scikit-learn's ensemble module pulls in pandas and scipy: ~160 MB of a process's memory for as long as
it lives, where scoring needs numpy only (monitor.detect.forest). So `fit(matrix, groups, params)`
runs `python -m monitor.detect.training IN OUT` with the training windows in a private temporary
file IN (an .npz of the feature matrix, each row's client as a code into the distinct client IPs,
and the detector's parameters as JSON); the child fits `monitor.detect.model.Detector` and writes
the learned arrays to OUT (an .npz, read without pickle), and the caller gets a Detector in its
numpy form. The child exits when it is done, giving its memory back; a child that fails is a
ModelError naming the cause.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from monitor.core.errors import ModelError
from monitor.detect import model as dm

TIMEOUT = 3600.0  # seconds; a fit of 100,000s of windows takes seconds


def _write_payload(path: Path, matrix: np.ndarray, groups: Sequence[str], params: dict[str, Any]) -> None:
    """The child's input: the matrix, each row's client as a code into the distinct names, the parameters."""
    names: dict[str, int] = {}
    codes = np.fromiter((names.setdefault(g, len(names)) for g in groups), dtype=np.int32, count=len(groups))
    with path.open("wb") as fh:
        np.savez(
            fh,
            allow_pickle=False,
            matrix=np.asarray(matrix, dtype=np.float64),
            codes=codes,
            names=np.array(list(names), dtype=str) if names else np.zeros(0, dtype="<U1"),
            params=np.array(json.dumps(params)),
        )


def fit(matrix: np.ndarray, groups: Sequence[str], params: dict[str, Any]) -> dm.Detector:
    """Fit a Detector(**params) on `matrix` (one row per window, columns in FEATURE_NAMES order) in a
    child process; return it in its numpy form (no scikit-learn object in this process). The windows
    go to the child, and the learned arrays come back, as .npz files in a private temporary directory."""
    package_root = str(Path(dm.__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory(prefix="ollama-monitor-train-") as tmp:
        given, learned = Path(tmp) / "windows.npz", Path(tmp) / "model.npz"
        try:
            _write_payload(given, matrix, groups, params)
            done = subprocess.run(
                [sys.executable, "-m", "monitor.detect.training", str(given), str(learned)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=env,
                timeout=TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ModelError(f"the training process could not run: {exc}") from None
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
            raise ModelError(f"training failed (exit {done.returncode}): {' | '.join(tail)[:500]}")
        try:
            with np.load(learned, allow_pickle=False) as arrays:
                return dm.from_arrays({k: arrays[k] for k in arrays.files}, params)
        except Exception as exc:  # anything unreadable from the child means no model
            raise ModelError(f"the training process returned no model: {type(exc).__name__}: {exc}") from None


def main(argv: Sequence[str]) -> int:
    """The child: read the windows file, fit, write the learned arrays to the model file."""
    given, learned = argv
    with np.load(given, allow_pickle=False) as data:
        matrix, codes, names = data["matrix"], data["codes"], data["names"]
        params = json.loads(str(data["params"]))
    try:
        detector = dm.with_params(params)
        detector.fit(matrix, groups=codes if len(codes) else None, group_names=names)
    except ModelError as exc:
        print(f"ollama-monitor: {exc}", file=sys.stderr)
        return 65
    with open(learned, "wb") as fh:
        np.savez(fh, allow_pickle=False, **dm.to_arrays(detector))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
