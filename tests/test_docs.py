"""The README documents every command (the sqlite-utils way), and its Quick start is the two commands."""

from __future__ import annotations

import re
from pathlib import Path

import click

from monitor.cli import cli

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def commands() -> list[str]:
    names: list[str] = []
    ctx = click.Context(cli)
    for name in cli.list_commands(ctx):  # the group is lazy: get_command loads each one
        command = cli.get_command(ctx, name)
        if isinstance(command, click.Group):
            names.extend(f"{name} {sub}" for sub in command.commands)
        else:
            names.append(name)
    return sorted(names)


def test_every_command_is_documented() -> None:
    missing = [
        name for name in commands() if f"ollama-monitor {name}" not in README and f"`{name}`" not in README
    ]
    assert not missing, f"commands missing from README.md: {missing}"


def test_quick_start_is_make_demo_then_make_test() -> None:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    lines = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    assert [line for line in lines if line] == ["make demo", "make test"]
