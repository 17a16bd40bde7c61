"""Measure the daemon's memory under a flood: 3,000,000 lines appended to a followed file, one million at
a time, all in the current hour (so the window stays open and everything it saw is still "current").

    .venv/bin/python bench/window_memory.py [--millions 3] [--ceiling-mb 250]

A real `ollama-monitor run` process (python -m monitor) follows an nginx log with a proxy source
configured and ~2,000 known clients; after each million is committed (rows counted in the database)
the bench samples the process's RSS (VmRSS) and at the end its peak (VmHWM), its idle RSS 20 s later,
and its utime+stime. The baseline is the same process's RSS idle after start, measured in the same run;
the bench prints each figure against it and fails (exit 1) when the peak exceeds --ceiling-mb.
Talks to nothing but local files.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATHS = ["/api/chat", "/api/generate", "/v1/chat/completions", "/api/embed", "/api/tags", "/", "/api/ps"]
AGENTS = ["python-requests/2.32.3", "ollama-python/0.4.7", "OpenAI/Python 1.54.0", "curl/8.5.0"]


def status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def million(path: Path, part: int, n: int, start: datetime, rng: random.Random) -> None:
    clients = [f"10.{1 + i // 250}.{i % 250}.{7 + i % 3}" for i in range(2000)]
    step = timedelta(minutes=20) / (n * 3)
    with path.open("a", encoding="utf-8") as fh:
        for k in range(part * n, (part + 1) * n, 10_000):
            chunk = []
            for i in range(k, k + 10_000):
                when = (start + i * step).strftime("%d/%b/%Y:%H:%M:%S +0000")
                chunk.append(
                    f'{rng.choice(clients)} - - [{when}] "POST {rng.choice(PATHS)} HTTP/1.1" 200 '
                    f'{rng.randrange(20, 90_000)} "-" "{rng.choice(AGENTS)}" {rng.random() * 9:.3f}\n'
                )
            fh.write("".join(chunk))


def stored(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM requests").fetchone()[0])
    except sqlite3.Error:
        return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--millions", type=int, default=3)
    ap.add_argument("--lines-per-part", type=int, default=1_000_000)
    ap.add_argument("--ceiling-mb", type=float, default=250.0)
    args = ap.parse_args()
    rng = random.Random(3)
    with tempfile.TemporaryDirectory(prefix="bench-window-memory-") as tmp:
        log, db = Path(tmp) / "access.log", Path(tmp) / "m.db"
        log.write_text("")
        config = Path(tmp) / "monitor.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{db}"\n[detector]\nmodel_dir = "{tmp}/models"\n'
            '[known]\nallow = ["10.0.0.0/8"]\n'
            f'[[sources]]\nname = "nginx"\npath = "{log}"\nformat = "nginx"\nproxy = true\n'
            'start_at = "beginning"\n',
            encoding="utf-8",
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_MONITOR_", "NOTIFY_SOCKET"))}
        env["HOME"] = env["XDG_STATE_HOME"] = tmp
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "--config", str(config), "run"],
            cwd=tmp,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(Path(tmp) / "run.log", "w"),  # noqa: SIM115
        )
        try:
            run_log = Path(tmp) / "run.log"
            while "ready" not in run_log.read_text() and proc.poll() is None:
                time.sleep(0.2)
            time.sleep(3)
            base = status(proc.pid, "VmRSS")
            print(f"idle after start: RSS {base / 2**20:.0f} MB (the baseline)")
            start = datetime.now(UTC) - timedelta(minutes=25)
            wall = time.perf_counter()
            for part in range(args.millions):
                million(log, part, args.lines_per_part, start, rng)
                want = (part + 1) * args.lines_per_part
                while stored(db) < want:
                    if proc.poll() is not None:
                        sys.exit(f"the daemon exited: {(Path(tmp) / 'run.log').read_text()[-2000:]}")
                    time.sleep(0.5)
                rss = status(proc.pid, "VmRSS")
                print(
                    f"after {want:,} lines: RSS {rss / 2**20:.0f} MB ({rss / base:.2f}x the baseline), "
                    f"{time.perf_counter() - wall:.0f} s, daemon CPU {cpu_seconds(proc.pid):.0f} s"
                )
            time.sleep(20)
            idle, peak = status(proc.pid, "VmRSS"), status(proc.pid, "VmHWM")
            print(
                f"idle 20 s later: RSS {idle / 2**20:.0f} MB ({idle / base:.2f}x); peak (VmHWM) {peak / 2**20:.0f} MB"
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    verdict = "met" if peak / 2**20 <= args.ceiling_mb else "MISSED"
    print(f"ceiling {args.ceiling_mb:.0f} MB peak RSS for {args.millions:,}M lines: {verdict}")
    if verdict != "met":
        sys.exit(1)


if __name__ == "__main__":
    main()
