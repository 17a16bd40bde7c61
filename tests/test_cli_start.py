"""`ollama-monitor --help` and `--version` start fast: the command group is lazy.

The top-level help lists every command from a table in `monitor.cli` (name -> module, short help)
without importing the command modules, so none of the heavy libraries load. The table cannot drift
from the real commands: a test here compares its names and short help with theirs.
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

import monitor.cli
from monitor.cli import LAZY_COMMANDS, cli

HEAVY = ("sqlalchemy", "pydantic", "pandas", "sklearn", "numpy", "apprise", "scipy", "joblib")


def imported_modules(*args: str) -> set[str]:
    """Top-level names of every module `python -m monitor ARGS` imported, from `-X importtime`."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "monitor", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "package":  # the header line
                names.add(name.split(".")[0])
    assert "click" in names, "no -X importtime output parsed"
    return names


@pytest.mark.parametrize("args", [("--help",), ("--version",), ("-h",)])
def test_help_and_version_import_no_heavy_library(args: tuple[str, ...]) -> None:
    heavy = sorted(set(HEAVY) & imported_modules(*args))
    assert not heavy, f"`ollama-monitor {' '.join(args)}` imported {heavy}"


def test_help_imports_no_command_module() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom monitor.cli import main\nsys.argv = ['ollama-monitor', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('monitor.cli.')), file=sys.stderr)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Commands:" in proc.stdout
    assert proc.stderr.strip() == "['monitor.cli.common']", proc.stderr


def real_commands() -> dict[str, tuple[str, click.Command]]:
    """Every command any monitor.cli module exports in COMMANDS: name -> (module, command)."""
    found: dict[str, tuple[str, click.Command]] = {}
    for info in pkgutil.iter_modules(monitor.cli.__path__):
        name = f"monitor.cli.{info.name}"
        module = importlib.import_module(name)
        for command in getattr(module, "COMMANDS", []):
            assert command.name not in found, f"{command.name} defined twice"
            assert command.name is not None
            found[command.name] = (name, command)
    return found


def test_lazy_table_matches_the_real_commands() -> None:
    real = real_commands()
    assert sorted(LAZY_COMMANDS) == sorted(real)
    for name, (module, command) in real.items():
        entry_module, summary = LAZY_COMMANDS[name]
        assert entry_module == module, name
        assert not command.hidden and not command.deprecated and command.short_help is None, name
        stub = click.Command(name, help=summary)
        for limit in range(3, 160):
            assert stub.get_short_help_str(limit) == command.get_short_help_str(limit), (name, limit)


def test_lazy_help_is_the_eager_help() -> None:
    """The lazy listing prints exactly what click prints with every command loaded."""
    eager = click.Group(
        name=cli.name,
        params=cli.params,
        help=cli.help,
        context_settings=cli.context_settings,
        commands=[command for _, command in real_commands().values()],
    )
    runner = CliRunner()
    lazy_out = runner.invoke(cli, ["--help"], prog_name="ollama-monitor")
    eager_out = runner.invoke(eager, ["--help"], prog_name="ollama-monitor")
    assert lazy_out.exit_code == 0, lazy_out.output
    assert lazy_out.output == eager_out.output


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
def test_every_command_help_loads(name: str) -> None:
    result = CliRunner().invoke(cli, [name, "--help"], prog_name="ollama-monitor")
    assert result.exit_code == 0, result.output
    assert f"Usage: ollama-monitor {name}" in result.output


def test_unknown_command_is_a_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "no-such-command"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "No such command 'no-such-command'" in proc.stderr
