"""Benchmark: `replay` of three simulated weeks (~120k Gin lines, every scenario) vs plain ingest.

Generates the log with monitor.service.simulate (seeded), then times, in the same run:
1. the baseline: `ingest_file` of the log into a fresh SQLite store (read, parse, store), and
2. `run_replay` of the same log (the same ingest, then the whole pipeline: rules on every batch,
   features and scores for every closed window, daily retraining, the dispatcher).

    .venv/bin/python bench/replay.py [--days 21] [--format ollama|nginx]

Prints wall and CPU times (CPU holds when other work shares the machine), lines/s and the ratio
replay / ingest. Target: replay of three weeks under 60 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.config import Settings  # noqa: E402
from monitor.detect.replay import run_replay  # noqa: E402
from monitor.ingest.backfill import ingest_file  # noqa: E402
from monitor.service import simulate  # noqa: E402
from monitor.store import Store  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=21)
    ap.add_argument("--format", default="ollama", choices=["ollama", "nginx"])
    args = ap.parse_args()
    settings = Settings.model_validate({"known": simulate.known_config()})
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        t = time.perf_counter()
        events = simulate.simulate(days=args.days, scenarios=list(simulate.SCENARIOS))
        log = simulate.write_log(events, tmp / "access.log", args.format)
        print(f"simulated {len(events):,} lines over {args.days} days in {time.perf_counter() - t:.1f} s")

        wall, cpu = time.perf_counter(), time.process_time()
        store = Store.open(f"sqlite:///{tmp}/baseline.db")
        report = ingest_file(store, log, "bench", args.format)
        store.close()
        base_wall, base_cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(
            f"baseline ingest: {report.parsed:,} lines in {base_wall:.1f} s wall, {base_cpu:.1f} s CPU "
            f"({report.parsed / base_wall:,.0f} lines/s)"
        )

        wall, cpu = time.perf_counter(), time.process_time()
        notes, summary = run_replay(
            settings, [log], fmt=args.format, db_url=f"sqlite:///{tmp}/replay.db", model_dir=tmp / "models"
        )
        rep_wall, rep_cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(
            f"replay: {summary['requests']:,} lines in {rep_wall:.1f} s wall, {rep_cpu:.1f} s CPU "
            f"({summary['requests'] / rep_wall:,.0f} lines/s); {len(notes)} notifications "
            f"{dict(Counter(n.rule for n in notes))}"
        )
        print(f"ratio replay / ingest: {rep_wall / base_wall:.1f}x wall, {rep_cpu / base_cpu:.1f}x CPU")
        print(f"target (< 60 s for 3 weeks): {'met' if rep_wall < 60 else 'MISSED'}")


if __name__ == "__main__":
    main()
