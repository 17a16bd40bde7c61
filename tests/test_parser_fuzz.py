"""Hostile input for every registered parser and for LineDecoder in every format: nothing may raise.

Properties checked on every result:
- it is a Request, Skip or Reject (or None from a decoder holding a split record);
- a Request has an aware UTC `ts` and a `str` client_ip, non-empty except for a Gin record whose client
  column is empty (an unknown client), and its text fields hold no lone
  surrogates when the input held none (the store encodes them as UTF-8).

Inputs: random bytes decoded the way the project decodes file bytes (UTF-8, errors="backslashreplace",
see monitor.sources.lines), arbitrary Unicode text, real sample lines from tests/logs/*/*.log mutated by
random insertions, deletions and replacements, sequences of such lines through one stateful decoder,
and a few 10 MB lines. Example counts are set per test (see `settings`: 300 random byte strings, 200
texts, 1,200 mutated lines, 300 sequences) to keep the module near 20 s on a busy 2-core machine; about
half of that is the 10 MB lines going through every parser.
"""

from __future__ import annotations

import random
import time
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor import parsers
from monitor.config import tzinfo_for
from monitor.core.records import Reject, Request, Skip
from monitor.parsers import ParseContext
from monitor.parsers.decoder import LineDecoder

LOGS = Path(__file__).parent / "logs"
FORMATS = parsers.names()
DECODER_FORMATS = ["auto", *FORMATS]
CONTEXTS = [
    ParseContext(),
    ParseContext.build(
        tz=tzinfo_for("Europe/Berlin"), trusted_proxies=["10.0.0.0/8", "127.0.0.1/32", "::1/128"]
    ),
]
TEXT_FIELDS = ("client_ip", "method", "path", "user_agent", "forwarded_for", "peer_ip")


def _real_lines() -> list[str]:
    lines: list[str] = []
    for file in sorted(LOGS.glob("*/*.log")):
        text = file.read_bytes().decode("utf-8", "backslashreplace")
        lines.extend(ln for ln in text.split("\n") if ln and not ln.startswith("# "))
    return lines


REAL_LINES = _real_lines()
# Characters that matter to the formats: separators, quotes, escapes, wrappers' punctuation, digits.
SPICY = ' "\\[]{}|:,-/.?=\x1b\x00\t\r\n0123456789µsmh\u00e9\ufffd\U0001f600x'


def _decode_bytes(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace")


def _check(result: object, line: str, allow_none: bool = False) -> None:
    if result is None and allow_none:
        return
    assert isinstance(result, Request | Skip | Reject), f"{result!r} for {line[:200]!r}"
    if not isinstance(result, Request):
        return
    offset = result.ts.utcoffset()
    assert offset is not None and offset == timedelta(0), f"ts not UTC: {result.ts!r} for {line[:200]!r}"
    assert isinstance(result.client_ip, str) and (result.client_ip or "[GIN] " in line), (
        f"client_ip {result.client_ip!r} for {line[:200]!r}"
    )
    if not _has_surrogate(line):
        for name in TEXT_FIELDS:
            value = getattr(result, name)
            assert value is None or (isinstance(value, str) and not _has_surrogate(value)), (
                f"{name}={value!r} not storable for {line[:200]!r}"
            )


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _feed_all(line: str) -> None:
    for ctx in CONTEXTS:
        for name in FORMATS:
            _check(parsers.get(name).parse(line, ctx), line)
        for fmt in DECODER_FORMATS:
            _check(LineDecoder(fmt, ctx).decode(line), line, allow_none=True)


def _mutate(line: str, rnd: random.Random) -> str:
    """Apply 1-6 random insertions, deletions, replacements or cuts to a line."""
    chars = list(line)
    for _ in range(rnd.randint(1, 6)):
        op = rnd.choice(("insert", "delete", "replace", "cut"))
        pos = rnd.randint(0, len(chars))
        if op == "insert":
            chars[pos:pos] = [_random_char(rnd) for _ in range(rnd.randint(1, 4))]
        elif op == "delete":
            del chars[pos : pos + rnd.randint(1, 8)]
        elif op == "replace" and pos < len(chars):
            chars[pos] = _random_char(rnd)
        elif op == "cut":
            del chars[pos:]
    return "".join(chars)


def _random_char(rnd: random.Random) -> str:
    if rnd.random() < 0.7:
        return rnd.choice(SPICY)
    code = rnd.choice((rnd.randint(0, 0x7F), rnd.randint(0x80, 0xFFFF), rnd.randint(0x10000, 0x10FFFF)))
    return chr(code) if not 0xD800 <= code <= 0xDFFF else "\ufffd"


# Generating the mutations with a seeded Random keeps hypothesis' own cost low (it still replays a
# failing example exactly from its database); the failing line is printed by `_check`.
mutated = st.builds(_mutate, st.sampled_from(REAL_LINES), st.randoms(use_true_random=False))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400).map(_decode_bytes))
def test_random_bytes(line: str) -> None:
    _feed_all(line)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_random_text(line: str) -> None:
    _feed_all(line)


@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated)
def test_mutated_real_lines(line: str) -> None:
    _feed_all(line)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(mutated | st.sampled_from(REAL_LINES), min_size=2, max_size=12),
    st.sampled_from(DECODER_FORMATS),
)
def test_one_decoder_through_a_sequence(lines: list[str], fmt: str) -> None:
    decoder = LineDecoder(fmt, CONTEXTS[1])
    for line in lines:
        _check(decoder.decode(line), line, allow_none=True)


def test_real_lines_never_raise() -> None:
    for line in REAL_LINES:
        _feed_all(line)


HUGE = 10 * 1024 * 1024


def test_ten_megabyte_lines() -> None:
    """Hostile lengths: each must come back (no quadratic regex) and not raise.

    Each shape goes to every parser and to the `auto` decoder (which tries every wrapper and sniffer).
    """
    gin_head = "[GIN] 2025/03/21 - 08:52:32 | 200 |    1.3560275s |       127.0.0.1 | GET      "
    shapes = [
        "a\x00" * (HUGE // 2),
        gin_head + '"/' + '\\\\a\\"\\x01' * (HUGE // 10) + '"',  # dense escapes, as Go writes them
        gin_head
        + '"/'
        + ("a" * 84 + '\\\\a\\"\\x01\\u200b') * (HUGE // 1000)
        + '"',  # 1 MB, byte and rune escapes
        '1.2.3.4 - - [04/Jan/2020:08:41:43 +0000] "GET /' + "a\\x22" * (HUGE // 5),
        '{"log":"' + "x" * HUGE + '","stream":"stdout"}',
        "{" * HUGE,
    ]
    ctx = ParseContext()
    slowest = 0.0
    for line in shapes:
        start = time.perf_counter()
        _check(LineDecoder("auto").decode(line), line, allow_none=True)
        slowest = max(slowest, time.perf_counter() - start)
        for name in FORMATS:
            start = time.perf_counter()
            _check(parsers.get(name).parse(line, ctx), line)
            slowest = max(slowest, time.perf_counter() - start)
    # Generous: a linear pass over 10 MB takes well under a second; a quadratic one never returns.
    assert slowest < 10.0


# Pieces of Go-quoted bodies: what Go writes, and escapes it never writes (which must still not raise).
QUOTED_PIECES = [
    "a",
    "\u00e9",
    "\U0001f600",
    '\\"',
    "\\\\",
    "\\n",
    "\\x41",
    "\\xff",
    "\\xe2\\x82\\xac",
    "\\u200b",
]
QUOTED_PIECES += ["\\ud800", "\\U0001f600", "\\U00110000", "\\101", "\\q", "\\x4"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(QUOTED_PIECES), max_size=12))
def test_go_unquote_fast_paths_agree_with_the_careful_one(pieces: list[str]) -> None:
    from monitor.parsers import ollama

    quoted = '"' + "".join(pieces) + '"'
    body = quoted[1:-1]
    assert ollama._unquote(quoted, 0) == ollama._ESCAPE.sub(ollama._unescape, body)
