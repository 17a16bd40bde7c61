"""`ollama-monitor config validate | show`."""

from __future__ import annotations

import json
import re
from typing import Any

import click

from monitor import config as config_mod
from monitor.cli.common import Env, pass_env
from monitor.core.errors import ConfigError, is_redacted_alert_url


@click.group("config")
def config_group() -> None:
    """Check and show the configuration."""


@config_group.command("validate")
@pass_env
def validate(env: Env) -> None:
    """Check the config file; list every problem with its key path (exit 78 when invalid).

    Alert URLs are checked too (each must be a usable apprise URL); nothing is sent. Every problem is
    listed, the URLs' beside the others.
    """
    problems: list[str] = []
    error: ConfigError | None = None
    try:
        settings = env.settings
    except ConfigError as exc:
        error, problems = exc, list(exc.problems)
        settings = None
    url_problems = _alert_url_problems(env, settings)
    if error is not None and not url_problems:
        raise error
    if url_problems:
        origin = env.origin or (str(error).split(": invalid configuration", 1)[0] if error else "")
        problems += url_problems
        raise ConfigError(
            f"{origin or 'the configuration'}: invalid configuration ({len(problems)} problem(s))",
            problems,
            hint="see https://github.com/caronc/apprise/wiki for each service's URL format",
        )
    assert settings is not None
    env.out.print(
        f"{env.origin}: OK ({len(settings.sources)} source(s), database {settings.database.url.split('://', 1)[0]})",
        markup=False,
    )


def _alert_url_problems(env: Env, settings: config_mod.Settings | None) -> list[str]:
    """One problem per unusable alert URL (`alerts.urls[i]`, never the URL itself), checked with the
    alerting code's own loader one URL at a time. With an invalid file, the URLs come from its raw
    TOML (those that are strings)."""
    if settings is not None:
        urls, config_file = list(settings.alerts.urls), settings.alerts.config_file
    else:
        try:
            data, _ = config_mod.read(env.config_path)
        except ConfigError:
            return []
        alerts = (data or {}).get("alerts")
        alerts = alerts if isinstance(alerts, dict) else {}
        raw = alerts.get("urls")
        urls = [u if isinstance(u, str) else "" for u in raw] if isinstance(raw, list) else []
        config_file = alerts.get("config_file") if isinstance(alerts.get("config_file"), str) else None
    if not urls and not config_file:
        return []
    from monitor.alerts.delivery import load_targets
    from monitor.core.errors import AlertError

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


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of TOML.")
@click.option(
    "--show-secrets",
    is_flag=True,
    help="Print alert URLs and the database password as they are (the output is then a complete config).",
)
@pass_env
def show(env: Env, as_json: bool, show_secrets: bool) -> None:
    """Print the effective settings (defaults filled in, secrets redacted) as a valid config file."""
    data = env.settings.model_dump(mode="json") if show_secrets else config_mod.redacted(env.settings)
    if as_json:
        env.out.print_json(json.dumps({"origin": env.origin, "settings": data}))
        return
    env.out.print(f"# effective configuration from {env.origin}", markup=False)
    env.out.print(to_toml(data), markup=False)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def to_toml(data: dict[str, Any]) -> str:
    """Write settings as TOML that reads back to the same values. Unset (None) values are left out,
    as a comment: TOML has no null, and `proxy = ""` would not be a boolean."""
    lines: list[str] = []
    _table(lines, [], data)
    return "\n".join(lines).strip()


def _table(lines: list[str], path: list[str], table: dict[str, Any]) -> None:
    for key, value in table.items():
        if value is None:
            lines.append(f"# {_key(key)}: unset (the default applies)")
        elif not _is_table(value) and not _is_table_array(value):
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in table.items():
        sub = [*path, _key(key)]
        if _is_table(value):
            lines += ["", f"[{'.'.join(sub)}]"]
            _table(lines, sub, value)
        elif _is_table_array(value):
            for item in value:
                lines += ["", f"[[{'.'.join(sub)}]]"]
                _table(lines, sub, item)


def _is_table(value: object) -> bool:
    return isinstance(value, dict)


def _is_table_array(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value if v is not None) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None)
        return "{ " + items + " }" if items else "{}"
    return _string(str(value))


def _string(text: str) -> str:
    """A TOML basic string: quote, backslash and every control character escaped (TOML forbids them raw)."""
    out = []
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


COMMANDS = [config_group]
