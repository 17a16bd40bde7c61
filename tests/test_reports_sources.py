"""`monitor.reports.sources` and `monitor.detect.known`'s approval helpers, called directly (the CLI
around them is in test_sources_cmd.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.config import KnownSettings
from monitor.core.records import Request
from monitor.detect.known import ApprovalNotes, Status, canonical_network
from monitor.reports.sources import list_sources
from monitor.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_canonical_network() -> None:
    assert canonical_network("10.0.0.5") == "10.0.0.5"
    assert canonical_network(" 10.0.0.5/32 ") == "10.0.0.5"
    assert canonical_network("2001:db8::5/128") == "2001:db8::5"
    assert canonical_network("10.0.0.77/24") == "10.0.0.0/24"
    for bad in ("10.0.0.300", "example.com", "10.0.0.0/33", ""):
        with pytest.raises(ValueError):
            canonical_network(bad)


def test_the_most_specific_approval_with_a_note_names_an_address() -> None:
    notes = ApprovalNotes(
        [("10.0.0.0/8", "campus"), ("10.1.0.0/16", "lab"), ("10.1.2.0/24", None), ("2001:db8::/32", "v6 lab")]
    )
    assert notes.note("10.1.2.3") == "lab"  # the /24 has no note: the /16's wins over the /8's
    assert notes.note("10.2.0.1") == "campus"
    assert notes.note("2001:db8::1") == "v6 lab"
    assert notes.note("::ffff:10.1.2.3") is None  # an IPv6 address is never in an IPv4 network
    assert notes.note("192.0.2.1") is None
    assert notes.note("not an address") is None


def test_list_sources(tmp_path: Path) -> None:
    known = KnownSettings(allow=["10.0.0.0/8"], admins=["10.0.0.2"], names={"10.0.0.9": "laptop"})
    with Store.open(f"sqlite:///{tmp_path / 'monitor.db'}") as store:
        fid = store.file_id("ollama", "fp", "/var/log/ollama.log")
        ips = ["10.0.0.9", "10.0.0.2", "203.0.113.7", "203.0.113.7", "198.51.100.4"]
        reqs = [Request(T0 + timedelta(minutes=i), ip, "POST", "/api/chat", 200) for i, ip in enumerate(ips)]
        store.add_batch("ollama", fid, list(enumerate(reqs)))
        store.approve("198.51.100.0/24", "branch office")
        store.approve("192.0.2.0/24", "")
        rows = list_sources(store, known)
    assert [(r.client_ip, r.status, r.name, r.requests) for r in rows] == [
        ("203.0.113.7", Status.UNKNOWN, None, 2),  # unknown first, then the busiest
        ("10.0.0.2", Status.ADMIN, None, 1),
        ("10.0.0.9", Status.KNOWN, "laptop", 1),
        ("198.51.100.4", Status.APPROVED, "branch office", 1),  # named by its approval's note
        ("192.0.2.0/24", Status.APPROVED, None, 0),  # each approval is listed too, by its network
        ("198.51.100.0/24", Status.APPROVED, "branch office", 0),
    ]
    assert rows[0].to_dict() == {
        "client_ip": "203.0.113.7",
        "status": "unknown",
        "name": None,
        "requests": 2,
        "first_seen": "2026-03-02T09:02:00Z",
        "last_seen": "2026-03-02T09:03:00Z",
    }
