"""monitor.core.sanitize: attacker text made safe for chat, email and terminals."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from monitor.core.sanitize import ELLIPSIS, clean, for_terminal, neutralise, safe_text

REPO = Path(__file__).resolve().parents[1]

EVIL = "<!channel> <@U123> <#C999|general> <https://evil.example/x|click> @everyone @here @channel"
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def test_clean_strips_ansi_csi_osc_and_controls() -> None:
    text = (
        "a\x1b[31mred\x1b[0m b\x1b]0;pwned title\x07c \x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\ d\x00e\x9b2Jf"
    )
    out = clean(text)
    assert out == "ared bc link d ef"
    assert not CONTROL.search(out)


def test_clean_newlines_tabs_and_bidi() -> None:
    assert clean("one\ntwo\r\nthree\tfour") == "one two three four"
    assert clean("one\n\x1b[1mtwo\n", keep_newlines=True) == "one\ntwo"
    assert clean("admin\u202e\u2066txt.exe") == "admintxt.exe"
    assert clean("zero\u200bwidth\ufeff") == "zerowidth"
    assert clean(None) == "" and clean(42) == "42"


def test_clean_caps_with_ellipsis() -> None:
    out = clean("x" * 1000, 50)
    assert len(out) == 50 and out.endswith(ELLIPSIS)
    assert clean("short", 50) == "short"


def test_neutralise_mentions_and_links() -> None:
    out = neutralise(EVIL)
    for bad in (
        "<!channel>",
        "<@U123>",
        "<#C999",
        "<https://",
        "@everyone",
        "@here",
        "@channel",
        "<",
        ">",
        "https://",
    ):
        assert bad not in out, bad
    # still readable by a person
    assert "\u2039!channel\u203a" in out and "\uff20everyone" in out and "hxxps://evil[.]example/x" in out


def test_neutralise_markdown_bare_urls_and_invisibles() -> None:
    out = neutralise(
        "see [docs](http://evil.example/a) ![i](https://t.example/p.gif) www.evil.example ev\u200beryone"
    )
    assert "](" not in out
    assert "http://" not in out and "https://" not in out and "www.evil" not in out
    assert "hxxp://evil[.]example/a" in out and "www[.]evil[.]example" in out
    assert "\u200b" not in out
    assert neutralise("ftp://a.b/c mailto://x.y") == "fxp://a[.]b/c mailto[:]://x[.]y"


def test_neutralise_defangs_bare_host_names_but_not_addresses_or_versions() -> None:
    out = neutralise("visit evil.example now (scan.EXAMPLE.net) backup.zip hf.co/x my_host.example évil.com")
    assert out == (
        "visit evil[.]example now (scan[.]EXAMPLE[.]net) backup[.]zip hf[.]co/x my_host[.]example évil[.]com"
    )
    kept = "203.0.113.7 curl/8.5.0 ollama-python/0.4.7 llama3.2:latest qwen2.5-coder:7b nomic-embed-text:v1.5"
    assert neutralise(kept) == kept
    assert neutralise("end of a sentence: evil.example.") == "end of a sentence: evil[.]example."


def test_neutralise_keeps_plain_text() -> None:
    text = "GET /api/tags from 203.0.113.7 (curl/8.5.0) status 200"
    assert neutralise(text) == text


def test_for_terminal_shows_escapes() -> None:
    assert for_terminal("a\x1b[31mb\nc\u200bd") == "a\\x1b[31mb\\nc\\u200bd"
    assert for_terminal("plain /path") == "plain /path"
    assert for_terminal("x" * 20, 10).endswith(ELLIPSIS)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.integers(min_value=1, max_value=120))
def test_properties(text: str, max_len: int) -> None:
    cleaned = clean(text, max_len)
    assert len(cleaned) <= max_len
    assert not CONTROL.search(cleaned)
    assert clean(cleaned, max_len) == cleaned  # idempotent
    safe = safe_text(text, max_len)
    assert len(safe) <= max_len
    assert "<" not in safe and ">" not in safe and not re.search(r"@\w", safe)
    assert neutralise(neutralise(cleaned)) == neutralise(cleaned)
    shown = for_terminal(text)
    assert not CONTROL.search(shown)


# --- issue 13, item 3 -------------------------------------------------------------------------------
LIVE_SCHEME = re.compile(r"(?:http|https|ftp|ftps|ws|wss)://", re.IGNORECASE)
DOTS = ".\u3002\uff0e\uff61\u2024\ufe52"
# A dotted name whose last label starts with a letter (any script), standing alone: what chat
# services link. Independent of the module's own regex on purpose.
LIVE_HOST = re.compile(rf"(?<![\w.\-])(?:\w[\w-]*[{DOTS}])+[^\W\d_][\w-]*(?![\w\-]|[{DOTS}]\w)")


def assert_no_live_link(out: str) -> None:
    assert not LIVE_SCHEME.search(out), out
    assert "](" not in out, out  # no Markdown link or image (CommonMark allows nothing between)
    assert not re.search(r"(?i)(?<![^\W_])www\.\w", out), out
    assert not LIVE_HOST.search(out), out
    for host in re.findall(r"[a-z]://([^\s/?#|]*)", out, re.IGNORECASE):
        assert not re.search(rf"\w[{DOTS}]\w", host), out  # every dot between labels is `[.]`


def test_urls_glued_to_a_word_are_defanged() -> None:
    out = neutralise("x _https://203.0.113.7/live 1http://evil.example/a é_ftp://h.example/ aWSS://x.example")
    assert out == (
        "x _hxxps://203[.]0[.]113[.]7/live 1hxxp://evil[.]example/a é_fxp://h[.]example/ aWSS[:]://x[.]example"
    )
    assert_no_live_link(out)


def test_non_ascii_hosts_and_dot_lookalikes_are_defanged() -> None:
    assert neutralise("visit пример.рф now") == "visit пример[.]рф now"
    for dot in "\u3002\uff0e\uff61\u2024\ufe52":
        assert neutralise(f"evil{dot}example and http://evil{dot}example/x") == (
            "evil[.]example and hxxp://evil[.]example/x"
        ), dot
    assert neutralise("[evil.example]") == "[evil[.]example]"
    assert neutralise("日本語の文。次の文") == "日本語の文[.]次の文"  # harmless, and no longer a host


def test_defanging_cannot_open_a_markdown_link() -> None:
    # Before the fix, `a.(` became `a[.](`: the first pass wrote a live link `[.](evil)` that only a
    # second pass split.
    once = neutralise("http://a.(evil.example)")
    assert once == neutralise(once)
    assert_no_live_link(once)


FRAGMENTS = st.sampled_from(
    [
        "http",
        "https",
        "HTTP",
        "ftp",
        "wss",
        "hxxp",
        "://",
        ".",
        "[",
        "]",
        "(",
        ")",
        "[.]",
        "www",
        "evil",
        "example",
        "com",
        "\u3002",
        "\uff0e",
        "_",
        "1",
        "0",
        " ",
        "\n",
        "пример",
        "рф",
        "é",
        "@",
        "<",
        ">",
        "!",
        "|",
        "/",
        "-",
        ":",
        "\u200b",
        "x",
    ]
)
HOSTILE = st.lists(FRAGMENTS, max_size=40).map("".join) | st.text(max_size=200)


@settings(max_examples=2000, deadline=None)
@given(HOSTILE)
@example("http://http.://")  # a second pass read the first URL's host through the defanged `http.[:]`
def test_neutralise_is_idempotent_and_leaves_no_live_link(text: str) -> None:
    once = neutralise(clean(text, 1000, keep_newlines=True))
    assert neutralise(once) == once
    assert_no_live_link(once)


def test_check_json_escapes_c1_controls(tmp_path: Path) -> None:
    """`check --json` printed C1 controls (0x9b is CSI to some terminals) raw in paths and rejects."""
    log = tmp_path / "access\x9b31m\u202e.log"
    log.write_text(
        '[GIN] 2025/03/21 - 08:52:32 | 200 |    1.3560275s |       127.0.0.1 | POST     "/api/pull"\n'
        '[GIN] 2025/03/21 - 08:52:3\x9b | 200 | \x85\u2028 | 203.0.113.9 | POST "/x"\n',  # rejected
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for extra in ([], ["--show-rejects"]):
        proc = subprocess.run(
            [sys.executable, "-m", "monitor", "check", "--json", *extra, str(log)],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert not re.search(r"[\x80-\x9f\u2028\u2029\u202e]", proc.stdout), repr(proc.stdout)
        (report,) = json.loads(proc.stdout)["files"]
        assert report["path"] == str(log) and report["rejected"] == 1
        if extra:
            assert "203.0.113.9" in report["rejects"][0]["text"]


def test_json_text_round_trips() -> None:
    from monitor.core.sanitize import json_text

    data = {"p": "a\x85b\x9bc\u202ed\u2028é", "n": [1, None]}
    text = json_text(data)
    assert json.loads(text) == data and not re.search(r"[\x80-\x9f\u2028\u202e]", text)
