"""`ingest/backfill.plan_file`: which source name, format and parse context a given file is read with
(the decision `check` and `ingest` used to make in the CLI)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor import config
from monitor.ingest.backfill import default_source_name, plan_file
from tests.conftest import write_config


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("access.log", "access"),
        ("access.log.1", "access"),
        ("access.log.2.gz", "access"),
        ("access.log-20250101", "access"),
        ("ollama.log", "ollama"),
        (".log", "ingest"),
    ],
)
def test_default_source_name_drops_rotation_suffixes(name: str, expected: str) -> None:
    assert default_source_name(Path("/var/log/nginx") / name) == expected


def test_a_configured_sources_file_and_its_rotations_take_its_name_format_and_timezone(
    tmp_path: Path,
) -> None:
    log = tmp_path / "proxy.log"
    cfg = write_config(
        tmp_path / "monitor.toml",
        tmp_path / "m.db",
        f'[[sources]]\nname = "edge"\nformat = "apache"\npath = "{log}"\ntimezone = "Europe/Berlin"\n',
    )
    settings, _origin = config.load(cfg)
    for path in (log, tmp_path / "proxy.log.1", tmp_path / "proxy.log-20260301.gz"):
        plan = plan_file(settings, path)
        assert (plan.name, plan.format) == ("edge", "apache"), path
        assert plan.context.tz.utcoffset(datetime(2026, 1, 15, tzinfo=UTC)).total_seconds() == 3600  # type: ignore[union-attr]
    other = plan_file(settings, tmp_path / "other.log.3")
    assert (other.name, other.format) == ("other", "auto") and other.context.tz == UTC
    forced = plan_file(settings, log, source_name="nginx", fmt="nginx")
    assert (forced.name, forced.format) == ("nginx", "nginx")


def test_standard_input_is_named_stdin_and_belongs_to_no_source() -> None:
    plan = plan_file(None, Path("/tmp/ollama-monitor-stdin-x/stdin"))
    assert (plan.name, plan.format) == ("stdin", "auto")
    assert plan_file(None, Path("x"), source_name="ollama").name == "ollama"
