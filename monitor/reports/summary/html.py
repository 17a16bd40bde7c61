"""The weekly summary as one self-contained HTML page with inline SVG charts, for email and browsers.

No JavaScript, no external fonts, images or style sheets: the page carries a Content-Security-Policy
that forbids scripts and every remote load, so even an escaping mistake could not run code or leak
that the mail was opened. Charts are SVG drawn here: requests per day stacked by source status, an
hour-of-day x weekday heatmap, and the top sources' calls by endpoint category. Every log string is
shown with visible escapes for control characters and then `html.escape`d.
"""

from __future__ import annotations

from html import escape

from monitor.core.sanitize import neutralise
from monitor.reports.summary.cells import (
    SOURCE_COLUMNS,
    TOP_SOURCES,
    WEEKDAYS,
    change,
    count,
    headline,
    model_lines,
    more_line,
    percent,
    period_label,
    safe,
    stamp,
    totals_rows,
    usage_cells,
)
from monitor.reports.summary.data import CATEGORIES, STATUSES, Summary

STATUS_COLOURS = {"admin": "#7b3fb8", "known": "#2f6fd6", "approved": "#1f9d6b", "unknown": "#d9412b"}
CATEGORY_COLOURS = {
    "inference": "#2f6fd6",
    "enumeration": "#f08c1a",
    "management": "#c2185b",
    "account": "#7b3fb8",
    "other": "#9aa3ad",
}
SEVERITY_COLOURS = {"critical": "#d9412b", "warning": "#f08c1a", "info": "#2f6fd6"}
# Heatmap scale: white-ish to deep blue.
_HEAT = ((0xEE, 0xF3, 0xFB), (0x9E, 0xC2, 0xEA), (0x2F, 0x6F, 0xD6), (0x0B, 0x2A, 0x6B))
_FONT = "-apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"

_CSS = f"""
body {{ font-family: {_FONT}; color: #1d2430; background: #f4f6f9; margin: 0; padding: 24px; }}
main {{ max-width: 1200px; margin: 0 auto; background: #fff; border-radius: 10px; padding: 28px 32px;
        box-shadow: 0 1px 3px rgba(0,0,0,.08); }}
h1 {{ font-size: 24px; margin: 0 0 4px; }}
h2 {{ font-size: 17px; margin: 30px 0 10px; border-bottom: 1px solid #e4e8ee; padding-bottom: 6px; }}
p.period {{ color: #5b6676; margin: 0 0 14px; }}
p.lead {{ font-size: 15px; line-height: 1.5; }}
.cards {{ display: flex; flex-wrap: wrap; gap: 12px; margin: 18px 0; }}
.card {{ flex: 1 1 110px; border: 1px solid #e4e8ee; border-radius: 8px; padding: 10px 14px; }}
.card .label {{ font-size: 12px; color: #5b6676; text-transform: uppercase; letter-spacing: .04em; }}
.card .value {{ font-size: 24px; font-weight: 600; margin-top: 2px; }}
.card .delta {{ font-size: 12px; color: #5b6676; }}
.card.warn .value {{ color: #d9412b; }}
table {{ border-collapse: collapse; width: 100%; font-size: 13px; }}
th, td {{ padding: 5px 6px; border-bottom: 1px solid #edf0f4; text-align: left; vertical-align: top; }}
th {{ background: #f7f9fb; font-weight: 600; color: #3b4656; white-space: nowrap; }}
td.n, th.n {{ text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }}
td.ip {{ font-family: ui-monospace, 'SFMono-Regular', Menlo, Consolas, monospace; overflow-wrap: anywhere; }}
td.addr {{ font-family: ui-monospace, 'SFMono-Regular', Menlo, Consolas, monospace; }}
.addr code {{ font-family: inherit; white-space: nowrap; }}
.scroll {{ overflow-x: auto; max-width: 100%; }}
td.body {{ min-width: 220px; }}
.badge {{ display: inline-block; padding: 1px 7px; border-radius: 9px; color: #fff; font-size: 11px; }}
.new {{ color: #d9412b; font-weight: 600; font-size: 11px; }}
.charts {{ display: flex; flex-wrap: wrap; gap: 18px; }}
figure {{ margin: 0; max-width: 100%; }}
figure svg {{ display: block; max-width: 100%; height: auto; }}
figcaption {{ font-size: 13px; color: #5b6676; margin-bottom: 6px; }}
svg text {{ font-family: {_FONT}; }}
.muted {{ color: #5b6676; }}
@media (max-width: 700px) {{
  body {{ padding: 8px; }}
  main {{ padding: 16px 14px; }}
}}
"""


def render_html(summary: Summary) -> str:
    """Return the summary as a complete HTML document (UTF-8, no scripts, no external resources)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Ollama usage summary {escape(stamp(summary.since))} UTC</title>",
        f"<style>{_CSS}</style></head><body><main>",
        "<h1>Ollama usage summary</h1>",
        f'<p class="period">{escape(period_label(summary))}</p>',
        f'<p class="lead">{escape(headline(summary))}</p>',
        _cards(summary),
        "<h2>Activity</h2>",
        '<div class="charts">',
        f'<figure id="chart-daily"><figcaption>Requests per day (UTC), by source status</figcaption>{daily_chart(summary)}</figure>',
        f'<figure id="chart-heatmap"><figcaption>Requests by weekday and hour of day (UTC)</figcaption>{heatmap_chart(summary)}</figure>',
        f'<figure id="chart-sources"><figcaption>Sources by calls, per endpoint category (unknown first)</figcaption>{sources_chart(summary)}</figure>',
        "</div>",
        "<h2>Totals</h2>",
        _table(
            ["", "this period", "previous", "change"],
            [[escape(c) for c in row] for row in totals_rows(summary)],
            "lnnn",
        ),
        "<h2>Sources (unknown first)</h2>",
        _sources_table(summary),
        "<h2>Busiest endpoints</h2>",
        _table(
            ["method", "route", "category", "requests", "sources", "errors"],
            [
                [
                    esc(e.method, 10),
                    esc(e.route, 80),
                    _badge(e.category, CATEGORY_COLOURS),
                    count(e.requests),
                    count(e.sources),
                    count(e.errors),
                ]
                for e in summary.endpoints
            ],
            "iilnnn",
        ),
        f"<h2>New sources ({len(summary.new_sources)})</h2>",
        _new_sources(summary),
        f"<h2>Alerts and anomalies ({len(summary.alerts)})</h2>",
        _alerts(summary),
        "<h2>Detector</h2>",
        "".join(f"<p>{escape(line)}</p>" for line in model_lines(summary)),
        f'<p class="muted">Generated {escape(stamp(summary.generated_at))} UTC by ollama-monitor.</p>',
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


# --- page parts -------------------------------------------------------------------------------------------


def esc(text: object, limit: int = 60) -> str:
    """Log text for HTML: control characters made visible, mentions and URLs defused (mail clients turn
    bare URLs into links), then HTML-escaped."""
    return escape(neutralise(safe(text, limit)))


def address(ip: str) -> str:
    """A client address in a table cell: kept on one line (a wrapped address reads as two)."""
    return f"<code>{esc(ip, 45)}</code>"


def _badge(value: str, colours: dict[str, str]) -> str:
    colour = colours.get(value, "#9aa3ad")
    return f'<span class="badge" style="background:{colour}">{esc(value, 20)}</span>'


def _table(header: list[str], rows: list[list[str]], kinds: str) -> str:
    """`kinds` per column: n = number (right), a = client address (never broken inside), i = monospace log
    text (wraps anywhere), b = alert body, l = left. Cells are already escaped. Wide tables scroll
    sideways in their own box instead of widening the page (email clients are about 640 px wide)."""
    cls = {"n": ' class="n"', "a": ' class="addr"', "i": ' class="ip"', "b": ' class="body"', "l": ""}
    head = "".join(
        f"<th{cls[k] if k == 'n' else ''}>{escape(h)}</th>" for h, k in zip(header, kinds, strict=True)
    )
    body = "".join(
        "<tr>" + "".join(f"<td{cls[k]}>{c}</td>" for c, k in zip(row, kinds, strict=True)) + "</tr>"
        for row in rows
    )
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _cards(summary: Summary) -> str:
    t = summary.totals
    unknown = sum(1 for s in summary.sources if s.status == "unknown")
    cards = [
        ("Requests", count(t.requests), change(summary.change("requests")) + " vs previous", False),
        ("Sources", count(t.sources), change(summary.change("sources")) + " vs previous", False),
        ("Unknown", count(unknown), f"{count(len(summary.new_sources))} new this period", unknown > 0),
        ("Inference", count(t.inference), change(summary.change("inference")) + " vs previous", False),
        ("Management", count(t.management), change(summary.change("management")) + " vs previous", False),
        ("Error rate", percent(t.error_rate), f"{count(t.errors)} errors", False),
        (
            "Alerts",
            count(len(summary.alerts)),
            f"{count(summary.model.anomalous_windows)} anomalous windows",
            bool(summary.alerts),
        ),
    ]
    html = "".join(
        f'<div class="card{" warn" if warn else ""}"><div class="label">{escape(label)}</div>'
        f'<div class="value">{escape(value)}</div><div class="delta">{escape(delta)}</div></div>'
        for label, value, delta, warn in cards
    )
    return f'<div class="cards">{html}</div>'


def _sources_table(summary: Summary) -> str:
    if not summary.sources:
        return "<p>No requests in this period.</p>"
    rows = []
    for s in summary.sources[:TOP_SOURCES]:
        label = address(s.client_ip)
        if s.name:
            label += f' <span class="muted">({esc(s.name, 30)})</span>'
        if s.new:
            label += ' <span class="new">NEW</span>'
        rows.append(
            [
                label,
                _badge(s.status, STATUS_COLOURS),
                *usage_cells(s),
                escape(stamp(s.first_seen)),
                escape(stamp(s.last_seen)),
            ]
        )
    table = _table(
        list(SOURCE_COLUMNS),
        rows,
        "alnnnnnnnnnnn",
    )
    more = more_line(summary)
    return table + (f'<p class="muted">{escape(more)}</p>' if more else "")


def _new_sources(summary: Summary) -> str:
    new = summary.new_sources
    if not new:
        return "<p>None.</p>"
    rows = [
        [
            address(s.client_ip),
            _badge(s.status, STATUS_COLOURS),
            count(s.requests),
            count(s.inference),
            count(s.management),
            escape(stamp(s.first_seen)),
        ]
        for s in new[:TOP_SOURCES]
    ]
    return _table(["source", "status", "requests", "inference", "mgmt", "first seen"], rows, "alnnnn")


def _alerts(summary: Summary) -> str:
    if not summary.alerts:
        return "<p>No alerts in this period.</p>"
    rows = [
        [
            escape(stamp(a.ts)),
            _badge(a.severity, SEVERITY_COLOURS),
            esc(a.rule, 24),
            f"<strong>{esc(a.title, 120)}</strong><br>{alert_body(a.message)}",
        ]
        for a in summary.alerts
    ]
    return _table(["time (UTC)", "severity", "rule", "alert"], rows, "lllb")


def alert_body(message: str) -> str:
    """An alert's whole message, one line of the page per line of the message (not a literal `\\n`)."""
    lines = str(message).splitlines() or [""]
    # No cut: a visible escape is at most 10 characters for one.
    return "<br>".join(esc(line, max(1, 10 * len(line))) for line in lines)


# --- charts -----------------------------------------------------------------------------------------------


def _nice_max(value: int) -> tuple[int, int]:
    """Return (axis maximum, tick step) for a value: a step of 1, 2 or 5 times a power of ten, and the
    smallest multiple of it at or above the value, with at most five steps."""
    if value <= 0:
        return 4, 1
    power = 1
    while True:
        for m in (1, 2, 5):
            step = power * m
            steps = -(-value // step)
            if steps <= 5:
                return steps * step, step
        power *= 10


def _svg(width: int, height: int, body: list[str], label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(label)}">' + "".join(body) + "</svg>"
    )


def _legend(items: list[tuple[str, str]], x: int, y: int) -> list[str]:
    out = []
    for name, colour in items:
        out.append(
            f'<rect x="{x}" y="{y - 9}" width="10" height="10" rx="2" fill="{colour}"/>'
            f'<text x="{x + 14}" y="{y}" font-size="11" fill="#3b4656">{escape(name)}</text>'
        )
        x += 22 + 7 * len(name)
    return out


def daily_chart(summary: Summary) -> str:
    """Stacked bars: requests per UTC day, one colour per source status."""
    days = summary.daily
    width, height, left, top, bottom = 470, 250, 46, 28, 34
    plot_w, plot_h = width - left - 12, height - top - bottom
    peak, step = _nice_max(max((d.requests for d in days), default=0))
    body = _legend([(k, STATUS_COLOURS[k]) for k in STATUSES], left, 14)
    for tick in range(0, peak + 1, step):
        y = top + plot_h - tick / peak * plot_h
        body.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e8ee"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="10" text-anchor="end" fill="#5b6676">{_short(tick)}</text>'
        )
    slot = plot_w / max(1, len(days))
    bar = max(4.0, slot * 0.68)
    for i, d in enumerate(days):
        x = left + i * slot + (slot - bar) / 2
        y = float(top + plot_h)
        for status in STATUSES:
            value = getattr(d, status)
            if value:
                h = value / peak * plot_h
                y -= h
                body.append(
                    f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{STATUS_COLOURS[status]}">'
                    f"<title>{d.day.isoformat()} {status}: {value:,}</title></rect>"
                )
        label = d.day.strftime("%a %d") if len(days) <= 14 else d.day.strftime("%d")
        body.append(
            f'<text x="{x + bar / 2:.1f}" y="{top + plot_h + 16}" font-size="10" text-anchor="middle" '
            f'fill="#5b6676">{label}</text>'
        )
    body.append(
        f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#8a94a3"/>'
    )
    return _svg(width, height, body, "Requests per day by source status")


def _heat_colour(value: int, peak: int) -> str:
    if value == 0 or peak == 0:
        return "#f7f9fb"
    x = (value / peak) ** 0.5 * (len(_HEAT) - 1)  # square root: quiet hours stay visible next to the peak
    i = min(int(x), len(_HEAT) - 2)
    f = x - i
    a, b = _HEAT[i], _HEAT[i + 1]
    return "#" + "".join(f"{round(a[k] + (b[k] - a[k]) * f):02x}" for k in range(3))


def heatmap_chart(summary: Summary) -> str:
    """A 7 x 24 grid: rows are weekdays (Monday first), columns UTC hours, darker is busier."""
    cell, gap, left, top = 18, 2, 34, 40
    width, height = left + 24 * (cell + gap) + 8, top + 7 * (cell + gap) + 8
    peak = max((v for row in summary.heatmap for v in row), default=0)
    body = []
    for h in range(0, 24, 3):
        body.append(
            f'<text x="{left + h * (cell + gap) + cell / 2:.1f}" y="{top - 7}" font-size="10" text-anchor="middle" '
            f'fill="#5b6676">{h:02d}</text>'
        )
    for d, row in enumerate(summary.heatmap):
        y = top + d * (cell + gap)
        body.append(
            f'<text x="{left - 6}" y="{y + cell - 5}" font-size="10" text-anchor="end" fill="#5b6676">{WEEKDAYS[d]}</text>'
        )
        for h, value in enumerate(row):
            body.append(
                f'<rect x="{left + h * (cell + gap)}" y="{y}" width="{cell}" height="{cell}" rx="3" '
                f'fill="{_heat_colour(value, peak)}"><title>{WEEKDAYS[d]} {h:02d}:00: {value:,}</title></rect>'
            )
    legend_y = 14
    body.append(f'<text x="{left}" y="{legend_y}" font-size="10" fill="#5b6676">fewer</text>')
    for i, v in enumerate((0.02, 0.1, 0.3, 0.6, 1.0)):
        body.append(
            f'<rect x="{left + 34 + i * 16}" y="{legend_y - 9}" width="13" height="11" rx="2" '
            f'fill="{_heat_colour(max(1, round(v * 1000)), 1000)}"/>'
        )
    body.append(
        f'<text x="{left + 34 + 5 * 16 + 4}" y="{legend_y}" font-size="10" fill="#5b6676">more (peak {peak:,}/h)</text>'
    )
    return _svg(width, height, body, "Requests by weekday and hour of day")


def sources_chart(summary: Summary, top: int = 10) -> str:
    """Horizontal stacked bars for the first sources of the table (unknown ones first): calls per endpoint
    category. 560 px wide, so it fits an email at 640 px unscaled."""
    sources = summary.sources[:top]
    row_h, left, top_pad = 22, 210, 30
    width = 560
    height = top_pad + max(1, len(sources)) * row_h + 12
    plot_w = width - left - 60
    peak = max((s.requests for s in sources), default=0) or 1
    body = _legend([(c, CATEGORY_COLOURS[c]) for c in CATEGORIES], 20, 14)
    for i, s in enumerate(sources):
        y = top_pad + i * row_h
        label = safe(s.client_ip, 28) + (f" ({safe(s.name, 14)})" if s.name else "")
        body.append(
            f'<text x="{left - 192}" y="{y + 14}" font-size="11" fill="#1d2430">{escape(neutralise(label))}</text>'
        )
        x = float(left)
        for c in CATEGORIES:
            value = getattr(s, c)
            if value:
                w = value / peak * plot_w
                body.append(
                    f'<rect x="{x:.1f}" y="{y + 3}" width="{max(w, 1.0):.1f}" height="{row_h - 7}" '
                    f'fill="{CATEGORY_COLOURS[c]}"><title>{esc(s.client_ip, 45)} {c}: {value:,}</title></rect>'
                )
                x += w
        body.append(f'<text x="{x + 6:.1f}" y="{y + 14}" font-size="11" fill="#5b6676">{s.requests:,}</text>')
        body.append(
            f'<circle cx="{left - 202}" cy="{y + 10}" r="4" fill="{STATUS_COLOURS.get(s.status, "#9aa3ad")}">'
            f"<title>{escape(s.status)}</title></circle>"
        )
    if not sources:
        body.append(
            f'<text x="{left}" y="{top_pad + 14}" font-size="12" fill="#5b6676">No requests in this period.</text>'
        )
    return _svg(width, height, body, "Top sources by calls per endpoint category")


def _short(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:g}M"
    if n >= 1000:
        return f"{n / 1000:g}k"
    return str(n)
