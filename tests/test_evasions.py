"""Lines shaped to hide their sender (issue 16): each one, from an unknown address, must raise
unknown-source through `replay` (in process, real SQLite) and through `run` (the real daemon in a
subprocess, alerts to a real local webhook receiver).

- an nginx `escape=json` line holding a raw byte >= 0x80 that is not UTF-8 (nginx writes them unescaped);
- a combined line holding raw non-UTF-8 bytes;
- a Gin record behind a prefix no wrapper knows (a CLI spinner);
- a Gin record with an empty client column (reported as "unknown client").
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.config import Settings
from monitor.detect.replay import run_replay
from tests.conftest import isolated_env
from tests.receivers import HttpReceiver
from tests.services import wait_heartbeat


def _lines(now: datetime) -> dict[str, tuple[str, bytes]]:
    """name -> (the client the alert must name, the raw line)."""
    iso = now.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    clf = now.strftime("%d/%b/%Y:%H:%M:%S +0000")
    gin = now.strftime("%Y/%m/%d - %H:%M:%S")
    return {
        "json-invalid-utf8": (
            "203.0.113.61",
            b'{"time_iso8601":"' + iso.encode() + b'","remote_addr":"203.0.113.61",'
            b'"request":"POST /api/chat HTTP/1.1","status":"200","body_bytes_sent":"5",'
            b'"request_time":"0.100","http_user_agent":"python-requests/2.31 \xff",'
            b'"http_x_forwarded_for":""}',
        ),
        "combined-raw-bytes": (
            "203.0.113.62",
            b"203.0.113.62 - - [" + clf.encode() + b'] "GET /api/tags\xc3\x28 HTTP/1.1" 200 5 "-" '
            b'"python-requests/2.31 \xff\xfe"',
        ),
        "gin-unknown-prefix": (
            "203.0.113.63",
            "\u280b >>> [GIN] ".encode()
            + gin.encode()
            + b' | 200 |    1.204ms |    203.0.113.63 | POST     "/api/chat"',
        ),
        "gin-empty-client": (
            "",
            b"[GIN] " + gin.encode() + b' | 200 |    1.204ms |                 | POST     "/api/pull"',
        ),
    }


NAMES = sorted(_lines(datetime.now(UTC)))


def _named(text: str, ip: str) -> bool:
    return ip in text if ip else "unknown client" in text


@pytest.mark.parametrize("name", NAMES)
def test_evasion_raises_unknown_source_in_replay(tmp_path: Path, name: str) -> None:
    ip, line = _lines(datetime(2025, 3, 21, 8, 52, 32, tzinfo=UTC))[name]
    log = tmp_path / "access.log"
    log.write_bytes(line + b"\n")
    settings = Settings.model_validate({"known": {"allow": ["127.0.0.0/8"]}})
    notes, summary = run_replay(
        settings, [log], fmt=None, db_url=f"sqlite:///{tmp_path}/replay.db", model_dir=tmp_path / "models"
    )
    assert summary["requests"] == 1, summary
    hits = [n for n in notes if n.rule == "unknown-source" and ip in n.client_ips]
    assert hits, [(n.rule, n.client_ips, n.title) for n in notes]
    assert _named(hits[0].title + hits[0].message, ip)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_evasion_raises_unknown_source_in_run(tmp_path: Path, name: str) -> None:
    ip, line = _lines(datetime.now(UTC))[name]
    log = tmp_path / "access.log"
    log.write_bytes(b"")
    db = tmp_path / "monitor.db"
    with HttpReceiver() as hook:
        config = tmp_path / "monitor.toml"
        config.write_text(f"""
[database]
url = "sqlite:///{db}"

[daemon]
poll_seconds = 0.2

[[sources]]
name = "mixed"
path = "{log}"
format = "auto"
start_at = "beginning"

[known]
allow = ["127.0.0.0/8"]

[detector]
model_dir = "{tmp_path / "models"}"

[alerts]
urls = ["{hook.apprise_url()}"]
min_severity = "info"
""")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "monitor", "--config", str(config), "run"],
            env=isolated_env(tmp_path),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_heartbeat(db)
            with log.open("ab") as fh:
                fh.write(line + b"\n")
            got = hook.wait_for(1, timeout=30)
            text = json.dumps([r.json for r in got])
            assert "nknown source" in text and _named(text, ip), text
        finally:
            daemon.send_signal(signal.SIGTERM)
            _out, err = daemon.communicate(timeout=15)
        assert "Traceback" not in err, err
