"""journald sources, against a stand-in `journalctl` (tests/fixtures/journal/journalctl.py) that prints
real-shaped `-o json` records from a fixture file and keeps following it."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from monitor.config import SourceSettings
from monitor.sources.base import commit, load_start
from monitor.sources.journald import JournalFollower, message_text, record_offset
from monitor.store import Store

FIXTURES = Path(__file__).parent / "fixtures" / "journal"
SID = "1b5d1a6b9c3a4e5f8a2d7c6b5e4f3a2b"


@pytest.fixture
def journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, str]:
    """A copy of the fixture journal, an argument log, and a `journalctl` launcher for the stand-in."""
    records = tmp_path / "journal.jsonl"
    records.write_bytes((FIXTURES / "ollama.jsonl").read_bytes())
    args_log = tmp_path / "args.log"
    launcher = tmp_path / "bin" / "journalctl"
    launcher.parent.mkdir()
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FIXTURES / "journalctl.py"}" "$@"\n')
    launcher.chmod(0o755)
    monkeypatch.setenv("JOURNAL_FIXTURE", str(records))
    monkeypatch.setenv("JOURNAL_ARGS_LOG", str(args_log))
    return records, args_log, str(launcher)


def gin_record(seq: int, path: str, ip: str = "198.51.100.4") -> str:
    """A new record shaped like the fixture's (the stand-in only needs cursor, unit and MESSAGE)."""
    rt = 1742547101123456 + seq
    message = f'[GIN] 2025/03/21 - 08:51:{seq % 60:02d} | 200 |     512.3µs | {ip:>15} | GET      "{path}"'
    return (
        json.dumps(
            {
                "__CURSOR": f"s={SID};i={0x3000 + seq:x};b=0d3f;m=1;t={rt:x};x=1",
                "__REALTIME_TIMESTAMP": str(rt),
                "_SYSTEMD_UNIT": "ollama.service",
                "_TRANSPORT": "stdout",
                "SYSLOG_IDENTIFIER": "ollama",
                "MESSAGE": message,
            },
            ensure_ascii=False,
        )
        + "\n"
    )


def follow_until(follower: JournalFollower, store: Store, count: int, timeout: float = 15) -> None:
    """Read and commit until the checkpoint says `count` records were consumed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for batch in follower.read(1000):
            commit(store, batch)
        saved = store.checkpoint(follower.name, follower.fp)
        if saved is not None and saved.position >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"journal follower did not reach {count} records")


def stored(db: Path) -> list[tuple[int, str, str]]:
    con = sqlite3.connect(db)
    try:
        return con.execute(
            "SELECT line_offset, client_ip, path FROM requests ORDER BY line_offset"
        ).fetchall()
    finally:
        con.close()


def invocations(args_log: Path) -> list[list[str]]:
    return [json.loads(line) for line in args_log.read_text().splitlines()]


def test_message_forms_and_offsets() -> None:
    assert message_text("plain") == "plain"
    assert message_text(list(b"caf\xc3\xa9 \xff")) == "café \\xff"
    assert message_text(None) is None
    assert message_text(["first", "second"]) == "first"
    assert record_offset({"__CURSOR": "s=ab;i=2c41;b=cd"}) == 0x2C41
    assert record_offset({"__SEQNUM": "77", "__CURSOR": "s=ab;i=2c41"}) == 77
    assert record_offset({"__REALTIME_TIMESTAMP": "1742547001123456"}) == 1742547001123456
    assert record_offset({}) is None


def test_follow_resume_from_cursor_and_byte_messages(tmp_path: Path, journal: tuple[Path, Path, str]) -> None:
    records, args_log, journalctl = journal
    db = tmp_path / "db.sqlite"
    store = Store.open(f"sqlite:///{db}")
    source = SourceSettings(
        name="ollama", journal_unit="ollama.service", format="ollama", start_at="beginning"
    )

    follower = JournalFollower(source, store, journalctl=journalctl)
    follow_until(follower, store, 6)  # 6 of the 7 fixture records are ollama.service (one is sshd)
    rows = stored(db)
    assert [r[2] for r in rows] == ["/api/tags", "/api/chat", "/api/\\xff\\xfe", "/api/pull"]
    assert [r[0] for r in rows] == [0x2C41, 0x2C43, 0x2C45, 0x2C46]  # the journal's seqnums
    saved = store.checkpoint("ollama", "journal:ollama.service")
    assert saved is not None and saved.cursor is not None and ";i=2c46;" in saved.cursor
    skipped = sqlite3.connect(db).execute("SELECT skipped FROM checkpoints").fetchone()[0]
    assert skipped == 2  # the slog line and the null MESSAGE

    # Live: records appended while following arrive without restarting journalctl.
    with records.open("a", encoding="utf-8") as fh:
        fh.write(gin_record(1, "/live/1") + gin_record(2, "/live/2"))
    follow_until(follower, store, 8)
    assert len(invocations(args_log)) == 1
    follower.close()

    # Restart: written while down, then resumed after the saved cursor; nothing twice.
    with records.open("a", encoding="utf-8") as fh:
        fh.write(gin_record(3, "/down/3") + gin_record(4, "/down/4"))
    follower = JournalFollower(source, Store.open(f"sqlite:///{db}"), journalctl=journalctl)
    follow_until(follower, store, 10)
    follower.close()
    last_call = invocations(args_log)[-1]
    assert any(a.startswith("--after-cursor=") and ";i=3002;" in a for a in last_call), last_call
    paths = [r[2] for r in stored(db)]
    assert paths[-4:] == ["/live/1", "/live/2", "/down/3", "/down/4"]
    assert len(paths) == len(set(paths)) == 8


def test_first_start_at_end_skips_history_but_not_what_follows(
    tmp_path: Path, journal: tuple[Path, Path, str]
) -> None:
    records, args_log, journalctl = journal
    db = tmp_path / "db.sqlite"
    store = Store.open(f"sqlite:///{db}")
    source = SourceSettings(name="ollama", journal_unit="ollama.service", format="ollama")  # start_at = end
    follower = JournalFollower(source, store, journalctl=journalctl)
    assert follower.read(100) == []  # starts journalctl; the newest existing record's cursor is saved at once
    saved = store.checkpoint("ollama", "journal:ollama.service")
    assert saved is not None and ";i=2c46;" in (saved.cursor or "")
    assert load_start(store, "ollama") is not None
    follower.close()  # even a stop before any new record resumes after that cursor

    with records.open("a", encoding="utf-8") as fh:
        fh.write(gin_record(5, "/new/5"))
    follower = JournalFollower(source, store, journalctl=journalctl)
    follow_until(follower, store, 1)
    follower.close()
    assert [r[2] for r in stored(db)] == ["/new/5"]
    calls = invocations(args_log)
    assert calls[0][:2] == ["-o", "json"] and "-n" in calls[0] and "--follow" not in calls[0]


def test_journalctl_missing_is_logged_not_fatal(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}")
    source = SourceSettings(name="j", journal_unit="ollama.service", start_at="beginning")
    follower = JournalFollower(source, store, journalctl=str(tmp_path / "no-such-journalctl"))
    assert follower.read(10) == []
    assert follower.read(10) == []  # retried later, complained once
    assert sum("cannot run" in r.getMessage() for r in caplog.records) == 1
    follower.close()


def test_a_new_sequence_number_space_never_collides(tmp_path: Path, journal: tuple[Path, Path, str]) -> None:
    """A volatile journal starts numbering again at every boot (a new `s=` id): the records of the new
    space reuse old sequence numbers, and must all be stored, not taken for duplicates."""
    records, _args_log, journalctl = journal
    records.write_text(gin_record(1, "/boot1/a") + gin_record(2, "/boot1/b"))
    db = tmp_path / "db.sqlite"
    store = Store.open(f"sqlite:///{db}")
    source = SourceSettings(
        name="ollama", journal_unit="ollama.service", format="ollama", start_at="beginning"
    )
    follower = JournalFollower(source, store, journalctl=journalctl)
    follow_until(follower, store, 2)
    with records.open("a", encoding="utf-8") as fh:  # after a reboot: same seqnums, another space
        for seq, path in ((1, "/boot2/a"), (2, "/boot2/b"), (3, "/boot2/c")):
            fh.write(gin_record(seq, path).replace(f"s={SID}", "s=feedfacefeedfacefeedfacefeedface"))
    follow_until(follower, store, 5)
    follower.close()
    paths = sorted(r[2] for r in stored(db))
    assert paths == ["/boot1/a", "/boot1/b", "/boot2/a", "/boot2/b", "/boot2/c"]
    # Restarting in the new space resumes after its cursor: nothing stored twice.
    follower = JournalFollower(source, Store.open(f"sqlite:///{db}"), journalctl=journalctl)
    with records.open("a", encoding="utf-8") as fh:
        fh.write(gin_record(4, "/boot2/d").replace(f"s={SID}", "s=feedfacefeedfacefeedfacefeedface"))
    follow_until(follower, store, 6)
    follower.close()
    assert sorted(r[2] for r in stored(db))[-1] == "/boot2/d" and len(stored(db)) == 6
