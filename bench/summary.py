"""Benchmark: the weekly summary over a week of 1,000,000 requests, vs a baseline measured in the same run.

Generates N requests spread over one week (about 2,000 clients with a long tail, some IPv6, a few
hundred scanner addresses, queries that make paths distinct) straight into a fresh SQLite store with
`Store.add_batch`, then times
1. the baseline: a bare `pandas.read_sql` of the same rows and columns (no parsing, no aggregation);
2. `monitor.reports.summary.build.build` for that week (the database aggregates: rollups, hours,
   (endpoint, client) pairs, exact latency percentiles; then the previous week, first-seen, alerts,
   model state), run first so that its peak RSS is not the baseline's, and
3. rendering it as text, Markdown, HTML and JSON.

    .venv/bin/python bench/summary.py [--rows 1000000] [--keep DIR]

Prints wall and CPU times (the CPU figures hold when other work shares the machine) and the ratio
build / baseline. Target: build + render under 10 s for 1M rows.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.config import Settings  # noqa: E402
from monitor.core.records import Request  # noqa: E402
from monitor.store import Store  # noqa: E402

START = datetime(2025, 3, 3, tzinfo=UTC)  # a Monday
ROUTES = [
    ("POST", "/api/chat", 200, 40),
    ("POST", "/api/generate", 200, 15),
    ("POST", "/v1/chat/completions", 200, 15),
    ("POST", "/api/embed", 200, 8),
    ("GET", "/api/tags", 200, 6),
    ("GET", "/", 200, 3),
    ("GET", "/api/version", 200, 2),
    ("POST", "/api/show", 200, 3),
    ("GET", "/api/ps", 200, 2),
    ("POST", "/api/pull", 200, 0.2),
    ("GET", "/v1/models", 200, 2),
    ("POST", "/api/chat", 500, 0.5),
    ("GET", "/api/tags?x=1", 401, 0.3),
    ("POST", "/api/chat", 499, 0.5),
]
SCANNER_PATHS = ["/.env", "/wp-login.php", "/api/tags", "/", "/.git/config", "/cgi-bin/luci", "/api/ps"]
AGENTS = ["python-requests/2.32.3", "ollama-python/0.4.7", "OpenAI/Python 1.54.0", "curl/8.5.0", None]


def generate(store: Store, n: int, seed: int = 7, batch: int = 50_000) -> None:
    """Store n requests over the week starting at START (deterministic for a seed)."""
    rng = random.Random(seed)
    clients = [str(ipaddress.IPv4Address(0x0A000000 + rng.randrange(1 << 20))) for _ in range(1500)]
    clients += [str(ipaddress.IPv6Address((0x20010DB8 << 96) + rng.randrange(1 << 64))) for _ in range(200)]
    scanners = [str(ipaddress.IPv4Address(0xC6336400 + i)) for i in range(300)]  # 198.51.100.0/22-ish
    weights = [1.0 / (i + 1) for i in range(len(clients))]
    routes = [r[:3] for r in ROUTES]
    route_weights = [r[3] for r in ROUTES]
    file_id = store.file_id("bench", "f" * 64, "/var/log/nginx/access.log")
    step_us = int(timedelta(days=7) / timedelta(microseconds=1)) // n
    offset = 0
    while offset < n:
        size = min(batch, n - offset)
        chosen = rng.choices(clients, weights=weights, k=size)
        picks = rng.choices(routes, weights=route_weights, k=size)
        rows: list[tuple[int, Request]] = []
        for i in range(size):
            k = offset + i
            ts = START + timedelta(microseconds=k * step_us)
            if k % 97 == 0:  # a scanner probe, with a unique query now and then
                path = rng.choice(SCANNER_PATHS) + (f"?id={k}" if k % 5 == 0 else "")
                rows.append(
                    (k, Request(ts, scanners[k % len(scanners)], "GET", path, 404, 0.3, 19, "zgrab/0.x"))
                )
                continue
            method, path, status = picks[i]
            rows.append(
                (
                    k,
                    Request(
                        ts,
                        chosen[i],
                        method,
                        path,
                        status,
                        rng.lognormvariate(6, 1.2),
                        rng.randrange(20, 90_000),
                        AGENTS[k % len(AGENTS)],
                    ),
                )
            )
        store.add_batch("bench", file_id, rows)
        offset += size


T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[T, float, float]:
    """Run fn; return (its result, wall seconds, CPU seconds of this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", metavar="DIR", help="keep the database in DIR (reused when present)")
    args = parser.parse_args()

    import pandas as pd

    from monitor.reports.summary import build as summary
    from monitor.reports.summary import render as summary_render
    from monitor.store import summary_queries

    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-summary-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "summary.db"
    try:
        fresh = not db.exists()
        store = Store.open(f"sqlite:///{db}")
        if fresh:
            t0 = time.perf_counter()
            generate(store, args.rows)
            print(f"generated {args.rows:,} requests in {time.perf_counter() - t0:.1f} s")
        settings = Settings.model_validate(
            {
                "database": {"url": f"sqlite:///{db}"},
                "known": {"allow": ["10.0.0.0/8"], "admins": ["10.0.0.0/24"]},
                "detector": {"model_dir": str(workdir / "models")},
            }
        )
        since, until = START, START + timedelta(days=7)

        def bare_read() -> int:
            with store.engine.connect() as conn:
                return len(pd.read_sql(summary_queries.requests_select(since, until), conn))

        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result, built_wall, built_cpu = timed(lambda: summary.build(store, settings, since, until))
        rss_built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows, base_wall, base_cpu = timed(bare_read)
        outputs, render_wall, render_cpu = timed(
            lambda: {fmt: summary_render.render(result, fmt) for fmt in ("text", "markdown", "html", "json")}
        )
        store.close()

        print(f"rows in the week:          {rows:,} ({result.totals.sources:,} sources)")
        print(
            f"load average:              {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall times suffer above 1 per CPU)"
        )
        print(
            f"baseline bare pd.read_sql: {base_wall:6.2f} s wall {base_cpu:6.2f} s CPU  (SQLAlchemy select, no parsing)"
        )
        print(
            f"summary.build:             {built_wall:6.2f} s wall {built_cpu:6.2f} s CPU  "
            f"({built_wall / base_wall:.2f}x the baseline's wall time, {built_cpu / base_cpu:.2f}x its CPU); "
            f"peak RSS {rss_built:.0f} MB ({rss_before:.0f} MB before it)"
        )
        print(
            f"render text/md/html/json:  {render_wall:6.2f} s wall {render_cpu:6.2f} s CPU  "
            f"({', '.join(f'{k} {len(v) // 1024} KiB' for k, v in outputs.items())})"
        )
        total = built_wall + render_wall
        print(
            f"total:                     {total:6.2f} s wall {built_cpu + render_cpu:6.2f} s CPU  "
            f"target < 10 s: {'OK' if total < 10 else 'MISSED'}"
        )
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
