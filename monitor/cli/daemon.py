"""`ollama-monitor run`: the daemon in the foreground (systemd runs it; logs go to stderr)."""

from __future__ import annotations

import logging
import os
import sys

import click

from monitor import config as config_mod
from monitor.cli.common import Env, pass_env
from monitor.core.errors import ConfigError

LEVELS = ("debug", "info", "warning", "error")


class _JournalFormatter(logging.Formatter):
    """Under journald: `<N>` syslog priority prefixes (journald stores the level), no timestamp."""

    PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        return f"<{self.PRIORITY.get(record.levelno, 6)}>" + super().format(record)


def setup_logging(level: str) -> None:
    """Log to stderr with levels; systemd/journald adds the timestamps, a terminal gets them here."""
    fmt = "%(levelname)s %(name)s: %(message)s"
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):  # stderr is connected to journald
        handler.setFormatter(_JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter(("%(asctime)s " if sys.stderr.isatty() else "") + fmt))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
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
    from monitor.service.app import run_daemon

    setup_logging(log_level)
    settings = env.settings
    if not settings.sources:
        raise ConfigError(
            f"{env.origin or 'the configuration'}: no sources to follow",
            ["sources: add at least one [[sources]] table with `name` and `path` or `journal_unit`"],
            hint="see config/monitor.example.toml",
        )
    config_path = env.config_path

    def load() -> config_mod.Settings:
        return config_mod.load(config_path)[0]

    sys.exit(run_daemon(settings, env.open_store(daemon=True), load_settings=load))


COMMANDS = [run]
