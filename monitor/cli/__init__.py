"""The `ollama-monitor` command line: a thin shell over the library.

Each topic's commands live in their own module of this package and attach themselves to `cli`
in `_register()`. Only this package prints and picks exit statuses.
"""

from __future__ import annotations

import sys

import click

from monitor import __version__
from monitor.cli.common import Env, run_guarded


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    envvar="OLLAMA_MONITOR_CONFIG",
    help="Config file (default: $OLLAMA_MONITOR_CONFIG, ./config/monitor.toml, /etc/ollama-monitor/monitor.toml, "
    "else the embedded default).",
)
@click.version_option(__version__, prog_name="ollama-monitor")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Watch a self-hosted Ollama server's access logs: store every request, alert on unknown sources,
    management calls and anomalies."""
    ctx.obj = Env(config_path=config_path)


def _register() -> None:
    import importlib

    for name in (
        "config_cmd",
        "logs",
        "status",
        "sources",
        "detect",
        "alerts",
        "summary",
        "audit",
        "daemon",
        "demo",
    ):
        try:
            module = importlib.import_module(f"monitor.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"monitor.cli.{name}":
                raise
            continue
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    """Console-script entry point."""
    run_guarded(Env().err, _invoke)
    sys.exit(0)


def _invoke() -> None:
    # Not click's standalone mode: it turns Ctrl-C into "Aborted!" and status 1, where a shell expects
    # 130. run_guarded says "interrupted" and exits 130; usage errors are shown as click shows them.
    try:
        code = cli.main(prog_name="ollama-monitor", standalone_mode=False)
    except click.exceptions.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):
            raise KeyboardInterrupt from None
        click.echo("Aborted!", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    if isinstance(code, int) and code:  # an Exit raised by an option, e.g. --help
        sys.exit(code)
