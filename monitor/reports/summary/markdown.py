"""The weekly summary as Markdown, for chat services: every log-derived text escaped for Markdown."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from monitor.core.sanitize import neutralise
from monitor.reports.summary.cells import (
    SOURCE_COLUMNS,
    TOP_SOURCES,
    count,
    gist,
    headline,
    model_lines,
    more_line,
    period_label,
    safe,
    stamp,
    totals_rows,
    usage_cells,
)
from monitor.reports.summary.data import STATUSES, Summary

# --- Markdown ---------------------------------------------------------------------------------------------

# Inline metacharacters anywhere; block markers (lists, headings, quotes, numbered lists) only at the start.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>|~#!&])")
# Group 1: the digits of an ordered-list marker ("1." or "1)" then a space); group 2: the punctuation to
# escape, which is that marker's dot/parenthesis, or a leading "-", "+", "=", ">" that would start a list,
# a thematic break ("---"), a setext underline ("===") or a quote.
_MD_LEADING = re.compile(r"^(\d{0,9})([.)](?=\s|$)|(?<=^)[-+=>](?=[\s=-]|$))")


def md(text: object, limit: int = 60, *, own: bool = False) -> str:
    """Log text for a Markdown cell or line: visible escapes, mentions/links defused, metacharacters escaped.

    `own` marks the monitor's own words (the model's file name, say): escaped, but its dotted names
    are left as written.
    """
    shown = safe(text, limit)
    escaped = _MD_SPECIAL.sub(r"\\\1", shown if own else neutralise(shown))
    return _MD_LEADING.sub(r"\1\\\2", escaped)


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]], align: str) -> list[str]:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if a == "r" else ":---" for a in align) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def render_markdown(summary: Summary) -> str:
    """Return the summary as Markdown (GitHub/Mattermost-style pipe tables)."""
    out = ["# Ollama usage summary", "", f"**{period_label(summary)}**", "", headline(summary), ""]
    out += ["## Totals", ""]
    out += _md_table(["", "this period", "previous", "change"], totals_rows(summary), "lrrr")
    out += ["", "## Sources", ""]
    if summary.sources:
        out += _md_table(
            list(SOURCE_COLUMNS),
            (
                [
                    md(s.client_ip, 45)
                    + (f" ({md(s.name, 24)})" if s.name else "")
                    + (" **new**" if s.new else ""),
                    s.status,
                    *usage_cells(s),
                    stamp(s.first_seen),
                    stamp(s.last_seen),
                ]
                for s in summary.sources[:TOP_SOURCES]
            ),
            "llrrrrrrrrrrr",
        )
        if (more := more_line(summary)) is not None:
            out += ["", md(more, 200)]
    else:
        out.append("No requests in this period.")
    out += ["", "## Requests per day (UTC)", ""]
    out += _md_table(
        ["day", *STATUSES, "total"],
        (
            [d.day.strftime("%a %Y-%m-%d"), *(count(getattr(d, k)) for k in STATUSES), count(d.requests)]
            for d in summary.daily
        ),
        "lrrrrr",
    )
    out += ["", "## Requests per hour of day (UTC)", ""]
    out += _md_table(
        [f"{h:02d}" for h in range(0, 24, 3)],
        [[count(sum(summary.hourly[h : h + 3])) for h in range(0, 24, 3)]],
        "rrrrrrrr",
    )
    out += ["", "## Busiest endpoints", ""]
    out += _md_table(
        ["method", "route", "category", "requests", "sources", "errors"],
        (
            [
                md(e.method, 10),
                md(e.route, 60),
                e.category,
                count(e.requests),
                count(e.sources),
                count(e.errors),
            ]
            for e in summary.endpoints
        ),
        "lllrrr",
    )
    new = summary.new_sources
    out += ["", f"## New sources ({len(new)})", ""]
    out += [
        f"- {md(s.client_ip, 45)}: {s.status}, {count(s.requests)} requests, first seen {stamp(s.first_seen)}"
        for s in new[:TOP_SOURCES]
    ] or ["None."]
    if len(new) > TOP_SOURCES:
        out.append(f"- ... and {len(new) - TOP_SOURCES} more")
    out += ["", f"## Alerts and anomalies ({len(summary.alerts)})", ""]
    out += [
        f"- **{stamp(a.ts)}** {md(a.severity, 10)} {md(a.rule, 24)}: {md(a.title, 100)}. {md(gist(a.message), 300)}"
        for a in summary.alerts
    ] or ["No alerts in this period."]
    out += ["", "## Detector", ""]
    out += [md(line, 400, own=True) for line in model_lines(summary)]
    return "\n".join(out).rstrip() + "\n"
