"""monitor.sanitize: attacker text made safe for chat, email and terminals."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.sanitize import ELLIPSIS, clean, for_terminal, neutralise, safe_text

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
