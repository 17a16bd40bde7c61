"""Benchmark: `ollama-monitor ingest` end to end vs a naive baseline, measured in the same run.

Generates an nginx `combined` log of Ollama-like traffic (about 2,000 clients, some IPv6), then times
1. the real CLI, `python -m monitor --config CFG ingest LOG` in a fresh process (import, parse, store,
   checkpoint; the database starts empty), and
2. the baseline: one compiled regex plus `sqlite3.executemany` in 10k-row transactions into an
   equivalent table with the same indexes (no timestamps converted, no validation, no idempotency).

    .venv/bin/python bench/ingest.py [--lines 1000000] [--runs 3] [--compare-tree DIR] [--keep]

With `--runs N` the ingest and GoAccess runs alternate N times and the medians are printed (the
machine may be shared: compare same-run ratios and CPU seconds). `--compare-tree DIR` also times the
`ingest` of another checkout's `monitor` package in each round (e.g. the previous commit, exported
with `git archive HEAD~1 monitor | tar -x -C DIR`), for before/after figures from one run.

Prints lines/s for both and the ratio (target: >= 150,000 lines/s and >= 0.6x the baseline), GoAccess
on the same file in the same run (`goaccess FILE --log-format=COMBINED -o report.json`, installed with
apt-get when missing and run as root) with the ratio of wall times (target: ingest <= 1.0x GoAccess), then the
floor no single-writer ingest can beat on this machine: SQLite alone copying the stored rows into an
empty table with the same indexes (INSERT ... SELECT, no Python per row).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median

PATHS = [
    ("POST", "/api/chat", 200),
    ("POST", "/api/generate", 200),
    ("POST", "/v1/chat/completions", 200),
    ("POST", "/api/embed", 200),
    ("GET", "/api/tags", 200),
    ("GET", "/", 200),
    ("GET", "/api/version", 200),
    ("POST", "/api/show", 200),
    ("GET", "/api/ps", 200),
    ("POST", "/api/pull", 200),
    ("GET", "/v1/models", 200),
    ("GET", "/.env", 404),
    ("POST", "/api/chat", 500),
    ("GET", "/api/tags?x=1", 401),
]
AGENTS = [
    "python-requests/2.32.3",
    "ollama-python/0.4.7",
    "OpenAI/Python 1.54.0",
    "curl/8.5.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36",
    "Go-http-client/1.1",
    "-",
]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def generate(path: Path, n: int, seed: int = 1, start: datetime | None = None) -> None:
    """Write `n` lines spread evenly over the 7 days from `start`. The ~2,000 clients are the same for
    every seed (so weekly files share their sources); `seed` draws the traffic."""
    pick = random.Random(1)
    clients = [str(ipaddress.IPv4Address(0x0A000000 + pick.randrange(1 << 20))) for _ in range(1800)]
    clients += [str(ipaddress.IPv6Address((0x20010DB8 << 96) + pick.randrange(1 << 64))) for _ in range(200)]
    rng = random.Random(seed) if seed != 1 else pick
    weights = [1.0 / (i + 1) for i in range(len(clients))]
    start = start or datetime(2025, 3, 1, tzinfo=UTC)
    step = timedelta(days=7) / n
    chosen = rng.choices(clients, weights=weights, k=n)
    with path.open("w", encoding="utf-8") as fh:
        ts = start
        for i in range(n):
            method, route, status = PATHS[rng.randrange(len(PATHS))]
            t = (
                ts.strftime(f"%d/{MONTHS[ts.month - 1]}/%Y:%H:%M:%S +0000")
                if i % 50 == 0 or i == 0
                else stamp_cache(ts)
            )
            fh.write(
                f'{chosen[i]} - - [{t}] "{method} {route} HTTP/1.1" {status} {rng.randrange(20, 90000)} '
                f'"-" "{AGENTS[i % len(AGENTS)]}"\n'
            )
            ts += step


_cache: dict[int, str] = {}


def stamp_cache(ts: datetime) -> str:
    key = int(ts.timestamp())
    if key not in _cache:
        if len(_cache) > 4:
            _cache.clear()
        _cache[key] = ts.strftime(f"%d/{MONTHS[ts.month - 1]}/%Y:%H:%M:%S +0000")
    return _cache[key]


BASELINE_RE = re.compile(r'(\S+) \S+ \S+ \[([^\]]+)\] "(\S+) (\S+) [^"]*" (\d{3}) (\d+|-) "[^"]*" "([^"]*)"')


def baseline(log: Path, db: Path) -> int:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE requests (id INTEGER PRIMARY KEY, ts TEXT, client_ip TEXT, method TEXT, path TEXT, "
        "status INTEGER, bytes_sent INTEGER, user_agent TEXT, line_offset INTEGER)"
    )
    conn.execute("CREATE INDEX ix_ip_ts ON requests (client_ip, ts)")
    conn.execute("CREATE INDEX ix_ts ON requests (ts)")
    conn.execute("CREATE UNIQUE INDEX uq_line ON requests (line_offset)")
    match = BASELINE_RE.match
    rows = []
    count = 0
    offset = 0
    with log.open("rb") as fh:
        for raw in fh:
            m = match(raw.decode())
            if m:
                rows.append((m[2], m[1], m[3], m[4], int(m[5]), m[6], m[7], offset))
            offset += len(raw)
            if len(rows) >= 10_000:
                with conn:
                    conn.executemany("INSERT INTO requests VALUES (NULL,?,?,?,?,?,?,?,?)", rows)
                count += len(rows)
                rows = []
    with conn:
        conn.executemany("INSERT INTO requests VALUES (NULL,?,?,?,?,?,?,?,?)", rows)
    count += len(rows)
    conn.close()
    return count


def run_ingest(log: Path, workdir: Path, tree: Path | None = None) -> tuple[float, float, float, int]:
    """Time `ingest` into a new database: (wall s, CPU s of it and its parse worker, peak RSS MB of the
    larger process, rows stored). `tree`: run the `monitor` package found there instead."""
    db = workdir / "monitor.db"
    for old in workdir.glob("monitor.db*"):
        old.unlink()
    cfg = workdir / "monitor.toml"
    cfg.write_text(f'[database]\nurl = "sqlite:///{db}"\n')
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(cfg), "ingest", "--format", "nginx", str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=tree,  # `python -m` looks in the working directory first
    )
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"ingest failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    with sqlite3.connect(db) as conn:
        stored = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, stored


def sqlite_floor(db: Path, workdir: Path) -> float:
    """Time SQLite alone storing the rows `ingest` stored: INSERT ... SELECT into an empty table with the
    same columns and indexes in a fresh database, same PRAGMAs, no Python per row. No ingest can store
    faster than this with one writer."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA cache_size=-65536")
    conn.execute(f"ATTACH '{workdir / 'floor.db'}' AS floor")
    conn.execute("PRAGMA floor.journal_mode=WAL")
    conn.execute("PRAGMA floor.synchronous=NORMAL")
    # The compact store (schema 2) keeps its rows in request_rows (`requests` is a view over it).
    table = (
        "request_rows"
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'request_rows'").fetchone()
        else "requests"
    )
    ddl = [
        r[0]
        for r in conn.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL", (table,)
        )
    ]
    for statement in ddl:  # CREATE TABLE requests ... / CREATE INDEX ix_... ON requests ...
        conn.execute(
            statement.replace("CREATE TABLE ", "CREATE TABLE floor.", 1).replace(
                "CREATE INDEX ", "CREATE INDEX floor.", 1
            )
        )
    conn.commit()
    start = time.perf_counter()
    with conn:
        conn.execute(f"INSERT INTO floor.{table} SELECT * FROM main.{table} ORDER BY id")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def run_goaccess(log: Path, workdir: Path) -> tuple[float, float, float] | None:
    """Time GoAccess parsing the same file into a JSON report: (wall s, CPU s, peak RSS MB), or None
    when it is not installed and cannot be (apt-get install goaccess, as root)."""
    if shutil.which("goaccess") is None and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "goaccess"], capture_output=True, check=False)
    if shutil.which("goaccess") is None:
        return None
    start = time.perf_counter()
    proc = subprocess.Popen(
        ["goaccess", str(log), "--log-format=COMBINED", "-o", str(workdir / "report.json")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    _, _, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the generated log and databases")
    parser.add_argument("--runs", type=int, default=1, help="alternate ingest and GoAccess this many times")
    parser.add_argument(
        "--compare-tree", type=Path, help="also time the monitor package of this checkout, in each round"
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="om-bench-ingest-"))
    try:
        log = workdir / "access.log"
        t0 = time.perf_counter()
        generate(log, args.lines)
        size = log.stat().st_size
        print(
            f"generated {args.lines:,} lines ({size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f}s: {log}"
        )

        t0 = time.perf_counter()
        base_rows = baseline(log, workdir / "baseline.db")
        base_s = time.perf_counter() - t0
        runs: list[tuple[float, float, float, int]] = []
        before: list[tuple[float, float, float, int]] = []
        goaccess: list[tuple[float, float, float]] = []
        for _ in range(args.runs):
            if args.compare_tree:
                before.append(run_ingest(log, workdir, args.compare_tree))
            runs.append(run_ingest(log, workdir))
            g = run_goaccess(log, workdir)
            if g is not None:
                goaccess.append(g)
        ingest_s, ingest_cpu, ingest_rss = (median([r[i] for r in runs]) for i in range(3))
        stored = runs[-1][3]

        base_rate = args.lines / base_s
        ingest_rate = args.lines / ingest_s
        print(
            f"load average at the end: {os.getloadavg()[0]:.1f} (2 cores: >2 means a shared, loaded machine)"
        )
        print(f"medians of {args.runs} run(s), ingest and GoAccess alternating")
        print(
            f"baseline (regex + sqlite3.executemany, indexed): {base_s:6.2f}s  {base_rate:10,.0f} lines/s  ({base_rows:,} rows)"
        )
        print(
            f"ollama-monitor ingest (end to end, new process):  {ingest_s:6.2f}s  {ingest_rate:10,.0f} lines/s  ({stored:,} rows)"
        )
        print(f"  ingest CPU {ingest_cpu:.1f}s, peak RSS {ingest_rss:.0f} MB")
        print(
            "  each run (wall s, CPU s, RSS MB): "
            + ", ".join(f"{w:.1f}/{c:.1f}/{m:.0f}" for w, c, m, _ in runs)
        )
        if before:
            b_wall, b_cpu, b_rss = (median([r[i] for r in before]) for i in range(3))
            print(f"ingest of {args.compare_tree}: {b_wall:6.2f}s  CPU {b_cpu:.1f}s, peak RSS {b_rss:.0f} MB")
            print(
                "  each run (wall s, CPU s, RSS MB): "
                + ", ".join(f"{w:.1f}/{c:.1f}/{m:.0f}" for w, c, m, _ in before)
            )
        print(
            f"ratio ingest/baseline: {ingest_rate / base_rate:.2f}x   (targets: >= 150,000 lines/s, >= 0.6x)"
        )
        if not goaccess:
            print("goaccess: not installed (apt-get install goaccess)")
        else:
            g_wall, g_cpu, g_rss = (median([g[i] for g in goaccess]) for i in range(3))
            print(
                f"goaccess --log-format=COMBINED -o report.json: {g_wall:6.2f}s  {args.lines / g_wall:10,.0f} lines/s  "
                f"CPU {g_cpu:.1f}s, peak RSS {g_rss:.0f} MB"
            )
            print("  each run (wall s): " + ", ".join(f"{g[0]:.1f}" for g in goaccess))
            print(f"ingest wall time / GoAccess wall time: {ingest_s / g_wall:.2f}x   (target: <= 1.0x)")
            if before:
                print(f"{args.compare_tree} wall time / GoAccess wall time: {b_wall / g_wall:.2f}x")
        floor_s = sqlite_floor(workdir / "monitor.db", workdir)
        print(
            f"SQLite alone (INSERT ... SELECT of the same rows, same indexes, no Python): {floor_s:6.2f}s  "
            f"{stored / floor_s:10,.0f} rows/s"
        )
        if stored != args.lines:
            sys.exit(f"stored {stored:,} rows, expected {args.lines:,}")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
