"""`ollama-monitor config validate | show`."""

from __future__ import annotations

import re
from typing import Any

import click

from monitor import config as config_mod
from monitor.cli.common import Env, pass_env


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
    from monitor.alerts.validate import validate_config

    settings, origin = validate_config(env.config_path)
    env.out.print(
        f"{origin}: OK ({len(settings.sources)} source(s), database {settings.database.url.split('://', 1)[0]})",
        markup=False,
    )


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
        env.print_json({"origin": env.origin, "settings": data})
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
