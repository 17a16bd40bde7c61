"""Render a `monitor.reports.summary.build.Summary` as terminal text (rich tables), Markdown, HTML or JSON.

Every string that came from a log (addresses, paths, names derived from them, alert texts that quote
them) is attacker-controlled. Each medium gets its own treatment:
- text: control characters shown as visible escapes (`sanitize.for_terminal`), put in rich `Text`
  objects so `[bold]`-style markup in a path is printed, not interpreted;
- Markdown: the same, then mentions and links defused (`sanitize.neutralise`) and every Markdown
  metacharacter backslash-escaped (pipes too, so a path cannot break a table);
- HTML (monitor.reports.summary.html): visible escapes, then `html.escape`;
- JSON: the raw values; `json.dumps` escapes them (ASCII only).

Rendering is deterministic for a given Summary: fixed width, no colours, no clock reads.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from monitor.reports.summary.cells import (
    SOURCE_COLUMNS,
    TOP_SOURCES,
    WEEKDAYS,
    change,
    count,
    gist,
    headline,
    millis,
    model_lines,
    more_line,
    percent,
    period_label,
    safe,
    short_stamp,
    size,
    source_label,
    spark,
    stamp,
    totals_rows,
    usage_cells,
)
from monitor.reports.summary.data import STATUSES, Summary, to_json_data

FORMATS = ("text", "markdown", "html", "json")
TEXT_WIDTH = 120

# The shared cells live in monitor.reports.summary.cells; they stay importable from here.
__all__ = [
    "FORMATS",
    "SOURCE_COLUMNS",
    "TEXT_WIDTH",
    "TOP_SOURCES",
    "WEEKDAYS",
    "change",
    "count",
    "gist",
    "headline",
    "millis",
    "model_lines",
    "more_line",
    "percent",
    "period_label",
    "render",
    "render_json",
    "render_text",
    "safe",
    "short_stamp",
    "size",
    "source_label",
    "spark",
    "stamp",
    "text_renderables",
    "totals_rows",
    "usage_cells",
]


def render(summary: Summary, fmt: str, *, width: int = TEXT_WIDTH) -> str:
    """Return the summary rendered as `fmt` (text, markdown, html or json); raise ValueError otherwise."""
    if fmt == "text":
        return render_text(summary, width=width)
    if fmt == "markdown":
        from monitor.reports.summary.markdown import render_markdown

        return render_markdown(summary)
    if fmt == "html":
        from monitor.reports.summary.html import render_html

        return render_html(summary)
    if fmt == "json":
        return render_json(summary)
    raise ValueError(f"unknown summary format {fmt!r} (choose from {', '.join(FORMATS)})")


# --- text (rich) ------------------------------------------------------------------------------------------


def _table(title: str, columns: Iterable[tuple[str, str]]) -> Table:
    """A borderless table; each column is (name, "left" | "right" | "fold"): only "fold" columns wrap."""
    table = Table(
        title=title,
        title_justify="left",
        title_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
        padding=(0, 1),
        collapse_padding=True,
    )
    for name, justify in columns:
        wraps = justify == "fold"
        table.add_column(name, justify="left" if wraps else justify, no_wrap=not wraps, overflow="fold")  # type: ignore[arg-type]
    return table


def text_renderables(summary: Summary) -> list[RenderableType]:
    """The rich renderables of the text summary, for printing to a console (colours allowed there)."""
    out: list[RenderableType] = [
        Text(f"Ollama usage summary, {period_label(summary)}", style="bold"),
        Text(headline(summary)),
        Text(""),
    ]
    totals = _table(
        "Totals", [("", "left"), ("this period", "right"), ("previous", "right"), ("change", "right")]
    )
    for row in totals_rows(summary):
        totals.add_row(*row)
    out += [totals, Text("")]

    sources = _table(
        "Sources (unknown first, then by requests)",
        [
            ("source", "fold"),
            ("status", "left"),
            ("requests", "right"),
            ("infer", "right"),
            ("enum", "right"),
            ("mgmt", "right"),
            ("errors", "right"),
            ("p50", "right"),
            ("p95", "right"),
            ("bytes", "right"),
            ("hours", "right"),
            ("first", "right"),
            ("last seen", "right"),
        ],
    )
    for s in summary.sources[:TOP_SOURCES]:
        sources.add_row(
            Text(source_label(s) + (" (new)" if s.new else "")),
            s.status,
            *usage_cells(s),
            s.first_seen.strftime("%m-%d"),
            short_stamp(s.last_seen),
        )
    out.append(sources if summary.sources else Text("No requests in this period."))
    if (more := more_line(summary, cli_hint=True)) is not None:
        out.append(Text(more))
    out.append(Text(""))

    daily = _table(
        "Requests per day (UTC)",
        [("day", "left"), *((k, "right") for k in STATUSES), ("total", "right"), ("", "left")],
    )
    top = max((d.requests for d in summary.daily), default=0)
    for d in summary.daily:
        bar = "█" * (round(d.requests / top * 30) if top else 0)
        daily.add_row(
            d.day.strftime("%a %Y-%m-%d"), *(count(getattr(d, k)) for k in STATUSES), count(d.requests), bar
        )
    out += [daily, Text("")]

    hours = _table(
        "Requests per hour of day (UTC)", [("", "left"), *((f"{h:02d}", "right") for h in range(0, 24, 3))]
    )
    hours.add_row("requests", *(count(sum(summary.hourly[h : h + 3])) for h in range(0, 24, 3)))
    out.append(hours)
    out.append(
        Text("hour  " + "".join(f"{h:<3d}" for h in range(0, 24, 3)) + "\n      " + spark(summary.hourly))
    )
    out.append(Text(""))

    endpoints = _table(
        "Busiest endpoints",
        [
            ("method", "left"),
            ("route", "fold"),
            ("category", "left"),
            ("requests", "right"),
            ("sources", "right"),
            ("errors", "right"),
        ],
    )
    for e in summary.endpoints:
        endpoints.add_row(
            Text(safe(e.method, 10)),
            Text(safe(e.route, 60)),
            e.category,
            count(e.requests),
            count(e.sources),
            count(e.errors),
        )
    out += [endpoints, Text("")]

    new = summary.new_sources
    out.append(Text(f"New sources this period ({len(new)})", style="bold"))
    out.append(
        Text(
            "\n".join(
                f"  {source_label(s)}  {s.status}, {count(s.requests)} requests, first {stamp(s.first_seen)}"
                for s in new[:TOP_SOURCES]
            )
            or "  none"
        )
    )
    if len(new) > TOP_SOURCES:
        out.append(Text(f"  ... and {len(new) - TOP_SOURCES} more"))
    out.append(Text(""))

    alerts = _table(
        f"Alerts and anomalies ({len(summary.alerts)})",
        [("time (UTC)", "left"), ("severity", "left"), ("rule", "left"), ("alert", "fold")],
    )
    for a in summary.alerts:
        alerts.add_row(
            stamp(a.ts),
            Text(safe(a.severity, 10)),
            Text(safe(a.rule, 24)),
            Text(safe(a.title, 100) + "\n" + safe(gist(a.message), 300)),
        )
    out += [alerts if summary.alerts else Text("No alerts in this period."), Text("")]
    out.append(Text("Detector", style="bold"))
    out.append(Text("\n".join("  " + line for line in model_lines(summary))))
    return [Group(*out)]


def render_text(summary: Summary, *, width: int = TEXT_WIDTH) -> str:
    """Return the text summary at a fixed width with no colours or styles (deterministic)."""
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=width,
        color_system=None,
        force_terminal=False,
        no_color=True,
        highlight=False,
        emoji=False,
        markup=False,
        legacy_windows=False,
        soft_wrap=False,
    )
    for item in text_renderables(summary):
        console.print(item)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


# --- JSON -------------------------------------------------------------------------------------------------


def render_json(summary: Summary) -> str:
    """Return the summary as JSON (ASCII, 2-space indent); the schema is in the README."""
    return json.dumps(to_json_data(summary), indent=2, ensure_ascii=True) + "\n"
