"""Unit and robustness tests for the reverse-proxy parsers (nginx, apache, caddy, traefik, haproxy).

The annotated samples in tests/logs/<format>/ prove what each line parses to (tests/test_parser_samples.py);
this module checks the helpers against independent references and that no input makes a parser raise
or take long.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor import parsers
from monitor.core.records import Reject, Request, Skip
from monitor.parsers import ParseContext
from monitor.parsers import wrappers as wr
from monitor.parsers.caddy import go_duration_ms
from monitor.parsers.common import any_time, clf_time, inert, split_host_port, split_request, unescape

LOGS = Path(__file__).parent / "logs"
FORMATS = ("nginx", "apache", "caddy", "traefik", "haproxy")
CTX = ParseContext.build(trusted_proxies=["10.0.0.0/8", "127.0.0.1/32"])


def _sample_lines(fmt: str) -> list[str]:
    lines = []
    for file in sorted((LOGS / fmt).glob("*.log")):
        text = file.read_text(encoding="utf-8", errors="surrogateescape")
        lines += [line for line in text.split("\n") if line and not line.startswith("#")]
    return lines


SAMPLES = {fmt: _sample_lines(fmt) for fmt in FORMATS}
ALL_SAMPLES = [line for lines in SAMPLES.values() for line in lines]


# --- helpers against references -----------------------------------------------------------------


def test_clf_time_matches_strptime_for_random_times_and_offsets() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        offset = timedelta(minutes=rng.choice([-720, -330, -60, 0, 0, 60, 120, 345, 840]))
        local = datetime(2000, 1, 1, tzinfo=timezone(offset)) + timedelta(
            seconds=rng.randrange(0, 40 * 365 * 86400)
        )
        text = local.strftime("%d/%b/%Y:%H:%M:%S %z")
        want = datetime.strptime(text, "%d/%b/%Y:%H:%M:%S %z").astimezone(UTC)
        for _ in range(2):  # the second call is served by the caches
            got = clf_time(text)
            assert got == want and got.utcoffset() == timedelta(0), text


def test_clf_time_variants_and_errors() -> None:
    berlin = __import__("zoneinfo").ZoneInfo("Europe/Berlin")
    assert clf_time("01/Jul/2025:12:00:00", berlin) == datetime(2025, 7, 1, 10, tzinfo=UTC)
    assert clf_time("1/Jul/2025:12:00:00.250 +0000") == datetime(2025, 7, 1, 12, 0, 0, 250000, tzinfo=UTC)
    for bad in (
        "32/Mar/2025:10:16:05 +0000",
        "01/Foo/2025:10:16:05 +0000",
        "01/Mar/2025:10:16:60 +0000",
        "01/Mar/2025:10:16:-1 +0000",
        "01/Mar/2025:10:16:05 *0000",
        "yesterday",
    ):
        with pytest.raises((ValueError, KeyError, IndexError)):
            clf_time(bad)


def test_any_time_forms() -> None:
    want = datetime(2025, 3, 21, 8, 52, 33, 123000, tzinfo=UTC)
    for value in (
        1742547153.123,
        "1742547153.123",
        1742547153123,
        "2025-03-21T08:52:33.123Z",
        "2025-03-21T09:52:33.123+01:00",
        "21/Mar/2025:08:52:33.123 +0000",
        "2025/03/21 08:52:33.123",
    ):
        got = any_time(value, UTC)
        assert got is not None and abs(got - want) < timedelta(milliseconds=1), value
    assert any_time("not a time", UTC) is None
    assert any_time(float("inf"), UTC) is None and any_time(float("nan"), UTC) is None
    assert any_time(1e300, UTC) is None and any_time(-1e25, UTC) is None
    assert any_time(None, UTC) is None
    assert any_time(True, UTC) is None


def test_unescape_undoes_nginx_and_apache_escapes_but_keeps_controls_inert() -> None:
    assert unescape("plain") == "plain"
    assert unescape(r"/a\x22b\x5Cc") == '/a"b\\c'
    assert unescape(r"/a\"b\\c") == '/a"b\\c'
    assert unescape(r"caf\xC3\xA9 caf\xc3\xa9") == "café café"
    assert unescape(r"\x0A\x1B[31m\x7F") == r"\x0A\x1B[31m\x7F"  # newline, ESC, DEL stay escaped
    assert unescape(r"\xFF") == r"\xff"  # not UTF-8: stays visible
    assert unescape("\\\\x41") == "\\x41"  # an escaped backslash followed by text, not \x41
    assert inert("a\x00b\x1bc\x7f") == r"a\x00b\x1Bc\x7F"


@pytest.mark.parametrize(
    ("request_line", "want"),
    [
        ("GET /api/tags HTTP/1.1", ("GET", "/api/tags")),
        ("POST /v1/chat/completions?x=1 HTTP/2.0", ("POST", "/v1/chat/completions?x=1")),
        ("GET /a b HTTP/1.1", ("GET", "/a b")),
        ("GET /", ("GET", "/")),
        ("CONNECT example.com:443 HTTP/1.1", ("CONNECT", "example.com:443")),
        ("GET http://x.example/ HTTP/1.0", ("GET", "http://x.example/")),
        ("GET /p\\x5Cq HTTP/1.1", ("GET", "/p\\q")),
        ("-", (None, None)),
        ("", (None, None)),
        ("HELP", (None, "HELP")),
        ("batman", (None, "batman")),
        ("hello world", (None, "hello world")),
        ("\\x16\\x03\\x01\\x00", (None, "\\x16\\x03\\x01\\x00")),
        ("lv|'|'|x Win XP", (None, "lv|'|'|x Win XP")),
    ],
)
def test_split_request(request_line: str, want: tuple[str | None, str | None]) -> None:
    assert split_request(request_line) == want


def test_split_host_port() -> None:
    assert split_host_port("1.2.3.4:80") == "1.2.3.4"
    assert split_host_port("[::1]:56348") == "::1"
    assert split_host_port("2001:db8::1234:58430") == "2001:db8::1234"
    assert split_host_port("::ffff:192.168.33.1:58430") == "::ffff:192.168.33.1"
    assert split_host_port("2001:db8::1") == "2001:db8::1"
    assert split_host_port("1.2.3.4") == "1.2.3.4"


def test_go_duration() -> None:
    assert go_duration_ms("1.5ms") == pytest.approx(1.5)
    assert go_duration_ms("2m10s") == pytest.approx(130000)
    assert go_duration_ms("23.668\u00b5s") == pytest.approx(0.023668)
    assert go_duration_ms("0s") == 0 and go_duration_ms("0") == 0
    assert go_duration_ms("1x") is None and go_duration_ms("") is None and go_duration_ms("5s junk") is None


# --- detection ------------------------------------------------------------------------------------


def test_request_samples_are_detected_as_their_format() -> None:
    """With DETECT_ORDER, every request sample is detected as its own format (apache: as nginx, same parser)."""
    for fmt in FORMATS:
        for file in sorted((LOGS / fmt).glob("*.log")):
            if (
                file.name == "json_fields.log"
            ):  # custom JSON names cannot be sniffed; the format is configured
                continue
            lines = file.read_text(encoding="utf-8", errors="surrogateescape").split("\n")
            for annotation, line in zip(lines, lines[1:], strict=False):
                if annotation.startswith("# expect:"):
                    # Sniffing sees the line with its wrapper peeled, as the decoder gives it.
                    peeled = wr.peel(wr.detect(line), line)
                    got = parsers.sniff(peeled.text if peeled and peeled.text is not None else line)
                    assert got == fmt or (fmt == "apache" and got == "nginx"), (
                        f"{file.name}: {got}: {line[:120]}"
                    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_sniff_rejects_other_families(fmt: str) -> None:
    sniff = parsers.get(fmt).sniff
    gin = '[GIN] 2025/03/21 - 08:52:32 | 200 |    1.3560275s |       127.0.0.1 | POST     "/api/pull"'
    slog = 'time=2025-10-03T13:18:05.002+02:00 level=INFO source=routes.go:1 msg="Listening on [::]:11434"'
    assert not sniff(gin) and not sniff(slog) and not sniff("") and not sniff("hello world")


# --- robustness -------------------------------------------------------------------------------------

_TOKENS = [
    '"',
    "\\",
    "[",
    "]",
    " ",
    "{",
    "}",
    ":",
    "/",
    "-",
    "0",
    "9",
    "\x00",
    "\udcff",
    "\\x",
    "\\x2",
    "ms",
    '\\"',
    "HTTP/1.1",
    "::",
    ",",
    "|",
    "+",
    "\u00b5",
    "\n",
    "null",
    "1e999",
    "-1",
    "000",
]


@st.composite
def _mutated(draw: st.DrawFn) -> str:
    line = draw(st.sampled_from(ALL_SAMPLES))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(line)))
        action = draw(st.integers(0, 3))
        if action == 0:
            line = line[:pos] + draw(st.sampled_from(_TOKENS)) + line[pos:]
        elif action == 1:
            line = line[:pos] + line[pos + draw(st.integers(1, 30)) :]
        elif action == 2:
            line = line[:pos] + draw(st.text(max_size=20)) + line[pos:]
        else:
            line = line[:pos]
    return line


def _check(line: str) -> None:
    for fmt in FORMATS:
        fn = parsers.get(fmt)
        result = fn.parse(line, CTX)
        assert isinstance(result, Request | Skip | Reject), (fmt, line, result)
        if isinstance(result, Request):
            assert result.ts.utcoffset() == timedelta(0)
            assert isinstance(result.client_ip, str) and result.client_ip
        assert isinstance(fn.sniff(line), bool)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_mutated_samples_never_raise(line: str) -> None:
    _check(line)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_random_text_never_raises(line: str) -> None:
    _check(line)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(raw: bytes) -> None:
    _check(raw.decode("utf-8", "backslashreplace"))
    _check(raw.decode("utf-8", "surrogateescape"))


_JSON_KEYS = [
    "remote_addr",
    "request",
    "request_method",
    "request_uri",
    "status",
    "body_bytes_sent",
    "request_time",
    "http_user_agent",
    "http_x_forwarded_for",
    "time_iso8601",
    "time_local",
    "msec",
    "time",
    "timestamp",
    "@timestamp",
    "ts",
    "logger",
    "msg",
    "duration",
    "size",
    "ClientAddr",
    "ClientHost",
    "DownstreamStatus",
    "DownstreamContentSize",
    "Duration",
    "RequestMethod",
    "RequestPath",
    "RequestLine",
    "StartUTC",
    "StartLocal",
    "request_User-Agent",
]
_JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=30),
    st.sampled_from(
        [
            "handled request",
            "http.log.access",
            "1.2.3.4",
            "[::1]:80",
            "1.2.3.4:5",
            "unix:",
            "-",
            "",
            "2025-03-21T08:52:33Z",
            "21/Mar/2025:08:52:33 +0000",
            "1742547153.5",
            "GET / HTTP/1.1",
        ]
    ),
    st.lists(st.text(max_size=5), max_size=3),
)
_JSON_REQUEST = st.fixed_dictionaries(
    {},
    optional={k: _JSON_VALUES for k in ("remote_ip", "remote_addr", "client_ip", "method", "uri", "headers")},
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(_JSON_KEYS), _JSON_VALUES), _JSON_REQUEST)
def test_json_records_with_odd_values_never_raise(
    record: dict[str, object], request: dict[str, object]
) -> None:
    import json

    record = {**record, "request": request} if request else record
    _check(json.dumps(record))  # NaN and Infinity included: json.loads accepts them


@pytest.mark.parametrize(
    "line",
    [
        "a [" * 20000,
        '"' * 50000,
        "1.2.3.4 - - [" + "x" * 50000,
        '1.2.3.4 - - [01/Jan/2025:00:00:00 +0000] "' + "\\" * 50001 + '" 200 1 "-" "-"',
        '1.2.3.4 - - [01/Jan/2025:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-"' + ' "x' * 20000,
        '1.2.3.4 - - [01/Jan/2025:00:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-"' + " 0.0001" * 20000,
        "{" * 100000,
        "[" * 100000,
        '{"ClientAddr":' * 20000,
        "1.2.3.4:1 [01/Jan/2025:00:00:00.000] fe be/s " + "{a} " * 20000,
        "Jan  1 00:00:00 h haproxy[1]: " + "1:1 [0" * 10000,
        "x ms" * 20000,
    ],
    ids=lambda line: f"{line[:20]!r}x{len(line)}",
)
def test_hostile_long_lines_are_fast(line: str) -> None:
    start = time.perf_counter()
    _check(line)
    assert time.perf_counter() - start < 2.0
