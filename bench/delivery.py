"""Benchmark: alert delivery to a healthy webhook while another receiver drips a byte every 2 s.

Both receivers are real sockets on 127.0.0.1 (tests/slow_receivers.py). The delivery loop is the
daemon's: a thread that wakes when a notification is queued (or every 5 s) and runs one
`Outbox.deliver(wait_seconds=1.0)` pass. One notification is queued every `--every` seconds for
`--seconds` seconds, routed to every configured service. Two phases in the same run:

1. baseline: the healthy webhook is the only service;
2. drip: a receiver that accepts, reads the request, then answers one byte every 2 s forever is
   configured first, the healthy webhook second.

For each phase it prints the healthy webhook's lateness (arrival minus queueing; p50, p95, max), how
many arrived, the drip's connections, and the process's CPU seconds and peak RSS. Target: lateness
under 5 s with the drip, i.e. about the baseline's.

    .venv/bin/python bench/delivery.py [--seconds 60] [--every 1.0]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.alerts.delivery import Outbox  # noqa: E402
from monitor.config import AlertSettings  # noqa: E402
from monitor.core.records import Notification, Severity  # noqa: E402
from monitor.store import Store  # noqa: E402
from tests.slow_receivers import DripReceiver, SlowHttpReceiver  # noqa: E402

POLL_SECONDS = 5.0  # the daemon's DELIVERY_POLL_SECONDS


def _deliver(outbox: Outbox) -> None:
    try:
        outbox.deliver(wait_seconds=1.0)
    except TypeError:  # an Outbox from before per-service isolation (for a before/after figure)
        outbox.deliver()


def phase(urls: list[str], healthy: SlowHttpReceiver, seconds: float, every: float) -> dict[str, float]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmp,
        Store.open(f"sqlite:///{tmp}/b.db") as store,
    ):
        outbox = Outbox(AlertSettings(urls=urls), store, throttle=0.0)
        wake, stop = threading.Event(), threading.Event()

        def loop() -> None:  # the daemon's delivery thread
            while not stop.is_set():
                wake.wait(POLL_SECONDS)
                wake.clear()
                if not stop.is_set():
                    _deliver(outbox)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        before = healthy.count()
        queued: dict[str, float] = {}
        cpu0 = time.process_time()
        start = time.monotonic()
        i = 0
        while time.monotonic() - start < seconds:
            nid = f"bench-{id(outbox)}-{i}"
            now = datetime.now(UTC)
            note = Notification(nid, now, "unknown-source", Severity.WARNING, f"alert {i}", nid, ())
            queued[nid] = time.monotonic()
            outbox.enqueue([note], now)
            wake.set()
            i += 1
            time.sleep(max(0.0, start + i * every - time.monotonic()))
        deadline = time.monotonic() + 30.0  # let the last ones arrive
        while healthy.count() - before < len(queued) and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        wake.set()
        thread.join(timeout=120)
        cpu = time.process_time() - cpu0
        with healthy.lock:
            arrivals = list(zip(healthy.bodies[before:], healthy.times[before:], strict=True))
        late = []
        for body, at in arrivals:
            nid = json.loads(body)["message"]
            if nid in queued:
                late.append(at - queued[nid])
        missing = len(queued) - len(late)
        late += [float("inf")] * missing  # never arrived within the run (+30 s)
        late.sort()
        return {
            "queued": len(queued),
            "arrived": len(queued) - missing,
            "p50": statistics.median(late),
            "p95": late[int(0.95 * (len(late) - 1))],
            "max": late[-1],
            "cpu": cpu,
            "threads": threading.active_count(),
        }


def show(name: str, r: dict[str, float], extra: str = "") -> None:
    print(
        f"{name:9} arrived {r['arrived']:.0f}/{r['queued']:.0f}  lateness p50 {r['p50']:.3f} s  "
        f"p95 {r['p95']:.3f} s  max {r['max']:.3f} s  CPU {r['cpu']:.2f} s  threads {r['threads']:.0f}{extra}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--every", type=float, default=1.0)
    args = parser.parse_args()
    with SlowHttpReceiver(delay=0.0) as healthy:
        base = phase([healthy.apprise_url()], healthy, args.seconds, args.every)
        show("baseline", base)
        with DripReceiver(interval=2.0) as drip:
            dripped = phase([drip.apprise_url(), healthy.apprise_url()], healthy, args.seconds, args.every)
            connections = drip.connections
        show("drip", dripped, f"  drip connections {connections}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ratio = dripped["p50"] / base["p50"] if base["p50"] > 0 else float("nan")
    print(f"peak RSS {rss:.0f} MB; p50 lateness with the drip / baseline: {ratio:.2f}x")
    ok = dripped["max"] < 5.0
    print("target (healthy receiver < 5 s late while the other drips):", "met" if ok else "NOT met")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
