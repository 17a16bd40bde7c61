"""Cells and lines every summary rendering shares: figures (counts, sizes, latencies, changes), the
totals rows, the headline, the model lines and the per-source columns.

Imported by `monitor.reports.summary.render` (text, JSON and the dispatch), `monitor.reports.summary.markdown` and
`monitor.reports.summary.html`, so that the renderings never import one another. Text from the logs goes
through `safe` (visible escapes, capped); each rendering adds its own escaping on top.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from monitor.core.sanitize import for_terminal
from monitor.reports.summary.data import SourceUsage, Summary

TOP_SOURCES = 25  # rows of the sources table in text, Markdown and HTML (JSON lists every source)
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_BLOCKS = " ▁▂▃▄▅▆▇█"


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
