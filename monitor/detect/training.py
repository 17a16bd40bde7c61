"""Fit the detector in a child process, so that the daemon (and `train`) never import scikit-learn.

scikit-learn's ensemble module pulls in pandas and scipy: ~160 MB of a process's memory for as long as
it lives, where scoring needs numpy only (monitor.detect.forest). So `fit(matrix, groups, params)`
runs `python -m monitor.detect.training` with the training windows on its standard input (an .npz of
the feature matrix, the client IP of each row and the detector's parameters as JSON), the child fits
`monitor.detect.model.Detector` and writes the learned arrays back on its standard output (an .npz,
read without pickle), and the caller gets a Detector in its numpy form. The child exits when it is
done, giving its memory back; a child that fails is a ModelError naming the cause.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from monitor.core.errors import ModelError
from monitor.detect import model as dm

TIMEOUT = 3600.0  # seconds; a fit of 100,000s of windows takes seconds


def _payload(matrix: np.ndarray, groups: Sequence[str], params: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    np.savez(
        buf,
        allow_pickle=False,
        matrix=np.asarray(matrix, dtype=np.float64),
        groups=np.array(list(groups), dtype=str) if len(groups) else np.zeros(0, dtype="<U1"),
        params=np.array(json.dumps(params)),
    )
    return buf.getvalue()


def fit(matrix: np.ndarray, groups: Sequence[str], params: dict[str, Any]) -> dm.Detector:
    """Fit a Detector(**params) on `matrix` (one row per window, columns in FEATURE_NAMES order) in a
    child process; return it in its numpy form (no scikit-learn object in this process)."""
    package_root = str(Path(dm.__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "monitor.detect.training"],
            input=_payload(matrix, groups, params),
            capture_output=True,
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
        with np.load(io.BytesIO(done.stdout), allow_pickle=False) as arrays:
            return dm.from_arrays({k: arrays[k] for k in arrays.files}, params)
    except Exception as exc:  # anything unreadable from the child means no model
        raise ModelError(f"the training process returned no model: {type(exc).__name__}: {exc}") from None


def main() -> int:
    """The child: read the payload on stdin, fit, write the learned arrays on stdout."""
    with np.load(io.BytesIO(sys.stdin.buffer.read()), allow_pickle=False) as data:
        matrix, groups = data["matrix"], [str(g) for g in data["groups"].tolist()]
        params = json.loads(str(data["params"]))
    try:
        detector = dm.with_params(params)
        detector.fit(matrix, groups=groups or None)
    except ModelError as exc:
        print(f"ollama-monitor: {exc}", file=sys.stderr)
        return 65
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **dm.to_arrays(detector))
    sys.stdout.buffer.write(buf.getvalue())
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
