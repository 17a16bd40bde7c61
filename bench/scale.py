"""Benchmark: the store at real scale. Every command a user runs, timed on a large SQLite store.

Builds ten weekly nginx `combined` files (deterministic for a given --end day: ~2,000 clients, some
IPv6, the generator of bench/ingest.py), ingests them with `ollama-monitor ingest`, then times each
command in a fresh process, with wall time, CPU seconds (user + system) and peak RSS of that process
(from `os.wait4`), beside a floor measured in the same run: the bare `sqlite3` shell answering the
same question with one aggregate over the stored rows (the base table and integer time where the
schema has them, i.e. the fastest a plain query can do). Then `run`'s RSS once idle, and the
database's bytes per stored request.

    .venv/bin/python bench/scale.py [--rows 10000000] [--end 2026-12-01] [--keep DIR]

--rows 1000000 is a quicker run while developing. The data ends at midnight UTC of --end (default:
today), so `audit --days 7` and `summary --days 7` look at the newest week, as they would on a live host.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import generate  # noqa: E402

WEEKS = 10
ROOT = Path(__file__).resolve().parent.parent


def measure(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float, int]:
    """Run argv to completion; return (wall s, CPU s, peak RSS MB, exit status)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode not in (0, 1, 2, 3):  # status exits 3 (daemon not running), audit 2 (findings)
        print(f"  ! {' '.join(argv[-3:])} exited {proc.returncode}: {err.strip()[-300:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode


def has_table(db: Path, name: str) -> bool:
    out = subprocess.run(
        ["sqlite3", str(db), f"SELECT count(*) FROM sqlite_master WHERE name = '{name}' AND type = 'table'"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.strip() == "1"


def floors(compact: bool, now: datetime) -> dict[str, str]:
    """The bare SQL answering each command's question (on the base table when the schema is compact)."""
    week = now - timedelta(days=7)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    hour = now - timedelta(hours=3)
    if compact:
        us = lambda t: int(t.timestamp() * 1_000_000)  # noqa: E731
        r = "request_rows"
        return {
            "sources list": f"SELECT client_id, count(*), min(ts), max(ts) FROM {r} GROUP BY client_id",
            "status": f"SELECT source_id, count(*) FROM {r} WHERE ts >= {us(day)} GROUP BY source_id; "
            f"SELECT count(*) FROM {r}",
            "audit --days 7": f"SELECT client_id, count(*), sum(status BETWEEN 200 AND 299), min(ts), max(ts) "
            f"FROM {r} WHERE ts >= {us(week)} GROUP BY client_id",
            "summary --days 7": f"SELECT client_id, endpoint_id, count(*), sum(status >= 400), sum(bytes_sent) "
            f"FROM {r} WHERE ts >= {us(week)} AND ts < {us(now)} GROUP BY 1, 2",
            "train": f"SELECT client_id, ts / 3600000000, count(*) FROM {r} WHERE ts >= {us(now - timedelta(days=14))} "
            "GROUP BY 1, 2",
            "score --count 3": f"SELECT client_id, count(*) FROM {r} WHERE ts >= {us(hour)} GROUP BY 1",
        }
    text = lambda t: t.strftime("%Y-%m-%d %H:%M:%S.000000")  # noqa: E731
    return {
        "sources list": "SELECT client_ip, count(*), min(ts), max(ts) FROM requests GROUP BY client_ip",
        "status": f"SELECT source, count(*) FROM requests WHERE ts >= '{text(day)}' GROUP BY source; "
        "SELECT count(*) FROM requests",
        "audit --days 7": "SELECT client_ip, count(*), sum(status BETWEEN 200 AND 299), min(ts), max(ts) "
        f"FROM requests WHERE ts >= '{text(week)}' GROUP BY client_ip",
        "summary --days 7": "SELECT client_ip, method, path, count(*), sum(status >= 400), sum(bytes_sent) "
        f"FROM requests WHERE ts >= '{text(week)}' AND ts < '{text(now)}' GROUP BY 1, 2, 3",
        "train": f"SELECT client_ip, substr(ts, 1, 13), count(*) FROM requests WHERE ts >= '{text(now - timedelta(days=14))}' "
        "GROUP BY 1, 2",
        "score --count 3": f"SELECT client_ip, count(*) FROM requests WHERE ts >= '{text(hour)}' GROUP BY 1",
    }


def idle_rss(cmd: list[str], env: dict[str, str], settle: float = 20.0) -> tuple[float, float]:
    """Start `run` (its source already ingested); return (RSS MB, peak RSS MB) after `settle` s."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    try:
        time.sleep(settle)
        fields = {}
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--end", type=date.fromisoformat, default=datetime.now(UTC).date())
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command (median shown)")
    parser.add_argument(
        "--keep", type=Path, help="work in this directory and keep it (reused if it holds a database)"
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter with ollama-monitor installed")
    parser.add_argument("--skip", default="", help="commands not to time, comma-separated (e.g. train,score)")
    args = parser.parse_args()

    workdir = args.keep or Path(tempfile.mkdtemp(prefix="om-bench-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "monitor.db"
    end = datetime.combine(args.end, dtime(0), tzinfo=UTC)
    logs = [workdir / f"access-week{w}.log" for w in range(WEEKS)]
    cfg = workdir / "monitor.toml"
    cfg.write_text(
        f'[database]\nurl = "sqlite:///{db}"\n\n[detector]\nmodel_dir = "{workdir / "models"}"\n\n'
        f'[known]\nallow = ["10.0.0.0/8", "2001:db8::/32"]\n\n'  # the generator's clients: windows train
        f'[[sources]]\nname = "nginx"\nformat = "nginx"\npath = "{logs[-1]}"\n'
    )
    om = [args.python, "-m", "monitor", "--config", str(cfg)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    print(
        f"workdir {workdir}; {args.rows:,} rows ending {end:%Y-%m-%d}; load average {os.getloadavg()[0]:.1f}"
    )
    try:
        if not db.exists():
            t0 = time.perf_counter()
            per = args.rows // WEEKS
            for w, log in enumerate(logs):
                generate(log, per, seed=100 + w, start=end - timedelta(days=7 * (WEEKS - w)))
            raw = sum(p.stat().st_size for p in logs)
            print(f"generated {per * WEEKS:,} lines, {raw / 1e6:,.0f} MB, in {time.perf_counter() - t0:.0f}s")
            wall, cpu, rss, _ = measure([*om, "ingest", "--format", "nginx", *map(str, logs)], env)
            print(
                f"ingest of all weeks: {wall:7.1f}s wall {cpu:7.1f}s CPU {rss:6.0f} MB  "
                f"{per * WEEKS / wall:,.0f} lines/s"
            )
        else:
            raw = sum(p.stat().st_size for p in logs if p.exists())
        stored = int(
            subprocess.run(
                ["sqlite3", str(db), "SELECT count(*) FROM requests"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        subprocess.run(
            ["sqlite3", str(db), "PRAGMA wal_checkpoint(TRUNCATE)"], capture_output=True, check=True
        )
        size = db.stat().st_size + (os.path.getsize(f"{db}-wal") if os.path.exists(f"{db}-wal") else 0)
        print(
            f"database {size / 1e6:,.0f} MB for {stored:,} requests: {size / stored:.1f} bytes per request "
            f"({size / raw:.2f}x the raw log)"
            if raw
            else f"database {size / stored:.1f} bytes per request"
        )

        compact = has_table(db, "request_rows")
        now = datetime.now(UTC)
        # --end in the past: look at the data's last week anyway (summary takes --since, audit does not).
        summary_since = (min(now, end) - timedelta(days=7)).date().isoformat()
        commands = {
            "sources list": ["sources", "list", "--json"],
            "status": ["status", "--json"],
            "audit --days 7": ["audit", "--days", "7", "--json"],
            "summary --days 7": ["summary", "--days", "7", "--since", summary_since],
            "train --rebuild-windows": ["train", "--rebuild-windows"],
            "train": ["train"],
            "score --count 3": ["score", "--count", "3"],
        }
        sql = floors(compact, min(now, end))
        skip = {s.strip() for s in args.skip.split(",") if s.strip()}
        print(
            f"{'command':18} {'wall s':>8} {'CPU s':>8} {'RSS MB':>8} | {'floor s':>8} {'CPU s':>8} "
            f"{'wall/floor':>10} {'CPU/floor':>10}"
        )
        for name, argv in commands.items():
            if name.split()[0] in skip:
                continue
            runs = [measure([*om, *argv], env) for _ in range(1 if name.startswith("train") else args.repeat)]
            wall = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            rss = max(r[2] for r in runs)
            floors_run = [
                measure(["sqlite3", str(db), sql.get(name) or sql[name.split(" --")[0]]])
                for _ in range(args.repeat)
            ]
            f_wall = statistics.median(r[0] for r in floors_run)
            f_cpu = max(statistics.median(r[1] for r in floors_run), 0.01)
            print(
                f"{name:18} {wall:8.2f} {cpu:8.2f} {rss:8.0f} | {f_wall:8.2f} {f_cpu:8.2f} "
                f"{wall / f_wall:9.1f}x {cpu / f_cpu:9.1f}x"
            )
        if "run" not in skip:
            rss_now, peak = idle_rss([*om, "run"], env)
            print(f"run, idle after 20 s: RSS {rss_now:.0f} MB (peak {peak:.0f} MB)")
        print(
            f"load average at the end {os.getloadavg()[0]:.1f} (a shared machine: compare CPU seconds and ratios)"
        )
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
