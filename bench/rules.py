"""Benchmark: the immediate rules under a flood of distinct unknown addresses, against known clients.

Each case feeds the same number of requests, spread over one hour of log time, to a `RulesEngine`
(behind a proxy source, as `run` would hand them over, in batches of 500), in a process of its own
so that its peak RSS is its own:

1. baseline `known`: the requests come from 200 known clients (the same-run reference rate);
2. `unknown-v4`: every request comes from a new unknown IPv4 address (198.18.0.0/15);
3. `unknown-v6`: every request comes from a new unknown IPv6 address of one /64 (a scanner rotating
   its interface identifier, trivial on IPv6).

With `--big`, a fourth case sends 1,000,000 new unknown addresses (100.64.0.0/10) within the hour, to
show that memory stays bounded (the engine remembers at most `MAX_TRACKED` addresses).

    .venv/bin/python bench/rules.py [--lines 100000] [--repeat 3] [--big]

Printed per case: lines/s of wall time (median of the runs), CPU seconds (and lines per CPU second),
peak RSS, the alerts raised and the ratio to the baseline; then the load average, since a loaded
machine slows wall time down. Target: the 100,000-address flood at >= 10,000 lines/s.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.config import KnownSettings, RuleSettings  # noqa: E402
from monitor.core.records import Request  # noqa: E402
from monitor.detect.known import KnownSources  # noqa: E402
from monitor.detect.rules import RulesEngine  # noqa: E402

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
BATCH = 500
PATHS = [("GET", "/api/tags"), ("POST", "/api/chat"), ("GET", "/"), ("POST", "/api/show")]


def addresses(case: str, n: int) -> Iterator[str]:
    if case == "known":
        for i in range(n):
            yield f"10.0.{(i % 200) // 100}.{i % 100 + 1}"
    elif case == "unknown-v4":
        base = int(ipaddress.IPv4Address("198.18.0.0"))
        for i in range(n):
            yield str(ipaddress.IPv4Address(base + i))
    elif case == "unknown-v6":
        rng = random.Random(1)
        prefix = int(ipaddress.IPv6Address("2001:db8:1:2::"))
        for _ in range(n):
            yield str(ipaddress.IPv6Address(prefix + rng.getrandbits(64)))
    elif case == "unknown-big":
        base = int(ipaddress.IPv4Address("100.64.0.0"))
        for i in range(n):
            yield str(ipaddress.IPv4Address(base + i))
    else:
        raise SystemExit(f"unknown case {case}")


def run_case(case: str, n: int) -> dict[str, object]:
    """Feed `n` requests of `case` to a fresh engine; return the figures of this process."""
    engine = RulesEngine(
        RuleSettings(),
        KnownSources(KnownSettings(allow=["10.0.0.0/8", "127.0.0.0/8"])),
        proxy_configured=True,
    )
    step = timedelta(hours=1) / n
    alerts = 0
    batch: list[Request] = []
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    for i, ip in enumerate(addresses(case, n)):
        method, path = PATHS[i % len(PATHS)]
        batch.append(Request(T0 + i * step, ip, method, path, 200, 12.0, 512, "bench/1.0"))
        if len(batch) == BATCH:
            alerts += len(engine.evaluate(batch, batch[-1].ts, source="nginx", is_proxy=True))
            batch = []
    if batch:
        alerts += len(engine.evaluate(batch, batch[-1].ts, source="nginx", is_proxy=True))
    alerts += len(engine.flush(T0 + timedelta(hours=2)))
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    return {
        "case": case,
        "lines": n,
        "wall": wall,
        "cpu": cpu,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "alerts": alerts,
        "state": engine.state_sizes(),
    }


def in_child(case: str, n: int) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", case, "--lines", str(n)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, object] = json.loads(out)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--big", action="store_true", help="also 1,000,000 new addresses (memory bound)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child, args.lines)))
        return
    cases = [("known", args.lines), ("unknown-v4", args.lines), ("unknown-v6", args.lines)]
    if args.big:
        cases.append(("unknown-big", 1_000_000))
    base_rate = None
    flood_rate = flood_cpu_rate = None
    for case, n in cases:
        runs = [in_child(case, n) for _ in range(args.repeat if case != "unknown-big" else 1)]
        rate = statistics.median(n / float(str(r["wall"])) for r in runs)
        cpu = statistics.median(float(str(r["cpu"])) for r in runs)
        rss = max(float(str(r["rss_mb"])) for r in runs)
        if case == "known":
            base_rate = rate
        if case == "unknown-v4":
            flood_rate, flood_cpu_rate = rate, n / cpu
        ratio = f"{rate / base_rate:.2f}x the baseline" if base_rate else ""
        print(
            f"{case:12s} {n:>9,} lines: {rate:>9,.0f} lines/s (median of {len(runs)}), CPU {cpu:.2f} s "
            f"({n / cpu:,.0f} lines per CPU second), peak RSS {rss:.0f} MB, {runs[0]['alerts']} alerts; {ratio}"
        )
        print(f"{'':12s} state kept at the end: {runs[0]['state']}")
    if flood_rate is not None and flood_cpu_rate is not None:
        verdict = "met" if flood_rate >= 10_000 else "MISSED"
        print(f"target (100,000 new unknown addresses at >= 10,000 lines/s): {verdict} by wall time")
        verdict = "met" if flood_cpu_rate >= 10_000 else "MISSED"
        print(
            f"  and {verdict} by CPU time (what one unloaded core would take; wall time suffers on a loaded machine)"
        )
    print(
        f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
