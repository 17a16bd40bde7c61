"""The HTML summary in a real browser: headless Chromium renders it, and the screenshot must show the charts.

The page is rendered twice, once as is and once with its <svg> charts removed, and the two screenshots
are compared pixel by pixel (decoded by the small PNG reader below): the chart colours must appear in
their thousands only when the charts are there. Chromium's stderr must show no console message
(errors, Content-Security-Policy refusals) and no uncaught exception.

Skipped when Chromium is not installed, except on CI (CI=true), where it fails instead.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest

from monitor.reports.summary import build as summary
from monitor.reports.summary.html import CATEGORY_COLOURS, STATUS_COLOURS
from monitor.reports.summary.render import render
from monitor.store import Store
from tests import services
from tests.test_summary_week import NOW, UNTIL, WEEK, Week, build_week


@pytest.fixture(scope="session")
def summary_week(tmp_path_factory: pytest.TempPathFactory) -> Week:
    return build_week(tmp_path_factory)


def find_browser() -> str:
    path = services.chromium_binary()
    services.require("Chromium (apt-get install chromium)", path)
    assert path is not None
    return path


def screenshot(browser: str, page: Path, out: Path, profile: Path, size: str = "1200,2000") -> str:
    """Screenshot `page` at `size` (width,height; 1200x2000) into `out`; return Chromium's stderr."""
    proc = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--screenshot={out}",
            f"--window-size={size}",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert out.exists(), f"no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}"
    return proc.stderr


def read_png(path: Path, max_rows: int | None = None) -> tuple[int, int, int, list[bytearray]]:
    """Decode an 8-bit, non-interlaced RGB or RGBA PNG: return (width, height, bytes per pixel, rows).

    With `max_rows`, only the first rows are decoded (each row depends on the one above, never below).
    """
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, bytearray(), b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(bytes(idat))
    stride = width * bpp
    rows: list[bytearray] = []
    prev = bytearray(stride)
    for y in range(min(height, max_rows or height)):
        start = y * (stride + 1)
        kind_ = raw[start]
        cur = bytearray(raw[start + 1 : start + 1 + stride])
        if kind_ == 1:  # Sub
            for i in range(bpp, stride):
                cur[i] = (cur[i] + cur[i - bpp]) & 0xFF
        elif kind_ == 2:  # Up
            cur = bytearray((a + b) & 0xFF for a, b in zip(cur, prev, strict=True))
        elif kind_ == 3:  # Average
            for i in range(stride):
                left = cur[i - bpp] if i >= bpp else 0
                cur[i] = (cur[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif kind_ == 4:  # Paeth
            for i in range(stride):
                a = cur[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(cur)
        prev = cur
    return width, height, bpp, rows


def colour_counts(path: Path, colours: dict[str, str], rows_wanted: int) -> tuple[dict[str, int], int]:
    """Return (pixels exactly matching each named colour, pixels that are not near-white) in the top rows."""
    import numpy as np  # a dependency of pandas, so always installed

    width, _, bpp, rows = read_png(path, rows_wanted)
    pixels = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), width, bpp)[:, :, :3]
    counts = {}
    for name, hex_ in colours.items():
        rgb = np.frombuffer(bytes.fromhex(hex_.lstrip("#")), dtype=np.uint8)
        counts[name] = int(np.all(pixels == rgb, axis=2).sum())
    return counts, int((pixels.min(axis=2) < 235).sum())


@pytest.mark.service
def test_html_charts_render_in_chromium(tmp_path: Path, summary_week: Week) -> None:
    browser = find_browser()
    with Store.open(summary_week.db_url) as store:
        result = summary.build(store, summary_week.settings, WEEK, UNTIL, now=NOW)
    html = render(result, "html")

    # Self-contained: no scripts, no remote or local resources, no CSS imports (the only URL is the SVG namespace).
    assert "<script" not in html and "@import" not in html and "url(" not in html
    assert not re.search(r"""\s(?:src|href|xlink:href)\s*=""", html)
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) == {"http://www.w3.org/2000/svg"}
    assert html.count("<svg") == 3

    page = tmp_path / "summary.html"
    page.write_text(html, encoding="utf-8")
    bare = tmp_path / "bare.html"
    bare.write_text(re.sub(r"<svg.*?</svg>", "", html, flags=re.S), encoding="utf-8")
    shot, bare_shot = tmp_path / "summary.png", tmp_path / "bare.png"
    stderr = screenshot(browser, page, shot, tmp_path / "profile")
    screenshot(browser, bare, bare_shot, tmp_path / "profile-bare")
    if os.environ.get("KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["KEEP_SCREENSHOT"])

    for marker in ("Uncaught", "CONSOLE", "Refused to", "ERR_FILE_NOT_FOUND", "ERR_BLOCKED"):
        assert marker not in stderr, f"browser reported {marker!r}:\n{stderr[-3000:]}"

    palette = {
        "known": STATUS_COLOURS["known"],
        "enumeration": CATEGORY_COLOURS["enumeration"],
        "other": CATEGORY_COLOURS["other"],
        "heat-peak": "#0b2a6b",
    }
    # The charts sit in the top 1,000 pixels of the page (below the title and the figure cards).
    with_charts, inked = colour_counts(shot, palette, 1000)
    without, inked_bare = colour_counts(bare_shot, palette, 1000)
    width, height, _, _ = read_png(shot, 1)
    assert (width, height) == (1200, 2000)
    # Bars of known sources (daily chart) and inference (sources chart) share this blue: tens of thousands of pixels.
    assert with_charts["known"] - without["known"] > 20_000, (with_charts, without)
    # The sources chart (unknown sources first): the scanner's enumeration and "other" calls.
    assert with_charts["enumeration"] - without["enumeration"] > 1_000, (with_charts, without)
    assert with_charts["other"] - without["other"] > 2_000, (with_charts, without)
    assert with_charts["heat-peak"] > 0  # the heatmap's busiest cell
    # Smaller since the sources chart fits an email (560 px) and shows the unknown sources' short bars first.
    assert inked - inked_bare > 40_000, (inked, inked_bare)


# Appended to a copy of the page whose Content-Security-Policy is removed (the page itself forbids
# scripts): measures the laid-out page and writes the figures into a <pre> that --dump-dom prints.
MEASURE = """<script>
(() => {
  const main = document.querySelector("main");
  const box = main.getBoundingClientRect();
  const style = getComputedStyle(main);
  const limit = box.right - parseFloat(style.paddingRight) + 0.5;
  const out = {viewport: innerWidth, page: document.documentElement.scrollWidth, limit, charts: {},
               addresses: 0, broken: [], scrolling: []};
  document.querySelectorAll(".scroll").forEach((el, i) => {
    if (el.scrollWidth > el.clientWidth + 1) out.scrolling.push(el.previousElementSibling.textContent);
  });
  for (const fig of document.querySelectorAll("figure")) {
    const svg = fig.querySelector("svg");
    const r = svg.getBoundingClientRect();
    out.charts[fig.id] = {right: r.right, scale: r.width / svg.width.baseVal.value};
  }
  const address = /^[0-9a-f]*[.:][0-9a-f.:]+$/i;
  const walk = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
  for (let node = walk.nextNode(); node; node = walk.nextNode()) {
    const text = node.textContent.trim();
    if (!address.test(text) || !node.parentElement.closest("td")) continue;
    out.addresses++;
    const range = document.createRange();
    range.selectNodeContents(node);
    const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
    if (lines.size > 1) out.broken.push(text);
  }
  const pre = document.createElement("pre");
  pre.id = "measure";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""


def measure_layout(browser: str, html: str, width: int, tmp_path: Path) -> dict[str, Any]:
    """Lay the page out in Chromium at `width` px and return MEASURE's figures."""
    import json

    page = tmp_path / f"measure-{width}.html"
    page.write_text(
        re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html).replace(
            "</body>", MEASURE + "</body>"
        ),
        encoding="utf-8",
    )
    proc = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / f'profile-measure-{width}'}",
            f"--window-size={width},2000",
            "--hide-scrollbars",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    found = re.search(r'<pre id="measure">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"no measurements (exit {proc.returncode}): {proc.stderr[-2000:]}"
    import html as html_mod

    data: dict[str, Any] = json.loads(html_mod.unescape(found.group(1)))
    return data


@pytest.mark.service
@pytest.mark.parametrize("width", [1280, 640])
def test_html_layout_fits_desktop_and_email_widths(tmp_path: Path, summary_week: Week, width: int) -> None:
    """Regression: at 640 px (an email's width) the top-sources chart (1010 px) stuck out of the page and
    client addresses broke in the middle (`word-break: break-all`), reading as two addresses.

    At both widths: the page needs no sideways scrolling (wide tables scroll in their own box), every
    chart fits inside the page's content box at (nearly) its drawn size, so its text stays legible, and
    no address in a table cell spans two lines."""
    browser = find_browser()
    with Store.open(summary_week.db_url) as store:
        result = summary.build(store, summary_week.settings, WEEK, UNTIL, now=NOW)
    html = render(result, "html")
    figures = measure_layout(browser, html, width, tmp_path)
    if os.environ.get("KEEP_SCREENSHOT"):
        page = tmp_path / "page.html"
        page.write_text(html, encoding="utf-8")
        shot = Path(os.environ["KEEP_SCREENSHOT"]).with_suffix(f".{width}.png")
        screenshot(browser, page, shot, tmp_path / "profile-shot", size=f"{width},3000")
    assert figures["viewport"] == width, figures
    assert figures["page"] <= width, f"the page is {figures['page']} px wide at {width} px"
    charts = figures["charts"]
    assert isinstance(charts, dict) and set(charts) == {"chart-daily", "chart-heatmap", "chart-sources"}
    for name, chart in charts.items():
        assert chart["right"] <= figures["limit"], (name, chart, figures["limit"])
        assert chart["scale"] >= 0.95, f"{name} shrunk to {chart['scale']:.2f} of its size at {width} px"
    assert isinstance(figures["addresses"], int) and figures["addresses"] >= 25
    assert figures["broken"] == [], f"addresses broken across lines at {width} px: {figures['broken']}"
    if width >= 1280:  # on a desktop every table fits; at email width the wide ones scroll in their box
        assert figures["scrolling"] == [], f"tables wider than the page at {width} px: {figures['scrolling']}"
