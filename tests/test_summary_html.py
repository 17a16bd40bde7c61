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

import pytest

from monitor import summary
from monitor.store import Store
from monitor.summary_html import CATEGORY_COLOURS, STATUS_COLOURS
from monitor.summary_render import render
from tests.test_summary_week import NOW, UNTIL, WEEK, Week, build_week

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture(scope="session")
def summary_week(tmp_path_factory: pytest.TempPathFactory) -> Week:
    return build_week(tmp_path_factory)


def find_browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI") == "true":
        pytest.fail("Chromium is required on CI (apt-get install chromium) but was not found")
    pytest.skip("Chromium is not installed (apt-get install chromium)")


def screenshot(browser: str, page: Path, out: Path, profile: Path) -> str:
    """Screenshot `page` at 1200x2000 into `out`; return Chromium's stderr."""
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
            "--window-size=1200,2000",
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
        "heat-peak": "#0b2a6b",
    }
    # The charts sit in the top 1,000 pixels of the page (below the title and the figure cards).
    with_charts, inked = colour_counts(shot, palette, 1000)
    without, inked_bare = colour_counts(bare_shot, palette, 1000)
    width, height, _, _ = read_png(shot, 1)
    assert (width, height) == (1200, 2000)
    # Bars of known sources (daily chart) and inference (sources chart) share this blue: tens of thousands of pixels.
    assert with_charts["known"] - without["known"] > 20_000, (with_charts, without)
    assert with_charts["enumeration"] - without["enumeration"] > 5_000, (with_charts, without)
    assert with_charts["heat-peak"] > 0  # the heatmap's busiest cell
    assert inked - inked_bare > 100_000, (inked, inked_bare)
