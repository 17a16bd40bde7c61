"""`ollama-monitor config validate | show`."""

from __future__ import annotations

import json

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

    Alert URLs are checked too (each must be a usable apprise URL); nothing is sent.
    """
    settings = env.settings
    if settings.alerts.urls or settings.alerts.config_file:
        from monitor.delivery import load_targets

        load_targets(settings.alerts)  # raises AlertError naming alerts.urls[i], never the URL
    env.out.print(
        f"{env.origin}: OK ({len(settings.sources)} source(s), database {settings.database.url.split('://', 1)[0]})",
        markup=False,
    )


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of TOML-like text.")
@pass_env
def show(env: Env, as_json: bool) -> None:
    """Print the effective settings (defaults filled in, secrets redacted)."""
    data = config_mod.redacted(env.settings)
    if as_json:
        env.out.print_json(json.dumps({"origin": env.origin, "settings": data}))
        return
    env.out.print(f"# effective configuration from {env.origin}", markup=False)
    env.out.print(_to_toml(data), markup=False)


def _to_toml(data: dict[str, object]) -> str:
    lines: list[str] = []
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict | list) or _is_plain_list(v)}
    for key, value in scalars.items():
        lines.append(f"{key} = {_toml_value(value)}")
    for key, value in data.items():
        if isinstance(value, dict):
            lines.append("")
            lines.append(f"[{key}]")
            nested = {k: v for k, v in value.items() if isinstance(v, dict)}
            for k, v in value.items():
                if not isinstance(v, dict):
                    lines.append(f"{k} = {_toml_value(v)}")
            for k, v in nested.items():
                lines.append(f"[{key}.{k}]")
                for kk, vv in v.items():
                    lines.append(f"{kk} = {_toml_value(vv)}")
        elif isinstance(value, list) and not _is_plain_list(value):
            for item in value:
                lines.append("")
                lines.append(f"[[{key}]]")
                for k, v in item.items():
                    if isinstance(v, dict):
                        lines.append(
                            f"{k} = {{ "
                            + ", ".join(f"{kk} = {_toml_value(vv)}" for kk, vv in v.items())
                            + " }"
                        )
                    else:
                        lines.append(f"{k} = {_toml_value(v)}")
    return "\n".join(lines).strip()


def _is_plain_list(value: object) -> bool:
    return isinstance(value, list) and all(not isinstance(v, dict) for v in value)


def _toml_value(value: object) -> str:
    if value is None:
        return '""  # unset'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(str(value))


COMMANDS = [config_group]
