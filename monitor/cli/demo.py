"""`ollama-monitor demo`: a minute with the real daemon on a simulated Ollama log (see monitor.service.demo)."""

from __future__ import annotations

import click
from rich.panel import Panel
from rich.text import Text

from monitor.cli.common import Env, pass_env
from monitor.core.records import Notification
from monitor.core.sanitize import for_terminal

COLOURS = {"info": "cyan", "warning": "yellow", "critical": "bold red"}


@click.command("demo")
@click.option(
    "--seconds",
    type=click.FloatRange(10, 600),
    default=60,
    show_default=True,
    help="How long the live part runs.",
)
@click.option(
    "--notify",
    "notify",
    multiple=True,
    metavar="URL",
    help="Also send the alerts to this apprise URL (repeatable), e.g. json://127.0.0.1:8000/hook.",
)
@pass_env
def demo(env: Env, seconds: float, notify: tuple[str, ...]) -> None:
    """Watch ollama-monitor catch an unknown scanner, a model pull and a hostile client, live.

    Uses a temporary SQLite database and no config; nothing outside a temporary directory is touched.
    """
    import logging

    from monitor.service.demo import Narrator, run_demo

    # The demo narrates itself; the daemon's own log lines would repeat the alerts.
    logging.basicConfig(level=logging.ERROR, force=True)
    out = env.out

    def say(text: str) -> None:
        out.print(Text(text, style="dim" if not text.startswith("[") else "bold"))

    def alert(note: Notification) -> None:
        colour = COLOURS.get(note.severity.value, "white")
        body = Text(for_terminal(note.message).replace("\\n", "\n"))
        panel = Panel(
            body,
            title=Text(for_terminal(note.title), style=colour),
            title_align="left",
            subtitle=note.rule,
            subtitle_align="right",
            border_style=colour,
        )
        out.print(panel, soft_wrap=False)

    out.rule("ollama-monitor demo")
    result = run_demo(Narrator(say, alert), seconds=seconds, notify=list(notify))
    out.rule("what it saw")
    out.print(Text(result["summary"]))
    counts = ", ".join(f"{rule} x{n}" for rule, n in sorted(result["alerts"].items())) or "none"
    out.print(Text(f"Notifications: {result['notifications']} ({counts})", style="bold"))
    out.print(
        Text(
            "Next: point it at your own log with `ollama-monitor check FILE` and `ollama-monitor ingest FILE`;"
            " see README.md, Quick start.",
            style="dim",
        )
    )


COMMANDS = [demo]
