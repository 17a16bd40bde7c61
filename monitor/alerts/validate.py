"""`ollama-monitor config validate`: the settings' problems and every unusable alert URL, together.

Each URL is checked with the alerting code's own loader (`targets.load_targets`), one at a time, so a
problem names its key (`alerts.urls[i]`), never the URL (URLs hold tokens). Nothing is sent.
"""

from __future__ import annotations

import os
from typing import Any

from monitor import config as config_mod
from monitor.core.errors import AlertError, ConfigError, is_redacted_alert_url

APPRISE_HINT = "see https://github.com/caronc/apprise/wiki for each service's URL format"


def validate_config(explicit: str | os.PathLike[str] | None = None) -> tuple[config_mod.Settings, str]:
    """Load the configuration as `config.load` does and check its alert URLs; return (settings,
    origin). Raise ConfigError listing every problem, the URLs' beside the settings' (with an invalid
    file, the URLs come from its raw TOML: those that are strings)."""
    problems: list[str] = []
    error: ConfigError | None = None
    settings: config_mod.Settings | None = None
    origin = ""
    try:
        settings, origin = config_mod.load(explicit)
    except ConfigError as exc:
        error, problems = exc, list(exc.problems)
    url_problems = alert_url_problems(*_alert_entries(settings, explicit))
    if error is not None and not url_problems:
        raise error
    if url_problems:
        origin = origin or (str(error).split(": invalid configuration", 1)[0] if error else "")
        problems += url_problems
        raise ConfigError(
            f"{origin or 'the configuration'}: invalid configuration ({len(problems)} problem(s))",
            problems,
            hint=APPRISE_HINT,
        )
    assert settings is not None
    return settings, origin


def _alert_entries(
    settings: config_mod.Settings | None, explicit: str | os.PathLike[str] | None
) -> tuple[list[Any], str | None]:
    if settings is not None:
        return list(settings.alerts.urls), settings.alerts.config_file
    try:
        data, _ = config_mod.read(explicit)
    except ConfigError:
        return [], None
    alerts = (data or {}).get("alerts")
    alerts = alerts if isinstance(alerts, dict) else {}
    raw = alerts.get("urls")
    urls = [u if isinstance(u, str) else "" for u in raw] if isinstance(raw, list) else []
    config_file = alerts.get("config_file") if isinstance(alerts.get("config_file"), str) else None
    return urls, config_file


def alert_url_problems(urls: list[Any], config_file: str | None) -> list[str]:
    """One problem per unusable alert URL (`alerts.urls[i]`, never the URL itself) and one for an
    unusable `config_file`. Entries that are not strings are skipped: the settings report them."""
    if not urls and not config_file:
        return []
    from monitor.alerts.targets import load_targets

    problems = []
    for i, url in enumerate(urls):
        if not isinstance(url, str) or not url:
            continue  # a type error, already reported by the settings
        if is_redacted_alert_url(url):
            problems.append(f"alerts.urls[{i}]: redacted (as `config show` prints it); put the real URL back")
            continue
        try:
            load_targets(config_mod.AlertSettings.model_construct(urls=[url], config_file=None))
        except AlertError as exc:
            problems.append(str(exc).replace("alerts.urls[0]", f"alerts.urls[{i}]", 1))
    if config_file:
        try:
            load_targets(config_mod.AlertSettings.model_construct(urls=[], config_file=config_file))
        except AlertError as exc:
            problems.append(str(exc))
    return problems
