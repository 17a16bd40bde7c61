"""Prefixes and neighbours of access lines (issue 16 items 1-3, 5, 6), beyond the annotated samples.

The prefix shapes are those the tools document: `docker logs -t` / `kubectl logs --timestamps`
(RFC 3339 with nanoseconds), `docker service logs` (`name.N.taskid@node    | `), `grep -H` (`path:`),
a Docker json-file record that carries only `log`. The access lines inside them are real lines from
the samples in tests/logs/.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.core.records import Reject, Request, Skip
from monitor.parsers import wrappers as wr
from monitor.parsers.decoder import LineDecoder
from tests.conftest import CliRunner

GIN = '[GIN] 2024/04/16 - 09:20:21 | 200 |      15.173µs |  192.168.70.194 | GET      "/"'
COMBINED = (
    '172.17.0.1 - - [22/Nov/2020:17:19:05 +0000] "GET /test HTTP/1.1" 200 7269 "-" '
    '"Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:83.0) Gecko/20100101 Firefox/83.0" "-"'
)
NGINX_JSON = (
    '{"time":"2022-09-27T06:18:57+00:00","remote_addr":"172.31.68.234","http_x_forwarded_for":'
    '"206.81.7.133, 172.70.114.69","request_method":"GET","server_protocol":"HTTP/1.1",'
    '"request_uri":"/leaf","status":200,"request_length":512,"request_time":0.004,"body_bytes_sent":10}'
)


@pytest.mark.parametrize(
    ("line", "kind", "client"),
    [
        ("2024-04-16T09:20:21.123456789Z " + GIN, wr.STAMP, "192.168.70.194"),
        ("2020-11-22T17:19:05.000000000Z " + COMBINED, wr.STAMP, "172.17.0.1"),
        ("web.1.18t5r6j642rhncm76vbc2s8h5@moby    | " + COMBINED, wr.COMPOSE, "172.17.0.1"),
        ("ollama-1  | " + GIN, wr.COMPOSE, "192.168.70.194"),
        ("[0] " + COMBINED, wr.PROCESS, "172.17.0.1"),
        ("/var/log/nginx/access.log:" + NGINX_JSON, wr.GREP, "172.31.68.234"),
        ("access.log.1:42:" + NGINX_JSON, wr.GREP, "172.31.68.234"),
        (json.dumps({"log": COMBINED}), wr.DOCKER, "172.17.0.1"),
        ("<134>Nov 22 17:19:05 nginx: " + COMBINED, wr.SYSLOG, "172.17.0.1"),
    ],
)
def test_prefix_is_peeled_and_the_line_parsed(line: str, kind: str, client: str) -> None:
    decoder = LineDecoder("auto")
    result = decoder.decode(line)
    assert isinstance(result, Request), result
    assert result.client_ip == client
    assert decoder.wrapper == kind


def test_docker_stamp_is_kept_as_the_envelope_time() -> None:
    decoder = LineDecoder("auto")
    assert isinstance(decoder.decode("2024-04-16T09:20:21.123456789Z " + GIN), Request)
    assert decoder.envelope is not None and decoder.envelope.time == "2024-04-16T09:20:21.123456789Z"


def test_a_log_only_record_is_not_held_as_a_partial() -> None:
    decoder = LineDecoder("nginx")
    result = decoder.decode(json.dumps({"log": COMBINED}))
    assert isinstance(result, Request) and not decoder.holding


def test_a_real_docker_partial_is_still_held() -> None:
    decoder = LineDecoder("nginx")
    first = json.dumps({"log": COMBINED[:40], "stream": "stdout", "time": "2020-11-22T17:19:05Z"})
    rest = json.dumps({"log": COMBINED[40:] + "\n", "stream": "stdout", "time": "2020-11-22T17:19:05Z"})
    assert decoder.decode(first) is None and decoder.holding
    assert isinstance(decoder.decode(rest), Request)


@pytest.mark.parametrize(
    "prefix", ["\u280b ", "    ", "\t", "ollama serve> ", "2024-04-16 09:20:21,123 stdout: ", "\x1b[2K\r"]
)
def test_gin_record_behind_any_prefix(prefix: str) -> None:
    for fmt in ("ollama", "auto"):
        result = LineDecoder(fmt).decode(prefix + GIN)
        assert isinstance(result, Request) and result.client_ip == "192.168.70.194", (fmt, prefix, result)


@pytest.mark.parametrize(
    "line",
    [
        "xx [GIN] 2024/04/16 - 09:20:21 | 200 | broken",
        '[GIN] 2024/04/16 - 09:20:21 | 200 |      15.173µs |  not-an-address | GET      "/"',
        "prefix [GIN] nothing else",
    ],
)
def test_a_gin_bearing_line_is_never_skipped_silently(line: str) -> None:
    result = LineDecoder("ollama").decode(line)
    assert isinstance(result, Reject) and result.reason.startswith("gin:"), result


def test_empty_gin_client_is_an_empty_client() -> None:
    line = '[GIN] 2025/03/21 - 10:00:04 | 200 |        19.5µs |                 | GET      "/api/version"'
    result = LineDecoder("auto").decode(line)
    assert isinstance(result, Request) and result.client_ip == ""


@pytest.mark.parametrize(
    "line",
    [
        # Apache httpd's log documentation (2.4 and 2.2 error log examples).
        "[Fri Sep 09 10:42:29.902022 2011] [core:error] [pid 35708:tid 4328636416] [client 72.15.99.187] "
        "File does not exist: /usr/local/apache2/htdocs/favicon.ico",
        "[Wed Oct 11 14:32:52 2000] [error] [client 127.0.0.1] client denied by server configuration: "
        "/export/home/live/ap/htdocs/test",
        # Spring Boot's console format (its logging documentation), with and without the stamp.
        "2024-08-22T10:19:51.775Z  INFO 127290 --- [myapp] [           main] o.s.b.d.f.logexample.MyApplication"
        "       : Starting MyApplication using Java 17.0.12",
        "ERROR 1 --- [nio-8080-exec-1] o.a.c.c.C.[.[.[/].[dispatcherServlet]    : Servlet.service() failed",
        # A shell prompt pasted with the output (ollama/ollama#6408).
        "(base) [root@ecs-lcdsj ~]# OLLAMA_DEBUG=1 ollama serve 2>&1 | tee server.log",
        "root@gpu-box:~# docker logs ollama 2>&1 | ollama-monitor check -",
    ],
)
@pytest.mark.parametrize("fmt", ["nginx", "apache", "haproxy", "traefik"])
def test_other_programs_lines_are_skipped_not_rejected(line: str, fmt: str) -> None:
    assert isinstance(LineDecoder(fmt).decode(line), Skip)


def test_check_and_ingest_read_standard_input(tmp_path: Path, cli: CliRunner) -> None:
    text = "\n".join(["2024-04-16T09:20:21.123456789Z " + GIN, "hello", COMBINED]) + "\n"
    proc = cli("check", "--json", "-", input=text)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)["files"][0]
    assert (report["path"], report["lines"], report["parsed"]) == ("-", 3, 2)
    config = tmp_path / "monitor.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "db.sqlite"}"\n')
    first = cli("--config", str(config), "ingest", "--json", "-", input=text)
    assert first.returncode == 0, first.stderr
    stored = json.loads(first.stdout)["files"][0]
    assert (stored["path"], stored["source"], stored["inserted"]) == ("-", "stdin", 2)
    again = cli("--config", str(config), "ingest", "--json", "-", input=text)
    assert json.loads(again.stdout)["files"][0]["inserted"] == 0  # idempotent, like a file


RAW_BYTES = [
    (
        b'203.0.113.40 - - [21/Mar/2025:08:52:35 +0000] "GET /a\xff\xfe HTTP/1.1" 404 19 "-" "curl/8.5.0 \xff" 21 '
        b'"ollama@docker" "http://172.18.0.5:11434" 0ms',
        "traefik",
    ),
    (
        b"Dec  9 13:01:26 localhost haproxy[28029]: 203.0.113.41:39759 [09/Dec/2013:12:59:46.633] loadbalancer "
        b'default/instance8 0/51536/1/48082/99627 200 83285 - - ---- 87/87/87/1/0 0/67 {\xff\xfe} "GET /p/\xff HTTP/1.1"',
        "haproxy",
    ),
    (b'203.0.113.42 - - [21/Mar/2025:08:52:35 +0000] "GET /a\xff HTTP/1.1" 404 19 "-" "curl \xff"', "nginx"),
    (
        b'{"level":"info","ts":1700000000.1,"logger":"http.log.access","msg":"handled request","request":'
        b'{"remote_ip":"203.0.113.43","method":"GET","uri":"/\xff","headers":{"User-Agent":["x\xff"]}},'
        b'"status":200,"size":1,"duration":0.1}',
        "caddy",
    ),
    (
        b'{"ClientAddr":"203.0.113.44:5555","DownstreamStatus":200,"Duration":1000000,"RequestMethod":"POST",'
        b'"RequestPath":"/api/pull\xff","StartUTC":"2025-03-21T08:52:44Z"}',
        "traefik",
    ),
]


@pytest.mark.parametrize(("raw", "fmt"), RAW_BYTES, ids=[f"{f}-{i}" for i, (_r, f) in enumerate(RAW_BYTES)])
def test_raw_non_utf8_bytes_never_hide_the_sender(raw: bytes, fmt: str) -> None:
    """Bytes as the readers decode them (UTF-8, backslashreplace): parsed, the bytes visible as `\\xHH`."""
    text = raw.decode("utf-8", "backslashreplace")
    for given in (fmt, "auto"):
        decoder = LineDecoder(given)
        result = decoder.decode(text)
        assert isinstance(result, Request), (given, result)
        assert result.client_ip.startswith("203.0.113.") and decoder.detected == fmt
        assert result.path is not None and "\\xff" in result.path
