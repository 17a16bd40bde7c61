"""`ollama-monitor run`: the daemon in the foreground (systemd runs it; logs go to stderr)."""

from __future__ import annotations

import logging
import sys

import click

from monitor import config as config_mod
from monitor.cli.common import Env, pass_env
from monitor.errors import ConfigError

LEVELS = ("debug", "info", "warning", "error")


def setup_logging(level: str) -> None:
    """Log to stderr with levels; systemd/journald adds the timestamps, a terminal gets them here."""
    fmt = "%(levelname)s %(name)s: %(message)s"
    if sys.stderr.isatty():
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(stream=sys.stderr, level=level.upper(), format=fmt, force=True)
    # watchdog logs an ERROR when its thread is stopped mid-event; the daemon supervises it anyway.
    logging.getLogger("watchdog").setLevel(logging.CRITICAL)


@click.command("run")
@click.option(
    "--log-level",
    type=click.Choice(LEVELS),
    default="info",
    show_default=True,
    help="Least severe messages logged.",
)
@pass_env
def run(env: Env, log_level: str) -> None:
    """Follow every configured source and store each request exactly once (foreground process).

    SIGTERM or SIGINT stop it after committing what was read; SIGHUP reloads the configuration.
    """
    from monitor.daemon import Daemon

    setup_logging(log_level)
    settings = env.settings
    if not settings.sources:
        raise ConfigError(
            f"{env.origin or 'the configuration'}: no sources to follow",
            ["sources: add at least one [[sources]] table with `name` and `path` or `journal_unit`"],
            hint="see config/monitor.example.toml",
        )
    store = env.open_store()
    config_path = env.config_path

    def load() -> config_mod.Settings:
        return config_mod.load(config_path)[0]

    try:
        code = Daemon(settings, store, load_settings=load).run()
    finally:
        store.close()
    sys.exit(code)


COMMANDS = [run]
