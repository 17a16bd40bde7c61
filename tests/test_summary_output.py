"""`monitor.reports.summary.output`: the format a file name asks for, and the atomic write behind
`summary --output` (the command itself is in test_summary.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.core.errors import MonitorError
from monitor.reports.summary.output import format_for, write_atomically


def test_format_for() -> None:
    assert format_for(Path("week.HTML"), None, "text") == "html"
    assert format_for(Path("week.md"), None, "text") == "markdown"
    assert format_for(Path("week.md"), "json", "text") == "json"  # --format wins over the name
    assert format_for(Path("week.out"), None, "markdown") == "markdown"  # else [summary] format


def test_write_atomically(tmp_path: Path) -> None:
    target = tmp_path / "week.md"
    target.write_text("old")
    write_atomically(target, "new\n")
    assert target.read_text(encoding="utf-8") == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["week.md"]  # no temporary file left behind
    with pytest.raises(MonitorError, match="does not exist"):
        write_atomically(tmp_path / "nope" / "x.md", "text")


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "week.md"
    target.write_text("old")
    with pytest.raises(UnicodeEncodeError):
        write_atomically(target, "half \udcff")  # a lone surrogate cannot be written as UTF-8
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["week.md"]
