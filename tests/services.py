"""Real services for tests (PostgreSQL, nginx, Chromium), started on loopback by the tests themselves.

`.ci/run` installs them with apt-get. Locally a missing service skips its tests; with CI=true set it
fails them, so CI can never pass by skipping.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")


def require(what: str, found: object) -> None:
    """Skip (locally) or fail (CI=true) when a service's binary is missing."""
    if found:
        return
    message = f"{what} is not installed (.ci/run installs it with apt-get)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def wait_until(condition: Callable[[], T], timeout: float, what: str, every: float = 0.05) -> T:
    """Poll `condition` until it returns something truthy (returned) or `timeout` seconds pass (an
    AssertionError naming `what`): tests wait on an observable state, never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not after {timeout:.0f}s: {what}")
        time.sleep(every)


def wait_heartbeat(db: Path, timeout: float = 30.0) -> None:
    """Wait until a daemon on the SQLite database `db` wrote its first heartbeat (it follows and ticks)."""
    import sqlite3

    def beating() -> bool:
        if not db.exists():
            return False
        try:
            with sqlite3.connect(db) as conn:
                return (
                    conn.execute("SELECT 1 FROM meta WHERE key = 'daemon.heartbeat'").fetchone() is not None
                )
        except sqlite3.Error:
            return False

    wait_until(beating, timeout, "the daemon's first heartbeat", every=0.2)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_port(host: str, port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return Path(found[-1]).parent if found else None


@contextmanager
def postgres() -> Iterator[str]:
    """Start a throwaway PostgreSQL cluster on 127.0.0.1; yield its SQLAlchemy URL."""
    bindir = _postgres_bin()
    require("PostgreSQL server (apt-get install postgresql)", bindir)
    assert bindir is not None
    root = Path(tempfile.mkdtemp(prefix="om-pg-"))
    root.chmod(0o777)
    data = root / "data"
    port = free_port()
    as_user: dict[str, object] = {}
    if os.geteuid() == 0:  # postgres refuses to run as root
        import pwd

        pw = pwd.getpwnam("postgres")
        as_user = {"user": pw.pw_uid, "group": pw.pw_gid}
    subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
        **as_user,
    )  # type: ignore[call-overload]
    proc = subprocess.Popen(
        [
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-k",
            str(root),
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **as_user,  # type: ignore[call-overload]
    )

    def accepts_queries() -> bool:  # listening is not yet ready: it may still be starting up
        ready = subprocess.run(
            [str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"],
            check=False,
        )
        return ready.returncode == 0

    try:
        wait_port("127.0.0.1", port)
        wait_until(accepts_queries, 30, f"PostgreSQL on 127.0.0.1:{port} accepts connections", every=0.1)
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(root, ignore_errors=True)


def nginx_binary() -> str | None:
    return shutil.which("nginx") or (os.path.exists("/usr/sbin/nginx") and "/usr/sbin/nginx") or None


def chromium_binary() -> str | None:
    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
    return next((path for path in map(shutil.which, names) if path), None)
