"""Configuration: validation with key paths, look-up order, the example file, redaction."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from monitor import config
from monitor.core.errors import ConfigError
from tests.conftest import CliRunner, assert_no_traceback, isolated_env

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "monitor.example.toml"


def test_example_config_is_valid_and_documents_every_key() -> None:
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    settings = config.validate(data, str(EXAMPLE))
    assert [s.name for s in settings.sources] == ["ollama", "nginx", "ollama-journal"]

    text = EXAMPLE.read_text(encoding="utf-8")

    def keys(model: type[config.BaseModel]) -> set[str]:
        return set(model.model_fields)

    sections: dict[str, type[config.BaseModel]] = {
        "database": config.DatabaseSettings,
        "known": config.KnownSettings,
        "rules": config.RuleSettings,
        "detector": config.DetectorSettings,
        "alerts": config.AlertSettings,
        "retention": config.RetentionSettings,
        "daemon": config.DaemonSettings,
        "summary": config.SummarySettings,
    }
    for section, model in sections.items():
        assert f"[{section}]" in text
        for key in keys(model):
            assert f"\n{key} =" in text or f"# {key} =" in text, f"example lacks [{section}] {key}"
    assert "[sources.json_fields]" in text
    for key in (keys(config.SourceSettings) - {"json_fields"}) | keys(config.JsonFields):
        assert f"\n{key} =" in text or f"# {key} =" in text, f"example lacks sources.{key}"


def test_every_problem_is_reported_with_its_key_path() -> None:
    bad = {
        "database": {"url": "not-a-url"},
        "sources": [
            {"name": "a", "path": "/x", "format": "iis", "timezone": "Mars/Olympus"},
            {"name": "b"},
            {"name": "a", "path": "/y", "trusted_proxies": ["300.1.1.1"]},
        ],
        "known": {"allow": ["10.0.0.0/33"]},
        "rules": {"disabled": ["no-such-rule"]},
        "detector": {"window_minutes": 1},
        "typo_section": {},
    }
    with pytest.raises(ConfigError) as info:
        config.validate(bad, "test.toml")
    problems = "\n".join(info.value.problems)
    for path in (
        "database.url",
        "sources[0].format",
        "sources[0].timezone",
        "sources[1]",
        "sources[2].trusted_proxies",
        "known.allow",
        "rules.disabled",
        "detector.window_minutes",
        "typo_section",
    ):
        assert path in problems, f"{path} missing from:\n{problems}"
    assert info.value.exit_code == 78


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OLLAMA_MONITOR_CONFIG", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setattr(config, "SEARCH_PATHS", (Path("config/monitor.toml"),))
    settings, origin = config.load()
    assert origin == "<embedded default>"
    assert settings.database.url == f"sqlite:///{tmp_path / 'state' / 'ollama-monitor' / 'monitor.db'}"

    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "monitor.toml").write_text('[known]\nallow = ["192.168.0.0/16"]\n')
    assert config.load()[1] == "config/monitor.toml"

    env_file = tmp_path / "env.toml"
    env_file.write_text('[known]\nallow = ["172.16.0.0/12"]\n')
    monkeypatch.setenv("OLLAMA_MONITOR_CONFIG", str(env_file))
    assert config.load()[0].known.allow == ["172.16.0.0/12"]

    explicit = tmp_path / "explicit.toml"
    explicit.write_text("")
    assert config.load(explicit)[1] == str(explicit)
    with pytest.raises(ConfigError):
        config.load(tmp_path / "missing.toml")


def test_redaction_hides_secrets() -> None:
    settings = config.validate(
        {
            "database": {"url": "postgresql://mon:hunter2@db/monitor"},
            "alerts": {"urls": ["slack://T000/B000/XXXXSECRET", "mailto://u:pw@example.com"]},
        }
    )
    shown = str(config.redacted(settings))
    assert "hunter2" not in shown and "XXXXSECRET" not in shown and "pw@" not in shown
    assert "postgresql://mon:***@db/monitor" in shown and "slack://***" in shown


def test_cli_validate_broken_config_lists_problems_exit_78(cli: CliRunner, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[[sources]]\nname = "x"\nformat = "iis"\n[known]\nallow = ["nope"]\n')
    proc = cli("--config", str(cfg), "config", "validate")
    assert proc.returncode == 78
    assert_no_traceback(proc)
    assert "sources[0].format" in proc.stderr and "known.allow" in proc.stderr


def test_cli_validate_toml_syntax_error(cli: CliRunner, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[database\nurl = "x"\n')
    proc = cli("--config", str(cfg), "config", "validate")
    assert proc.returncode == 78
    assert_no_traceback(proc)
    assert "not valid TOML" in proc.stderr


def test_cli_show_redacts_and_env_var_is_used(cli: CliRunner, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[alerts]\nurls = ["json://127.0.0.1:9/secret-token"]\n')
    proc = cli("config", "show", env=isolated_env(tmp_path, OLLAMA_MONITOR_CONFIG=str(cfg)))
    assert proc.returncode == 0, proc.stderr
    assert "secret-token" not in proc.stdout
    assert "json://***" in proc.stdout and str(cfg) in proc.stdout
    proc = cli("--config", str(cfg), "config", "show", "--json")
    assert proc.returncode == 0 and '"json://***"' in proc.stdout


def test_cli_missing_config_file(cli: CliRunner, tmp_path: Path) -> None:
    proc = cli("--config", str(tmp_path / "nope.toml"), "config", "validate")
    assert proc.returncode == 78
    assert_no_traceback(proc)
    assert "not found" in proc.stderr


def test_cli_validate_checks_alert_urls_without_leaking_them(cli: CliRunner, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[alerts]\nurls = ["json://127.0.0.1:9/ok", "nosuchservice://secret-token@x"]\n')
    proc = cli("--config", str(cfg), "config", "validate")
    assert proc.returncode == 78
    assert_no_traceback(proc)
    assert "alerts.urls[1]" in proc.stderr and "secret-token" not in proc.stderr
