"""The `ollama-monitor` command line: a thin shell over the library.

Each topic's commands live in their own module of this package (listed in its `COMMANDS`). The group
is lazy: `LAZY_COMMANDS` names each command's module and keeps its one-line help, so `--help` and
`--version` list the commands without importing them (nor SQLAlchemy, pydantic, pandas, ...); a
command's module is imported only when that command runs or shows its own help.
`tests/test_cli_start.py` keeps the table in step with the real commands. Only this package prints
and picks exit statuses.
"""

from __future__ import annotations

import importlib
import sys

import click

from monitor import __version__
from monitor.cli.common import Env, run_guarded

# command name -> (module, the first sentence of its help, as `--help` lists it)
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "alerts": (
        "monitor.cli.alerts",
        "Test the alert channels, list alerts, and send queued notifications.",
    ),
    "audit": (
        "monitor.cli.audit",
        "Check whether this host's Ollama is reachable from other machines, and say how to fix it.",
    ),
    "check": (
        "monitor.cli.logs",
        "Parse log FILES without storing anything and report what was read (like fail2ban-regex).",
    ),
    "config": ("monitor.cli.config_cmd", "Check and show the configuration."),
    "demo": (
        "monitor.cli.demo",
        "Watch ollama-monitor catch an unknown scanner, a model pull and a hostile client, live.",
    ),
    "ingest": ("monitor.cli.logs", "Backfill log FILES (plain or .gz) into the database."),
    "replay": (
        "monitor.cli.detect",
        "Run the daemon's pipeline over historical LOGS, the clock taken from the log lines.",
    ),
    "run": (
        "monitor.cli.daemon",
        "Follow every configured source and store each request exactly once (foreground process).",
    ),
    "score": (
        "monitor.cli.detect",
        "Score windows with the saved model: per source, the score, the verdict and why.",
    ),
    "sources": ("monitor.cli.sources", "Client sources: who has used the API, and which are known."),
    "status": (
        "monitor.cli.status",
        "Show the daemon's health, each source's position and lag, the model and the outbox.",
    ),
    "summary": (
        "monitor.cli.summary",
        "Summarise who used the server, how much, and what looked wrong (by default over the last 7 days).",
    ),
    "train": (
        "monitor.cli.detect",
        "Train the anomaly detector on the stored history and save it in [detector] model_dir.",
    ),
}


class LazyGroup(click.Group):
    """click's lazy-loading group: a subcommand's module is imported on first use, and the command
    list in `--help` comes from `LAZY_COMMANDS` alone."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None or cmd_name not in LAZY_COMMANDS:
            return command
        module_name = LAZY_COMMANDS[cmd_name][0]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            return None
        for found in module.COMMANDS:
            self.add_command(found)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # As click's own, but each line from the table: shortened by click itself, so the listing
        # is the one the real commands would print.
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            loaded = super().get_command(ctx, name)
            if loaded is not None:
                if loaded.hidden:
                    continue
                rows.append((name, loaded.get_short_help_str(limit)))
            else:
                rows.append(
                    (name, click.Command(name, help=LAZY_COMMANDS[name][1]).get_short_help_str(limit))
                )
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
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
