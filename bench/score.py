"""Benchmark: scoring 10,000 windows with the detector vs raw IsolationForest.score_samples.

Features come from three simulated weeks (monitor.service.simulate -> monitor.detect.features); the detector is
trained on them, then 10,000 windows (resampled, some inflated) are scored, in the same run, by:
1. the baseline: `IsolationForest.score_samples` of the fitted forest on the transformed matrix;
2. `Detector.score_samples` (the same numbers, from the numpy form of the trees, monitor.detect.forest);
3. `Detector.assess` (scores + guards + explanations for every window), and
4. single-window calls of both (the daemon scores each closed window's handful of rows).

    .venv/bin/python bench/score.py [--windows 10000]

Target: 10,000 windows assessed in under 1 s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.detect import features  # noqa: E402
from monitor.detect.model import Detector  # noqa: E402
from monitor.service import simulate


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=10_000)
    args = ap.parse_args()
    events = simulate.simulate(days=21)
    frame = features.requests_frame(simulate_requests(events))
    windows = features.compute(frame, 60)
    t = time.perf_counter()
    det = Detector(random_state=42).fit(windows)
    print(f"trained on {len(windows):,} windows in {time.perf_counter() - t:.2f} s")
    rng = np.random.default_rng(1)
    sample = windows.iloc[rng.integers(0, len(windows), args.windows)].copy()
    sample["requests"] *= rng.choice([1, 1, 1, 10], len(sample))
    matrix = det._matrix(sample)

    base = timed(lambda: det.forest_.score_samples(matrix))
    ours = timed(lambda: det.score_samples(sample))
    full = timed(lambda: det.assess(sample))
    same = np.allclose(det.forest_.score_samples(matrix), det.score_samples(sample), atol=1e-12)
    one = sample.iloc[:1]
    single_base = timed(lambda: det.forest_.score_samples(det._matrix(one)), 20)
    single_ours = timed(lambda: det.assess(one), 20)
    n = len(sample)
    print(
        f"baseline IsolationForest.score_samples: {base * 1000:.0f} ms for {n:,} windows ({base / n * 1e6:.1f} us/window)"
    )
    print(
        f"Detector.score_samples:               {ours * 1000:.0f} ms ({base / ours:.1f}x faster; identical scores: {same})"
    )
    print(f"Detector.assess (scores+guards+why):  {full * 1000:.0f} ms ({full / base:.2f}x the baseline)")
    print(f"one window: baseline {single_base * 1000:.1f} ms, assess {single_ours * 1000:.1f} ms")
    print(f"target (10,000 windows assessed < 1 s): {'met' if full < 1 else 'MISSED'}")


def simulate_requests(events: list[simulate.Event]):
    from monitor.core.records import Request

    return [
        Request(e.ts, e.client_ip, e.method, e.path, e.status, e.latency_ms, e.bytes_sent, e.user_agent)
        for e in events
    ]


if __name__ == "__main__":
    main()
