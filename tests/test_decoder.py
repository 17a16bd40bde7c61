"""LineDecoder: wrappers (Docker json-file split records, CRI, journald JSON, text prefixes) and `auto`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from monitor import parsers
from monitor.core.records import Reject, Request, Skip
from monitor.parsers import ParseContext
from monitor.parsers import wrappers as wr
from monitor.parsers.decoder import MAX_JOINED, LineDecoder

GIN = '[GIN] 2025/01/28 - 05:05:46 | 200 |    1.3560275s |      172.17.0.1 | POST     "/api/pull"'
NGINX = '1.2.3.4 - - [04/Jan/2020:08:41:43 +0000] "GET /api/tags HTTP/1.1" 200 550 "-" "curl/8.5.0"'
CADDY = (
    '{"level":"info","ts":1711741827.25,"logger":"http.log.access.log0","msg":"handled request",'
    '"request":{"remote_ip":"127.0.0.1","remote_port":"54462","client_ip":"127.0.0.1","proto":"HTTP/1.1",'
    '"method":"GET","host":"localhost:9080","uri":"/api/ps","headers":{"User-Agent":["curl/7.88.1"]}},'
    '"bytes_read":0,"user_id":"","duration":0.000033987,"size":0,"status":200,"resp_headers":{}}'
)
SLOG = 'time=2025-01-28T05:05:38.002Z level=INFO source=routes.go:1331 msg="Listening on [::]:11434 (version 0.5.7)"'


def gin_line(path_quoted: str) -> str:
    return f"[GIN] 2025/01/28 - 05:05:47 | 404 |       4.2µs |      172.17.0.1 | GET      {path_quoted}"


def docker_records(text: str, chunk: int = 16 * 1024, stream: str = "stdout") -> list[str]:
    """Split a line the way Docker's json-file driver does: pieces of `chunk` characters, newline on the last."""
    pieces = [text[i : i + chunk] for i in range(0, len(text), chunk)]
    pieces[-1] += "\n"
    return [
        json.dumps({"log": p, "stream": stream, "time": "2025-01-28T05:05:47.000000001Z"}) for p in pieces
    ]


def journal_record(message: object) -> str:
    return json.dumps(
        {
            "__CURSOR": "s=abc;i=1",
            "__REALTIME_TIMESTAMP": "1738040747000000",
            "_SYSTEMD_UNIT": "ollama.service",
            "MESSAGE": message,
        }
    )


# -- Docker json-file split records -------------------------------------------------------------------


def test_docker_line_of_40_kib_split_in_three_records_is_joined() -> None:
    long_path = "/api/" + "".join(chr(0x61 + i % 26) for i in range(40 * 1024))
    line = gin_line(f'"{long_path}"')
    records = docker_records(line)
    assert len(records) == 3
    decoder = LineDecoder("ollama")
    assert decoder.decode(records[0]) is None
    assert decoder.decode(records[1]) is None
    assert decoder.holding
    result = decoder.decode(records[2])
    assert not decoder.holding
    assert isinstance(result, Request), result
    assert result.path == long_path
    assert result.client_ip == "172.17.0.1"
    assert decoder.wrapper == wr.DOCKER
    # The held state is gone: the next whole record parses alone.
    assert isinstance(decoder.decode(docker_records(GIN)[0]), Request)


def test_docker_partials_of_two_streams_are_joined_separately() -> None:
    out = docker_records(gin_line('"/' + "o" * 40_000 + '"'), stream="stdout")
    err = docker_records(SLOG + " " + "e" * 20_000, stream="stderr")
    decoder = LineDecoder("auto")
    results = [decoder.decode(out[0]), decoder.decode(err[0]), decoder.decode(out[1]), decoder.decode(err[1])]
    assert results == [None, None, None, Skip("format not detected")]
    last = decoder.decode(out[2])
    assert isinstance(last, Request) and last.path == "/" + "o" * 40_000
    assert decoder.detected == "ollama"


def test_docker_wrapping_a_proxy_line_with_a_fixed_format() -> None:
    decoder = LineDecoder("nginx")
    result = decoder.decode(docker_records(NGINX)[0])
    assert isinstance(result, Request)
    assert (result.client_ip, result.method, result.path, result.status) == (
        "1.2.3.4",
        "GET",
        "/api/tags",
        200,
    )
    assert decoder.envelope is not None and decoder.envelope.stream == "stdout"


def test_split_line_over_the_cap_is_dropped_with_one_reject() -> None:
    piece = "x" * (MAX_JOINED // 2 + 1)
    records = [json.dumps({"log": piece, "stream": "stdout"})] * 3 + [
        json.dumps({"log": "end\n", "stream": "stdout"})
    ]
    decoder = LineDecoder("ollama")
    results = [decoder.decode(r) for r in records]
    assert results[:3] == [None, None, None]
    assert isinstance(results[3], Reject)
    assert isinstance(decoder.decode(docker_records(GIN)[0]), Request)


def test_cri_partial_records_are_joined() -> None:
    decoder = LineDecoder("ollama")
    head, tail = GIN[:40], GIN[40:]
    assert decoder.decode(f"2025-01-28T05:05:46.1Z stdout P {head}") is None
    result = decoder.decode(f"2025-01-28T05:05:46.2Z stdout F {tail}")
    assert isinstance(result, Request) and result.path == "/api/pull"
    assert decoder.wrapper == wr.CRI


# -- journalctl -o json -------------------------------------------------------------------------------


def test_journal_message_as_byte_values() -> None:
    raw = gin_line('"/caf\u00e9/\\xff"').encode("utf-8") + b"\xfe"  # a stray invalid byte at the end
    decoder = LineDecoder("ollama")
    result = decoder.decode(journal_record(list(raw)))
    assert isinstance(result, Request), result
    assert result.path == "/caf\u00e9/\\xff"
    assert decoder.wrapper == wr.JOURNAL_JSON
    assert decoder.envelope is not None
    assert (decoder.envelope.cursor, decoder.envelope.time) == ("s=abc;i=1", "1738040747000000")


def test_journal_message_null_or_not_bytes_is_skipped() -> None:
    decoder = LineDecoder("ollama")
    assert isinstance(decoder.decode(journal_record(None)), Skip)
    assert isinstance(decoder.decode(journal_record([72, 300, 1])), Skip)
    assert isinstance(decoder.decode(journal_record({"not": "text"})), Skip)
    assert isinstance(decoder.decode(journal_record(GIN)), Request)


def test_journal_key_inside_a_caddy_header_does_not_make_a_wrapper() -> None:
    line = CADDY.replace('"headers":{', '"headers":{"__CURSOR":["x"],')
    decoder = LineDecoder("auto")
    result = decoder.decode(line)
    assert isinstance(result, Request) and result.path == "/api/ps"
    assert (decoder.detected, decoder.wrapper) == ("caddy", wr.PLAIN)


# -- auto detection -----------------------------------------------------------------------------------


def test_auto_detects_per_file_and_redetects_per_line_in_mixed_files() -> None:
    decoder = LineDecoder("auto")
    seen: list[tuple[str, str | None]] = []
    lines = [
        SLOG,
        GIN,
        "proxy-1  | " + NGINX,
        "ollama-1  | " + GIN,
        "ollama-1  | " + SLOG,
        CADDY,
        NGINX,
        GIN,
    ]
    for line in lines:
        result = decoder.decode(line)
        seen.append((type(result).__name__, decoder.detected))
    assert seen == [
        ("Skip", None),
        ("Request", "ollama"),
        ("Request", "nginx"),
        ("Request", "ollama"),
        ("Skip", "ollama"),
        ("Request", "caddy"),
        ("Request", "nginx"),
        ("Request", "ollama"),
    ]


def test_auto_uses_only_registered_names() -> None:
    decoder = LineDecoder("auto")
    for line in (GIN, NGINX, CADDY):
        decoder.decode(line)
        assert decoder.detected in parsers.names()


def test_wrapper_changes_midway_are_followed() -> None:
    decoder = LineDecoder("ollama", ParseContext.build(tz=UTC))
    lines = [
        GIN,
        "Jan 28 05:05:46 host ollama[1]: " + GIN,
        "Jan 28 05:05:46 host ollama[1]: " + SLOG,
        GIN,
        docker_records(GIN)[0],
    ]
    kinds = []
    for line in lines:
        result = decoder.decode(line)
        kinds.append((type(result).__name__, decoder.wrapper))
    assert kinds == [
        ("Request", wr.PLAIN),
        ("Request", wr.SYSLOG),
        ("Skip", wr.SYSLOG),
        ("Request", wr.PLAIN),
        ("Request", wr.DOCKER),
    ]


def test_byte_order_mark_on_the_first_line() -> None:
    decoder = LineDecoder("auto")
    result = decoder.decode("\ufeff" + GIN)
    assert isinstance(result, Request)
    assert result.ts == datetime(2025, 1, 28, 5, 5, 46, tzinfo=UTC)


def test_fast_path_gives_the_parser_results_unchanged() -> None:
    """Every sample line of the ollama fixtures: decoding a whole file in one decoder (fast path after
    the first line) gives what the parser gives for the unwrapped line."""
    fixtures = Path(__file__).parent / "logs" / "ollama" / "gin.log"
    lines = [ln for ln in fixtures.read_text(encoding="utf-8").split("\n") if ln and not ln.startswith("#")]
    ctx = ParseContext()
    decoder = LineDecoder("ollama", ctx)
    parse = parsers.get("ollama").parse
    for line in lines:
        assert decoder.decode(line) == parse(line, ctx), line
    assert decoder.wrapper == wr.PLAIN


def test_wrapper_found_after_plain_lines_before_any_format_is_detected() -> None:
    """`docker compose logs` starts with a plain banner; the prefixed lines after it must still be read."""
    decoder = LineDecoder("auto")
    assert decoder.decode("Attaching to ollama-1, proxy-1") == Skip("format not detected")
    assert decoder.wrapper == wr.PLAIN
    result = decoder.decode("ollama-1  | " + GIN)
    assert isinstance(result, Request) and result.path == "/api/pull"
    assert (decoder.detected, decoder.wrapper) == ("ollama", wr.COMPOSE)
    assert isinstance(decoder.decode("proxy-1   | " + NGINX), Request)
    assert decoder.detected == "nginx"
