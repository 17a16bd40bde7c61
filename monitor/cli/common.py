"""Shared plumbing of the CLI: the context object, output helpers and error translation.

The CLI is the only layer that prints and chooses exit statuses. Library code raises MonitorError
subclasses; `run_guarded` turns them (and a few OS errors) into `ollama-monitor: error: ...` lines.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console

from monitor.core.errors import ConfigError, MonitorError, SourceError, database_error

if TYPE_CHECKING:  # pydantic: imported when a command first reads the settings, not by `--help`
    from monitor.config import Settings

T = TypeVar("T")


@dataclass
class Env:
    """Everything a command needs from outside: config path, streams. Injected, so tests need no patching."""

    config_path: str | None = None
    out: Console = field(default_factory=lambda: Console(highlight=False, soft_wrap=True))
    err: Console = field(default_factory=lambda: Console(stderr=True, highlight=False, soft_wrap=True))
    _settings: Settings | None = None
    origin: str = ""

    def print_json(self, data: object) -> None:
        """Write `data` as JSON to the output stream as it is: no re-parsing, colouring or wrapping
        (rich's `print_json` re-parses the document, costs ~0.7 s on 2,000 sources, and writes
        attacker text such as C1 controls and bidi overrides raw). Every control, invisible or bidi
        character is a `\\uXXXX` escape (`core.sanitize.json_text`)."""
        from monitor.core.sanitize import json_text

        stream = self.out.file
        stream.write(json_text(data) + "\n")
        stream.flush()

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from monitor import config as config_mod

            self._settings, self.origin = config_mod.load(self.config_path)
        return self._settings

    def open_store(self, *, daemon: bool = False) -> Any:
        """Open the configured database (creating and migrating it), with a command's page cache or,
        with `daemon`, the long-running daemon's smaller one. Imported lazily: keeps startup fast."""
        from monitor.store import Store
        from monitor.store.engine import COMMAND_CACHE_KIB, DAEMON_CACHE_KIB

        return Store.open(
            self.settings.database.url, cache_kib=DAEMON_CACHE_KIB if daemon else COMMAND_CACHE_KIB
        )


pass_env = click.make_pass_decorator(Env)


def error_exit(err: Console, exc: MonitorError) -> int:
    err.print(f"ollama-monitor: error: {exc}", markup=False)
    if isinstance(exc, ConfigError):
        for problem in exc.problems:
            err.print(f"  - {problem}", markup=False)
    if exc.hint:
        err.print(f"  hint: {exc.hint}", markup=False)
    return exc.exit_code


def run_guarded(err: Console, fn: Callable[[], T]) -> T:
    """Run fn; translate our errors into a message and exit status, never a traceback."""
    try:
        return fn()
    except MonitorError as exc:
        sys.exit(error_exit(err, exc))
    except KeyboardInterrupt:
        err.print("ollama-monitor: interrupted", markup=False)
        sys.exit(130)
    except BrokenPipeError:
        # Output piped into `head` and closed early: not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except PermissionError as exc:
        sys.exit(error_exit(err, MonitorError(f"permission denied: {exc.filename or exc}")))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            sys.exit(error_exit(err, SourceError(f"{exc.filename or 'a path'}: a symlink loop")))
        sys.exit(error_exit(err, MonitorError(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))))
    except RuntimeError as exc:
        if str(exc).startswith("Symlink loop from"):  # Python 3.11's Path.resolve()
            sys.exit(error_exit(err, SourceError(f"{str(exc).split(' from ', 1)[1]}: a symlink loop")))
        raise
    except Exception as exc:
        store_error = database_error(exc)
        if store_error is None:
            raise
        sys.exit(error_exit(err, store_error))
