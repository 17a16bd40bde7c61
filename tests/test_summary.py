"""The weekly summary: golden files, figures checked against an independent count, hostile text, CLI.

Golden files live in tests/golden/summary.{txt,md,json}; regenerate them with UPDATE_GOLDEN=1 after a
deliberate change, and read the diff.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from html import escape as html_escape
from pathlib import Path

import pytest

from monitor.core.endpoints import classify, normalise
from monitor.core.errors import MonitorError
from monitor.core.sanitize import neutralise
from monitor.detect.known import KnownSources
from monitor.reports.summary import build as summary
from monitor.reports.summary.render import render
from monitor.service import simulate
from monitor.store import Store
from tests.conftest import assert_no_traceback, isolated_env, write_config
from tests.test_summary_week import (
    APPROVED_IP,
    HOSTILE_IP,
    NOW,
    UNTIL,
    WEEK,
    Week,
    build_week,
)

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden"


@pytest.fixture(scope="session")
def summary_week(tmp_path_factory: pytest.TempPathFactory) -> Week:
    return build_week(tmp_path_factory)


@pytest.fixture(scope="module")
def week_summary(summary_week: Week) -> summary.Summary:
    with Store.open(summary_week.db_url) as store:
        return summary.build(store, summary_week.settings, WEEK, UNTIL, now=NOW)


@pytest.fixture(scope="module")
def week_rows(summary_week: Week) -> list[dict[str, object]]:
    with Store.open(summary_week.db_url) as store:
        return list(store.iter_requests(WEEK, UNTIL))


@pytest.mark.parametrize(("fmt", "suffix"), [("text", "txt"), ("markdown", "md"), ("json", "json")])
def test_golden(week_summary: summary.Summary, fmt: str, suffix: str) -> None:
    rendered = render(week_summary, fmt)
    path = GOLDEN / f"summary.{suffix}"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(rendered, encoding="utf-8", newline="\n")
    assert path.exists(), f"no golden file {path}; run with UPDATE_GOLDEN=1 to create it"
    assert rendered == path.read_text(encoding="utf-8"), (
        f"{fmt} differs from {path} (UPDATE_GOLDEN=1 to accept)"
    )


RENDER_IN_A_FRESH_PROCESS = """
import json, sys
from pathlib import Path
from monitor.reports.summary import build as summary
from monitor.store import Store
from monitor.reports.summary.render import render
from tests.test_summary_week import NOW, UNTIL, WEEK, settings_for

url, model_dir = sys.argv[1:]
with Store.open(url) as store:
    data = summary.build(store, settings_for(url, Path(model_dir)), WEEK, UNTIL, now=NOW)
print(json.dumps({fmt: render(data, fmt) for fmt in ("text", "markdown", "html", "json")}))
"""


def test_rendering_is_the_same_in_separate_processes(
    summary_week: Week, week_summary: summary.Summary, tmp_path: Path
) -> None:
    """Build and render the week in two fresh interpreters with different string-hash seeds (so set
    and dict orders that depend on hashing differ) and in this one: every format, HTML included
    (which has no golden file), is byte-identical."""
    renders = []
    for seed in ("1", "2"):
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                RENDER_IN_A_FRESH_PROCESS,
                summary_week.db_url,
                str(summary_week.model_dir),
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=isolated_env(tmp_path, PYTHONHASHSEED=seed),
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        renders.append(json.loads(proc.stdout))
    here = {fmt: render(week_summary, fmt) for fmt in ("text", "markdown", "html", "json")}
    for fmt, text in here.items():
        assert renders[0][fmt] == renders[1][fmt], f"{fmt} differs between two processes"
        assert renders[0][fmt] == text, f"{fmt} differs between a fresh process and this one"


def test_figures_match_an_independent_count(
    week_summary: summary.Summary, week_rows: list[dict[str, object]], summary_week: Week
) -> None:
    """Recount the week row by row in plain Python and compare with the summary the database aggregated."""
    _recount(week_summary, week_rows)
    assert week_summary.totals.requests > 30_000

    # The previous week, aggregated by the database, against a recount of its rows.
    s = week_summary
    with Store.open(summary_week.db_url) as store:
        before = list(store.iter_requests(WEEK - timedelta(days=7), WEEK))
    assert s.previous.requests == len(before)
    assert s.previous.sources == len({r["client_ip"] for r in before})
    assert s.previous.management == sum(
        classify(r["method"], r["path"]).value == "management" for r in before
    )


@pytest.mark.parametrize(
    ("since", "until"),
    [
        (WEEK + timedelta(hours=5, minutes=13, seconds=7), UNTIL - timedelta(hours=2, microseconds=3)),
        (WEEK + timedelta(days=2, hours=3), WEEK + timedelta(days=2, hours=9, minutes=30)),  # within a day
        (WEEK - timedelta(days=3, hours=1), WEEK + timedelta(days=4, minutes=1)),  # across the two weeks
    ],
)
def test_unaligned_periods_match_an_independent_count(
    summary_week: Week, since: datetime, until: datetime
) -> None:
    """A period that starts and ends inside a day: its whole days come from the rollups, its edges from
    the rows; the figures match a recount of the period's rows all the same."""
    with Store.open(summary_week.db_url) as store:
        result = summary.build(store, summary_week.settings, since, until, now=NOW)
        rows = list(store.iter_requests(since, until))
    assert rows and result.totals.requests == len(rows)
    _recount(result, rows)


def _recount(s: summary.Summary, week_rows: list[dict[str, object]]) -> None:
    """Check every per-source, per-day, per-hour and per-endpoint figure of `s` against its rows."""
    per_ip: dict[str, Counter[str]] = defaultdict(Counter)
    latencies: dict[str, list[float]] = defaultdict(list)
    hours: dict[str, set[datetime]] = defaultdict(set)
    days: Counter[date] = Counter()
    heat: Counter[tuple[int, int]] = Counter()
    for row in week_rows:
        ip = str(row["client_ip"])
        ts = row["ts"]
        assert isinstance(ts, datetime)
        c = per_ip[ip]
        c["requests"] += 1
        c[classify(row["method"], row["path"]).value] += 1
        status = int(row["status"])  # type: ignore[call-overload]
        c["errors"] += status >= 400
        c["bytes"] += int(row["bytes_sent"])  # type: ignore[call-overload]
        latencies[ip].append(float(row["latency_ms"]))  # type: ignore[arg-type]
        hours[ip].add(ts.replace(minute=0, second=0, microsecond=0))
        days[ts.date()] += 1
        heat[(ts.weekday(), ts.hour)] += 1

    assert s.totals.requests == len(week_rows)
    assert s.totals.sources == len(per_ip)
    assert s.totals.inference == sum(c["inference"] for c in per_ip.values())
    assert s.totals.errors == sum(c["errors"] for c in per_ip.values())
    order = [(src.status != "unknown", -src.requests) for src in s.sources]  # unknown first, then busiest
    assert order == sorted(order)
    for src in s.sources:
        c = per_ip[src.client_ip]
        assert (src.requests, src.inference, src.enumeration, src.management, src.bytes_sent) == (
            c["requests"],
            c["inference"],
            c["enumeration"],
            c["management"],
            c["bytes"],
        ), src.client_ip
        assert src.errors_4xx + src.errors_5xx == c["errors"]
        assert src.active_hours == len(hours[src.client_ip])
        assert src.latency_p50_ms == pytest.approx(statistics.median(latencies[src.client_ip]), abs=1e-3)
        ranked = sorted(latencies[src.client_ip])
        at = 0.95 * (len(ranked) - 1)
        low = ranked[int(at)]
        p95 = low + (ranked[min(int(at) + 1, len(ranked) - 1)] - low) * (at % 1)
        assert src.latency_p95_ms == pytest.approx(p95, abs=1e-3)
        assert src.last_seen == max(r["ts"] for r in week_rows if r["client_ip"] == src.client_ip)  # type: ignore[type-var]
    first_day = s.since.date()
    assert [d.day for d in s.daily] == [first_day + timedelta(days=i) for i in range(len(s.daily))]
    assert {d.day: d.requests for d in s.daily} == {d.day: days[d.day] for d in s.daily}
    assert sum(d.requests for d in s.daily) == len(week_rows)
    assert s.heatmap == [[heat[(d, h)] for h in range(24)] for d in range(7)]
    assert s.hourly == [sum(heat[(d, h)] for d in range(7)) for h in range(24)]

    # Endpoints: (method, route) with requests, distinct sources and errors; the busiest first.
    route_requests: Counter[tuple[str, str]] = Counter()
    route_errors: Counter[tuple[str, str]] = Counter()
    route_clients: dict[tuple[str, str], set[str]] = defaultdict(set)
    for row in week_rows:
        key = (str(row["method"] or "-"), normalise(str(row["path"] or "")) or "-")
        route_requests[key] += 1
        route_errors[key] += int(row["status"]) >= 400  # type: ignore[call-overload]
        route_clients[key].add(str(row["client_ip"]))
    busiest = sorted(route_requests.values(), reverse=True)[: len(s.endpoints)]
    assert [e.requests for e in s.endpoints] == busiest
    for e in s.endpoints:
        key = (e.method, e.route)
        assert (e.requests, e.sources, e.errors) == (
            route_requests[key],
            len(route_clients[key]),
            route_errors[key],
        ), key


def test_statuses_names_and_new_sources(week_summary: summary.Summary) -> None:
    by_ip = {s.client_ip: s for s in week_summary.sources}
    assert by_ip[simulate.ADMIN_IP].status == "admin"
    assert by_ip[simulate.ADMIN_IP].name == "admin-workstation"
    assert by_ip[simulate.WEBUI_IP].status == "known" and by_ip[simulate.WEBUI_IP].name == "open-webui"
    assert by_ip[APPROVED_IP].status == "approved"
    assert by_ip[HOSTILE_IP].status == "unknown"
    new = {s.client_ip for s in week_summary.new_sources}
    # Seen for the first time this week: the scanners of week two; not the office, not last week's recon.
    assert {HOSTILE_IP, simulate.IPV6_IP, simulate.DRIP_IP, "45.83.0.10"} <= new
    assert simulate.WEBUI_IP not in new and simulate.RECON_IP not in by_ip
    assert by_ip[simulate.WEBUI_IP].first_seen < WEEK <= by_ip[HOSTILE_IP].first_seen


def test_alerts_and_model_state(week_summary: summary.Summary) -> None:
    rules = [a.rule for a in week_summary.alerts]
    assert rules == [
        "anomaly",
        "unknown-source",
        "scanner-probe",
        "unknown-source",
    ]  # oldest first, week only
    assert week_summary.alerts[2].details == {"probes": 400}
    model = week_summary.model
    assert model.present and model.file == "detector-2026-03-08.json"  # the newest of two
    assert model.metadata["windows"] == 4210 and "features" not in model.metadata


def test_unknown_sources_come_first_in_every_rendering(week_summary: summary.Summary) -> None:
    """Regression: sources were sorted by requests alone, so a quiet unknown source sat below the 25 busy
    known ones (out of every table, out of the chart) and only `--format json` listed it."""
    statuses = [s.status for s in week_summary.sources]
    unknown = [s.client_ip for s in week_summary.sources if s.status == "unknown"]
    assert 0 < len(unknown) < len(statuses)
    assert statuses == sorted(statuses, key=lambda st: st != "unknown")  # the data's own order
    data = json.loads(render(week_summary, "json"))
    assert [s["status"] for s in data["sources"]] == statuses
    first = week_summary.sources[0]
    assert first.status == "unknown"
    # The first row of each sources table is that unknown source.
    text = render(week_summary, "text").split("Sources (", 1)[1]
    first_row = text.splitlines()[3]
    assert first_row.startswith(first.client_ip) and " unknown " in first_row, first_row
    markdown = render(week_summary, "markdown").split("## Sources", 1)[1]
    assert markdown.splitlines()[4].startswith(f"| {first.client_ip}"), markdown[:600]
    html = render(week_summary, "html")
    table = html.split("<h2>Sources", 1)[1].split("</table>", 1)[0]
    row = table.split("<tbody><tr>", 1)[1].split("</tr>", 1)[0]
    assert first.client_ip in row and ">unknown</span>" in row, row
    chart = html.split('id="chart-sources"', 1)[1].split("</svg>", 1)[0]
    assert f">{first.client_ip}" in chart
    digest_ips = [s.client_ip for s in week_summary.sources[:5]]
    assert digest_ips[0] in unknown
    # A hint to a command line has no place in a mail or a chat message; the terminal keeps it.
    assert "--format json" not in html and "--format json" not in render(week_summary, "markdown")
    if len(statuses) > 25:
        assert "--format json lists them all" in render(week_summary, "text")


def test_html_shows_whole_alert_bodies_line_by_line(week_summary: summary.Summary) -> None:
    """Regression: the HTML printed each alert's newlines as a literal `\\n` and cut the body at 400
    characters, losing the alert's `Why:` and `Next:` advice."""
    from tests.test_summary_week import WAVE_MESSAGE

    assert "\n" in WAVE_MESSAGE and len(WAVE_MESSAGE) > 400
    html = render(week_summary, "html")
    alerts = html.split("<h2>Alerts and anomalies", 1)[1].split("</table>", 1)[0]
    assert "\\n" not in alerts
    shown = [html_escape(neutralise(line)) for line in WAVE_MESSAGE.splitlines()]
    assert "<br>".join(shown) in alerts  # every line, whole, one after the other


def test_json_schema(week_summary: summary.Summary) -> None:
    data = json.loads(render(week_summary, "json"))
    assert data["schema_version"] == 1
    assert data["period"] == {"since": "2026-03-09T00:00:00Z", "until": "2026-03-16T00:00:00Z", "days": 7}
    for key in (
        "totals",
        "previous",
        "change_percent",
        "sources",
        "new_sources",
        "daily",
        "hourly",
        "heatmap",
        "endpoints",
        "alerts",
        "model",
    ):
        assert key in data
    first = data["sources"][0]
    assert {"client_ip", "status", "requests", "name", "inference", "first_seen", "new"} <= set(first)
    assert sum(s["requests"] for s in data["sources"]) == data["totals"]["requests"]
    assert len(data["heatmap"]["values"]) == 7 and all(len(r) == 24 for r in data["heatmap"]["values"])
    assert data["totals"]["new_sources"] == len(data["new_sources"])


def test_hostile_text_is_neutralised(week_summary: summary.Summary) -> None:
    text = render(week_summary, "text")
    markdown = render(week_summary, "markdown")
    html = render(week_summary, "html")
    raw = render(week_summary, "json")
    for out in (text, markdown, html):
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "\\x1b[2J" in text  # shown, not obeyed
    assert "<script>" not in html and "‹script›alert(1)" in html
    assert "http://evil" not in html and "hxxp://evil[.]example" in html  # mail clients would linkify it
    assert "<!channel>" not in markdown and "@everyone" not in markdown
    assert "](http" not in markdown and "|evil|" not in markdown  # no live link, no broken table
    # Every table row of the Markdown has the same number of cells as its header.
    for block in markdown.split("\n\n"):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        if rows:
            cells = {len(line.replace("\\|", "").split("|")) for line in rows}
            assert len(cells) == 1, block
    assert "\\u001b" in raw and "\x1b" not in raw  # JSON keeps the value, escaped
    assert json.loads(raw)["endpoints"]  # still valid JSON
    routes = [e["route"] for e in json.loads(raw)["endpoints"]]
    assert any("<script>alert(1)</script>" in r for r in routes)  # the data itself is not altered


def test_empty_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    from tests.test_summary_week import settings_for

    with Store.open(url) as store:
        result = summary.build(store, settings_for(url, tmp_path / "none"), WEEK, UNTIL, now=NOW)
    assert result.totals.requests == 0 and result.sources == [] and len(result.daily) == 7
    assert not result.model.present
    for fmt in ("text", "markdown", "html", "json"):
        assert "No requests" in render(result, fmt) or fmt == "json"
    assert json.loads(render(result, "json"))["sources"] == []


def test_model_state_tolerates_bad_metadata(tmp_path: Path) -> None:
    assert not summary.model_state(tmp_path / "missing").present
    (tmp_path / "m.json").write_text("{not json", encoding="utf-8")
    state = summary.model_state(tmp_path)
    assert state.present and state.problem and "unreadable" in state.problem
    (tmp_path / "m.json").write_text("[1, 2]", encoding="utf-8")
    assert summary.model_state(tmp_path).problem == "metadata is not a JSON object"


def test_period() -> None:
    assert summary.period(7, date(2026, 3, 9)) == (WEEK, UNTIL)
    now = datetime(2026, 3, 16, 0, 5, tzinfo=UTC)
    assert summary.period(7, now=now) == (now - timedelta(days=7), now)
    with pytest.raises(MonitorError):
        summary.period(0)
    monday = date(2026, 3, 16)
    assert summary.parse_since("-7d", monday) == date(2026, 3, 9)
    assert summary.parse_since("2026-03-09", monday) == date(2026, 3, 9)
    for bad in ("yesterday", "-7", "2026-13-01", "-xd"):
        with pytest.raises(MonitorError, match="--since"):
            summary.parse_since(bad, monday)


def test_known_sources_agree_with_simulator() -> None:
    known = KnownSources(simulate.known_settings())
    assert known.status(simulate.ADMIN_IP).value == "admin"


# --- the command line --------------------------------------------------------------------------------------


def _run(tmp_path: Path, week: Week, *args: str) -> subprocess.CompletedProcess[str]:
    db = week.db_url.removeprefix("sqlite:///")
    known = simulate.known_settings()
    extra = (
        f"[known]\nallow = {json.dumps(known.allow)}\nadmins = {json.dumps(known.admins)}\n"
        f"[known.names]\n"
        + "".join(f'"{k}" = "{v}"\n' for k, v in known.names.items())
        + f'[detector]\nmodel_dir = "{week.model_dir}"\n'
    )
    config = write_config(tmp_path / "monitor.toml", Path(db), extra)
    return subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(config), "summary", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=isolated_env(tmp_path, PYTHONPATH=str(REPO)),
    )


def test_cli_json_and_output_file(tmp_path: Path, summary_week: Week, week_summary: summary.Summary) -> None:
    proc = _run(tmp_path, summary_week, "--since", "2026-03-09", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["totals"]["requests"] == week_summary.totals.requests
    assert [s["client_ip"] for s in data["sources"]] == [s.client_ip for s in week_summary.sources]

    out = tmp_path / "week.html"
    proc = _run(tmp_path, summary_week, "--since", "2026-03-09", "--days", "7", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 3
    assert proc.stdout == ""


def test_cli_text_and_bad_input(tmp_path: Path, summary_week: Week) -> None:
    proc = _run(tmp_path, summary_week, "--since", "2026-03-09")
    assert proc.returncode == 0, proc.stderr
    assert (
        "Ollama usage summary" in proc.stdout
        and "(--format json lists them all)" in proc.stdout  # the terminal keeps the hint
        and "\x1b[2J" not in proc.stdout
    )
    bad = _run(tmp_path, summary_week, "--days", "0")
    assert bad.returncode == 2 and "--days" in bad.stderr
    assert_no_traceback(bad)
    missing_dir = _run(tmp_path, summary_week, "--output", str(tmp_path / "nope" / "x.md"))
    assert missing_dir.returncode == 1 and "does not exist" in missing_dir.stderr
    assert_no_traceback(missing_dir)
    no_targets = _run(tmp_path, summary_week, "--send")
    assert no_targets.returncode == 78 and "no alert targets" in no_targets.stderr
