"""`ollama-monitor run` SIGKILLed again and again while a writer appends 200,000 nginx lines through
rename+create and copytruncate rotations: every line is stored exactly once."""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import isolated_env

TOTAL = 200_000
ROTATE_EVERY = 25_000
# Recent times: older lines would fall to the daemon's 90-day retention.
RECENT = datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S")
LINE = "203.0.113.{ip} - - [" + RECENT + ' +0000] "GET /p/{i} HTTP/1.1" 200 {size} "-" "bench/1.0"\n'


class Writer(threading.Thread):
    """Appends TOTAL unique lines in bursts, rotating by rename+create and copytruncate in turn."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.rotations = 0
        self.error: BaseException | None = None

    def _shift(self) -> None:
        existing = sorted(
            (p for p in self.path.parent.iterdir() if p.name.startswith("access.log.")),
            key=lambda p: int(p.name.rsplit(".", 1)[1]),
            reverse=True,
        )
        for p in existing:
            p.rename(self.path.with_name(f"access.log.{int(p.name.rsplit('.', 1)[1]) + 1}"))

    def run(self) -> None:
        try:
            fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - reopened on rotation
            for start in range(0, TOTAL, 500):
                fh.write(
                    "".join(LINE.format(ip=i % 250, i=i, size=i % 9000) for i in range(start, start + 500))
                )
                fh.flush()
                done = start + 500
                if done % ROTATE_EVERY == 0 and done < TOTAL:
                    self.rotations += 1
                    self._shift()
                    if self.rotations % 2:  # rename+create; the writer keeps appending to the old file a bit
                        os.rename(self.path, self.path.with_name("access.log.1"))
                        self.path.touch()
                        fh.write(LINE.format(ip=1, i=f"late-{done}", size=1))
                        fh.flush()
                        fh.close()
                        fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
                    else:  # copytruncate
                        shutil.copyfile(self.path, self.path.with_name("access.log.1"))
                        os.truncate(self.path, 0)
                time.sleep(0.07)
            fh.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def expected_paths(rotations: int) -> set[str]:
    paths = {f"/p/{i}" for i in range(TOTAL)}
    paths |= {f"/p/late-{(n + 1) * ROTATE_EVERY}" for n in range(0, rotations, 2)}
    return paths


def count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(db, timeout=5)
        try:
            return int(con.execute("SELECT count(*) FROM requests").fetchone()[0])
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
def test_sigkill_during_rotations_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    log_path = logs / "access.log"
    log_path.touch()
    db = tmp_path / "monitor.db"
    cfg = tmp_path / "monitor.toml"
    cfg.write_text(
        f'[database]\nurl = "sqlite:///{db}"\n[daemon]\npoll_seconds = 0.2\nbatch_lines = 5000\n'
        f'[[sources]]\nname = "nginx"\npath = "{log_path}"\nformat = "nginx"\nstart_at = "beginning"\n',
        encoding="utf-8",
    )
    env = isolated_env(tmp_path, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    stderr_log = tmp_path / "daemon.log"

    starts = 0

    def start() -> subprocess.Popen[bytes]:
        """Start the daemon and wait until it follows (Python start-up alone takes a second or two)."""
        nonlocal starts
        starts += 1
        with stderr_log.open("ab") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "monitor", "--config", str(cfg), "run"],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
                cwd=tmp_path,
            )
        until = time.monotonic() + 20
        while stderr_log.read_text(errors="replace").count("following 1 source") < starts:
            assert proc.poll() is None and time.monotonic() < until, stderr_log.read_text(errors="replace")
            time.sleep(0.02)
        return proc

    rng = random.Random(7)
    writer = Writer(log_path)
    proc = start()
    writer.start()
    kills = 0
    deadline = time.monotonic() + 80
    try:
        while writer.is_alive() and time.monotonic() < deadline:
            time.sleep(rng.uniform(0.05, 1.2))  # mid-batch, mid-rotation: anywhere
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            proc = start()
        writer.join(timeout=max(1.0, deadline - time.monotonic()))
        assert writer.error is None, writer.error
        assert not writer.is_alive(), "the writer did not finish in time"
        want = TOTAL + (writer.rotations + 1) // 2
        while count(db) < want and time.monotonic() < deadline:
            time.sleep(0.25)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    con = sqlite3.connect(db)
    paths = [row[0] for row in con.execute("SELECT path FROM requests")]
    con.close()
    assert kills >= 5
    assert writer.rotations == TOTAL // ROTATE_EVERY - 1
    assert len(paths) == want, f"stored {len(paths)} rows for {want} lines after {kills} kills"
    assert set(paths) == expected_paths(writer.rotations)
    assert "Traceback" not in stderr_log.read_text(errors="replace")
    print(f"{kills} SIGKILLs, {writer.rotations} rotations, {len(paths)} rows")
