"""Measure the live follower: append-to-commit latency, idle CPU and sustained lines per second.

    .venv/bin/python bench/follow.py [--idle-seconds 30] [--lines 300000] [--samples 80]
                                     [--only latency|idle|sustained]

- Latency: a Daemon (in this process, one thread) follows a file; a writer appends one nginx line at
  random intervals; the `on_stored` hook notes when the committed batch holding it came back.
  Measured with `watch = "inotify"` (file events wake the loop) and `watch = "poll"` (poll_seconds = 1).
- Idle CPU: a real `ollama-monitor run` process (python -m monitor) follows a file that does not change
  (one complete line; empty, as after a logrotate `create` rotation; a complete line and an unfinished
  one); its utime+stime from /proc/PID/stat over --idle-seconds, as a share of one core (target < 1%).
- Sustained rate: the same process while a writer appends --lines lines as fast as it can; the rate
  is lines / seconds from the first write until the last row is committed.
Talks to nothing but local files.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor.config import SourceSettings, validate  # noqa: E402
from monitor.core.records import Request  # noqa: E402
from monitor.service.daemon import Daemon  # noqa: E402
from monitor.store import Store  # noqa: E402

# Recent times: the daemon prunes requests older than [retention] requests_days.
LINE = (
    "203.0.113.{ip} - - ["
    + datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S")
    + ' +0000] "GET /b/{i} HTTP/1.1" 200 {size} "-" "bench/1.0"\n'
)


def latency(watch: str, samples: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "access.log"
        log.write_text(LINE.format(ip=1, i="start", size=0))
        settings = validate(
            {
                "database": {"url": f"sqlite:///{tmp}/db.sqlite"},
                "daemon": {"poll_seconds": 1.0},
                "sources": [
                    {
                        "name": "bench",
                        "path": str(log),
                        "format": "nginx",
                        "watch": watch,
                        "start_at": "beginning",
                    }
                ],
            }
        )
        store = Store.open(settings.database.url)
        written: dict[str, float] = {}
        seen: dict[str, float] = {}
        done = threading.Event()

        def on_stored(_s: SourceSettings, requests: list[Request], _now: datetime) -> None:
            t = time.perf_counter()
            for r in requests:
                if r.path and r.path in written:
                    seen[r.path] = t
            if len(seen) >= samples:
                done.set()

        daemon = Daemon(settings, store, on_stored=on_stored)
        thread = threading.Thread(target=daemon.run)
        thread.start()
        time.sleep(1.5)
        rng = random.Random(1)
        with log.open("a") as fh:
            for i in range(samples):
                time.sleep(rng.uniform(0.02, 0.25))
                path = f"/b/{watch}-{i}"
                written[path] = time.perf_counter()
                fh.write(LINE.format(ip=2, i=f"{watch}-{i}", size=i))
                fh.flush()
        done.wait(timeout=10)
        daemon.request_stop()
        thread.join()
        store.close()
        return sorted(seen[p] - written[p] for p in seen)


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def start_daemon(tmp: Path, log: Path, watch: str) -> tuple[subprocess.Popen[bytes], Path]:
    db = tmp / "db.sqlite"
    cfg = tmp / "monitor.toml"
    cfg.write_text(
        f'[database]\nurl = "sqlite:///{db}"\n[daemon]\nbatch_lines = 5000\n'
        f'[[sources]]\nname = "bench"\npath = "{log}"\nformat = "nginx"\nwatch = "{watch}"\nstart_at = "beginning"\n'
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_STATE_HOME": str(tmp / "state")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(cfg), "run", "--log-level", "warning"],
        env=env,
        cwd=tmp,
    )
    return proc, db


def count(db: Path) -> int:
    try:
        con = sqlite3.connect(db, timeout=5)
        try:
            return int(con.execute("SELECT count(*) FROM requests").fetchone()[0])
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0


def wait_count(db: Path, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while count(db) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {n} rows (have {count(db)})")
        time.sleep(0.01)


def wait_ready(db: Path, timeout: float) -> None:
    """Wait for the daemon's first heartbeat: it has started every job and ticked once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            con = sqlite3.connect(db, timeout=5)
            try:
                if con.execute("SELECT 1 FROM meta WHERE key = 'daemon.heartbeat'").fetchone():
                    return
            finally:
                con.close()
        except sqlite3.OperationalError:
            pass
        time.sleep(0.1)
    raise SystemExit("the daemon did not start")


# What the followed file holds while the daemon idles: one complete line (lines flowed, then stopped),
# nothing at all (the state after every logrotate `create` rotation until the next request), and a
# complete line followed by an unfinished one (a writer stopped mid-line).
IDLE_CONTENTS = {
    "one line": LINE.format(ip=1, i="x", size=1),
    "empty": "",
    "unfinished last line": LINE.format(ip=1, i="x", size=1) + LINE.format(ip=1, i="y", size=2)[:40],
}


def idle_cpu(watch: str, seconds: float, content: str) -> float:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        log = tmp / "access.log"
        log.write_text(content)
        proc, db = start_daemon(tmp, log, watch)
        try:
            if content.count("\n"):
                wait_count(db, content.count("\n"), 30)
            wait_ready(db, 60)
            time.sleep(3)  # let start-up work settle (imports, the first tick's window bookkeeping)
            before, t0 = cpu_seconds(proc.pid), time.monotonic()
            time.sleep(seconds)
            used, elapsed = cpu_seconds(proc.pid) - before, time.monotonic() - t0
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
        return 100.0 * used / elapsed


def sustained(lines: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        log = tmp / "access.log"
        log.write_text(LINE.format(ip=1, i="x", size=1))
        proc, db = start_daemon(tmp, log, "auto")
        try:
            wait_count(db, 1, 30)
            t0 = time.perf_counter()
            with log.open("a") as fh:
                for start in range(0, lines, 1000):
                    fh.write(
                        "".join(
                            LINE.format(ip=i % 250, i=i, size=i % 5000) for i in range(start, start + 1000)
                        )
                    )
            write_s = time.perf_counter() - t0
            wait_count(db, lines + 1, 300)
            total = time.perf_counter() - t0
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
        return lines / total, lines / write_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--lines", type=int, default=300_000)
    parser.add_argument("--samples", type=int, default=80)
    parser.add_argument(
        "--only", choices=("latency", "idle", "sustained"), help="run one of the three measurements"
    )
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, load {os.getloadavg()[0]:.1f}")
    if args.only in (None, "latency"):
        for watch in ("inotify", "poll"):
            lat = latency(watch, args.samples)
            print(
                f"append-to-commit latency, watch={watch:7s}: n={len(lat)} p50={pct(lat, 0.5) * 1000:.1f} ms "
                f"p95={pct(lat, 0.95) * 1000:.1f} ms max={lat[-1] * 1000:.1f} ms mean={statistics.mean(lat) * 1000:.1f} ms"
            )
    if args.only in (None, "idle"):
        for label, content in IDLE_CONTENTS.items():
            for watch in ("inotify", "poll"):
                share = idle_cpu(watch, args.idle_seconds, content)
                print(
                    f"idle CPU of `ollama-monitor run`, watch={watch:7s}, file: {label:21s} "
                    f"{share:.3f}% of one core over {args.idle_seconds:.0f} s (target < 1%)"
                )
    if args.only not in (None, "sustained"):
        return
    rate, write_rate = sustained(args.lines)
    print(
        f"sustained live rate: {rate:,.0f} lines/s stored ({args.lines:,} nginx lines; the writer alone: {write_rate:,.0f} lines/s)"
    )


if __name__ == "__main__":
    main()
