"""`ollama-monitor sources list | approve | revoke`, run as a real CLI against a real SQLite file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.core.records import Request
from monitor.store import Store
from tests.conftest import CliRunner, assert_no_traceback, write_config

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    db = tmp_path / "monitor.db"
    cfg = write_config(
        tmp_path / "monitor.toml",
        db,
        '[known]\nallow = ["10.0.0.0/8"]\nadmins = ["10.0.0.2"]\nnames = {"10.0.0.9" = "laptop"}\n',
    )
    store = Store.open(f"sqlite:///{db}")
    fid = store.file_id("ollama", "fp", "/var/log/ollama.log")
    reqs = [
        Request(T0 + timedelta(minutes=i), ip, "POST", "/api/chat", 200)
        for i, ip in enumerate(
            ["10.0.0.9", "10.0.0.9", "10.0.0.2", "203.0.113.7", "203.0.113.7", "203.0.113.7", "2001:db8::5"]
        )
    ]
    store.add_batch("ollama", fid, list(enumerate(reqs)))
    store.close()
    return cfg


def listed(cli: CliRunner, config: Path) -> dict[str, dict[str, object]]:
    proc = cli("--config", str(config), "sources", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    return {row["client_ip"]: row for row in json.loads(proc.stdout)["sources"]}


def test_list_shows_every_source_with_status_counts_and_times(cli: CliRunner, config: Path) -> None:
    rows = listed(cli, config)
    assert set(rows) == {"10.0.0.9", "10.0.0.2", "203.0.113.7", "2001:db8::5"}
    assert rows["10.0.0.9"]["status"] == "known" and rows["10.0.0.9"]["name"] == "laptop"
    assert rows["10.0.0.2"]["status"] == "admin"
    assert rows["203.0.113.7"]["status"] == "unknown" and rows["203.0.113.7"]["requests"] == 3
    assert rows["203.0.113.7"]["first_seen"] == "2026-03-02T09:03:00Z"
    assert rows["203.0.113.7"]["last_seen"] == "2026-03-02T09:05:00Z"
    table = cli("--config", str(config), "sources", "list")
    assert table.returncode == 0 and "203.0.113.7" in table.stdout and "unknown source(s)" in table.stdout


def test_approve_and_revoke(cli: CliRunner, config: Path) -> None:
    ok = cli("--config", str(config), "sources", "approve", "203.0.113.0/24", "--note", "branch office")
    assert ok.returncode == 0 and "approved 203.0.113.0/24" in ok.stdout
    single = cli("--config", str(config), "sources", "approve", "2001:db8::5/128")
    assert "approved 2001:db8::5" in single.stdout  # a single address is stored as an address
    rows = listed(cli, config)
    assert rows["203.0.113.7"]["status"] == "approved" and rows["2001:db8::5"]["status"] == "approved"
    again = cli("--config", str(config), "sources", "approve", "203.0.113.0/24")
    assert again.returncode == 0 and "already approved" in again.stdout
    gone = cli("--config", str(config), "sources", "revoke", "203.0.113.0/24")
    assert gone.returncode == 0 and "revoked" in gone.stdout
    assert listed(cli, config)["203.0.113.7"]["status"] == "unknown"
    missing = cli("--config", str(config), "sources", "revoke", "198.51.100.1")
    assert missing.returncode == 1 and "is not approved" in missing.stderr
    assert_no_traceback(missing)


@pytest.mark.parametrize("bad", ["10.0.0.300", "example.com", "10.0.0.0/33", "", "1.2.3.4; rm -rf /"])
def test_invalid_addresses_get_a_clear_error(cli: CliRunner, config: Path, bad: str) -> None:
    proc = cli("--config", str(config), "sources", "approve", bad)
    assert proc.returncode == 2
    assert "not an IP address or CIDR network" in proc.stderr and "hint:" in proc.stderr
    assert_no_traceback(proc)


def test_json_output_escapes_controls_and_bidi_in_stored_text(cli: CliRunner, config: Path) -> None:
    """A note (or any stored text) with a C1 control (0x9b is CSI to some terminals) or a bidi override
    reaches `--json` output as a \\u escape, never raw, and still parses back to the same text."""
    note = "ops\u009b31m \u202eevil"
    ok = cli("--config", str(config), "sources", "approve", "203.0.113.0/24", "--note", note)
    assert ok.returncode == 0, ok.stderr
    proc = cli("--config", str(config), "sources", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "\u009b" not in proc.stdout and "\u202e" not in proc.stdout
    assert "\\u009b" in proc.stdout and "\\u202e" in proc.stdout
    rows = {row["client_ip"]: row for row in json.loads(proc.stdout)["sources"]}
    assert rows["203.0.113.7"]["name"] == note  # an approval note names the source
