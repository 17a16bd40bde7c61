"""Render a `monitor.summary.Summary` as terminal text (rich tables), Markdown, HTML or JSON.

Every string that came from a log (addresses, paths, names derived from them, alert texts that quote
them) is attacker-controlled. Each medium gets its own treatment:
- text: control characters shown as visible escapes (`sanitize.for_terminal`), put in rich `Text`
  objects so `[bold]`-style markup in a path is printed, not interpreted;
- Markdown: the same, then mentions and links defused (`sanitize.neutralise`) and every Markdown
  metacharacter backslash-escaped (pipes too, so a path cannot break a table);
- HTML (monitor.summary_html): visible escapes, then `html.escape`;
- JSON: the raw values; `json.dumps` escapes them (ASCII only).

Rendering is deterministic for a given Summary: fixed width, no colours, no clock reads.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Sequence
from datetime import datetime

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from monitor.sanitize import for_terminal
from monitor.summary_data import STATUSES, SourceUsage, Summary, to_json_data

FORMATS = ("text", "markdown", "html", "json")
TOP_SOURCES = 25  # rows of the sources table in text, Markdown and HTML (JSON lists every source)
TEXT_WIDTH = 120
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_BLOCKS = " ▁▂▃▄▅▆▇█"


def render(summary: Summary, fmt: str, *, width: int = TEXT_WIDTH) -> str:
    """Return the summary rendered as `fmt` (text, markdown, html or json); raise ValueError otherwise."""
    if fmt == "text":
        return render_text(summary, width=width)
    if fmt == "markdown":
        from monitor.summary_markdown import render_markdown

        return render_markdown(summary)
    if fmt == "html":
        from monitor.summary_html import render_html

        return render_html(summary)
    if fmt == "json":
        return render_json(summary)
    raise ValueError(f"unknown summary format {fmt!r} (choose from {', '.join(FORMATS)})")


# --- shared formatting ----------------------------------------------------------------------------------


# The per-source table's columns, shared by the Markdown and HTML renderings.
SOURCE_COLUMNS = (
    "source",
    "status",
    "requests",
    "inference",
    "enum",
    "mgmt",
    "errors",
    "p50",
    "p95",
    "bytes",
    "hours",
    "first seen",
    "last seen",
)


def usage_cells(s: SourceUsage) -> list[str]:
    """The per-source usage figures, in SOURCE_COLUMNS order from `requests` to `hours`."""
    return [
        count(s.requests),
        count(s.inference),
        count(s.enumeration),
        count(s.management),
        percent(s.error_rate),
        millis(s.latency_p50_ms),
        millis(s.latency_p95_ms),
        size(s.bytes_sent),
        str(s.active_hours),
    ]


def gist(message: str) -> str:
    """The part of an alert message worth a table cell: its `Why:` line, else its first line."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    for line in lines:
        if line.startswith("Why:"):
            return line[4:].strip()
    return lines[0] if lines else ""


def safe(text: object, limit: int = 60) -> str:
    """Log text made visible and harmless for a terminal or an HTML page (before html.escape), capped."""
    return for_terminal("" if text is None else text, max(1, limit))


def count(n: int) -> str:
    return f"{n:,}"


def percent(x: float) -> str:
    return f"{x * 100:.1f}%"


def change(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.1f}%"


def size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"  # pragma: no cover


def millis(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms < 1:
        return f"{ms:.2f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{ms / 1000:.1f} s"


def stamp(ts: datetime | None, with_date: bool = True) -> str:
    if ts is None:
        return "-"
    return ts.strftime("%Y-%m-%d %H:%M" if with_date else "%H:%M")


def short_stamp(ts: datetime) -> str:
    return ts.strftime("%m-%d %H:%M")


def period_label(summary: Summary) -> str:
    days = summary.days
    span = (
        f"{days:.0f} day{'s' if round(days) != 1 else ''}"
        if abs(days - round(days)) < 1e-9
        else f"{days:.1f} days"
    )
    return f"{stamp(summary.since)} to {stamp(summary.until)} UTC ({span})"


def source_label(source: SourceUsage, limit: int = 40) -> str:
    label = safe(source.client_ip, 45)
    if source.name:
        label += f" ({safe(source.name, 24)})"
    return label if len(label) <= limit + 30 else label[: limit + 29] + "…"


def spark(values: Sequence[int]) -> str:
    """One block character per value, scaled to the largest (a zero stays blank)."""
    top = max(values, default=0)
    if top == 0:
        return " " * len(values)
    return "".join(_BLOCKS[0] if v == 0 else _BLOCKS[max(1, round(v / top * 8))] for v in values)


def totals_rows(summary: Summary) -> list[tuple[str, str, str, str]]:
    """(metric, this period, previous period, change) rows shared by every format."""
    t, p = summary.totals, summary.previous
    rows = [
        ("Requests", count(t.requests), count(p.requests), change(summary.change("requests"))),
        ("Sources", count(t.sources), count(p.sources), change(summary.change("sources"))),
        ("Inference calls", count(t.inference), count(p.inference), change(summary.change("inference"))),
        (
            "Enumeration calls",
            count(t.enumeration),
            count(p.enumeration),
            change(summary.change("enumeration")),
        ),
        ("Management calls", count(t.management), count(p.management), change(summary.change("management"))),
        (
            "Errors (4xx/5xx)",
            f"{count(t.errors)} ({percent(t.error_rate)})",
            f"{count(p.errors)} ({percent(p.error_rate)})",
            change(summary.change("errors")),
        ),
        # Ollama's own log carries no sizes: say "-" rather than "0 B" when no source reported any.
        (
            "Bytes sent",
            *(
                (size(t.bytes_sent), size(p.bytes_sent), change(summary.change("bytes_sent")))
                if any(src.bytes_sent is not None for src in summary.sources)
                else ("-", "-", "n/a")
            ),
        ),
    ]
    return rows


def headline(summary: Summary) -> str:
    """One sentence: the numbers an admin wants first."""
    t = summary.totals
    unknown = sum(1 for s in summary.sources if s.status == "unknown")
    return (
        f"{count(t.requests)} requests ({change(summary.change('requests'))} on the previous period) from "
        f"{count(t.sources)} sources, {count(unknown)} unknown, {count(len(summary.new_sources))} new; "
        f"{count(t.inference)} inference and {count(t.management)} management calls; "
        f"{count(len(summary.alerts))} alerts."
    )


def model_lines(summary: Summary) -> list[str]:
    m = summary.model
    if not m.present:
        lines = ["No trained model yet (the detector trains once it has enough history)."]
    else:
        lines = [f"Model {safe(m.file, 80)}, saved {stamp(m.updated_at)} UTC."]
        if m.problem:
            lines.append(f"Problem: {m.problem}.")
        meta = m.metadata
        if "rows" in meta or "threshold" in meta:
            trained = safe(meta.get("trained_at", "?"), 40)[:16].replace("T", " ")
            threshold = meta.get("threshold")
            shown = f"{threshold:.4f}" if isinstance(threshold, int | float) else safe(threshold, 20)
            lines.append(
                f"Trained {trained} UTC on {count(int(meta.get('rows') or meta.get('windows') or 0))} windows of "
                f"{safe(meta.get('window_minutes', '?'), 8)} minutes; score threshold {shown}."
            )
    lines.append(
        f"Windows scored this period: {count(m.scored_windows)}, anomalous: {count(m.anomalous_windows)}."
    )
    return lines


def more_line(summary: Summary, *, cli_hint: bool = False) -> str | None:
    """The line under a sources table cut at TOP_SOURCES: how many are left out, and how many of them are
    unknown. `cli_hint` (the terminal only: not in a mail or a chat message) says how to see them all."""
    hidden = summary.sources[TOP_SOURCES:]
    if not hidden:
        return None
    unknown = sum(1 for s in hidden if s.status == "unknown")
    line = f"... and {count(len(hidden))} more sources" + (
        f", {count(unknown)} of them unknown" if unknown else ""
    )
    return line + (" (--format json lists them all)" if cli_hint else "")


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
