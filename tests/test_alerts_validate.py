"""`monitor.alerts.validate`: every unusable alert URL named by its key, never by its text, beside the
settings' own problems (the `config validate` command around it is in test_config.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.alerts.validate import alert_url_problems, validate_config
from monitor.core.errors import ConfigError


def test_each_unusable_url_is_named_by_its_key() -> None:
    urls = ["json://127.0.0.1:9/ok", "nosuchservice://secret-token@x", 5, "", "json://***"]
    problems = alert_url_problems(urls, None)
    assert [p.split(":", 1)[0] for p in problems] == ["alerts.urls[1]", "alerts.urls[4]"]
    assert "redacted" in problems[1]
    assert not any("secret-token" in p for p in problems)
    assert alert_url_problems([], None) == []
    assert alert_url_problems(["json://127.0.0.1:9/ok"], None) == []


def test_settings_and_url_problems_are_listed_together(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[daemon]\nstuck_minutes = "soon"\n[alerts]\nurls = ["nosuchservice://secret-token@x"]\n')
    with pytest.raises(ConfigError) as caught:
        validate_config(cfg)
    problems = caught.value.problems
    assert len(problems) == 2, problems
    assert any(p.startswith("daemon.stuck_minutes") for p in problems), problems
    assert any(p.startswith("alerts.urls[0]") for p in problems), problems
    assert str(caught.value).startswith(f"{cfg}: invalid configuration (2 problem(s))")

    cfg.write_text('[alerts]\nurls = ["json://127.0.0.1:9/ok"]\n')
    settings, origin = validate_config(cfg)
    assert origin == str(cfg) and settings.alerts.urls == ["json://127.0.0.1:9/ok"]
