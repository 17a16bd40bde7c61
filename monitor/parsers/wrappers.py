"""Wrappers that log shippers put around a line, and how to peel them off.

A wrapper is transparent: what is left after peeling is the line the program wrote, for every format.

Kinds (`detect` tells which one a line has, `peel` removes it):

- `plain`: no wrapper.
- `docker`: a Docker json-file record `{"log":"...\\n","stream":"stdout","time":"RFC3339Nano"}`. A
  record whose `log` does not end in a newline is a PARTIAL (Docker splits lines over 16 KiB): the
  decoder joins it with the following records of the same stream.
- `cri`: a Kubernetes CRI (containerd/CRI-O) record `TIME stdout F text`; tag `P` marks a partial.
- `journal-json`: a `journalctl -o json` record; `MESSAGE` is a string, an array of byte values (not
  UTF-8), or null (over the field size limit: the line is skipped).
- `syslog`: a text prefix from journald or a syslog daemon: `Jan 28 05:05:38 host ollama[373]: ` (the
  month name may be in any language, so the shape is matched, not the names), `short-precise`,
  `short-iso`, `short-full`, `short-unix`, RFC 3339 (`2025-01-28T05:05:38.12+00:00 host tag: `), an
  optional `<PRI>` and an optional host, RFC 5424 (`<165>1 TIME HOST APP PROCID MSGID SD `), and a
  `prog[pid]: ` tag alone.
- `compose`: docker compose's `ollama-1  | ` (optionally coloured).
- `kubectl`: `kubectl logs --prefix`'s `[pod/name/container] `.
- `timestamp`: `docker logs -t` / `kubectl logs --timestamps` RFC 3339 stamps, Docker Desktop's local
  `YYYY-MM-DD HH:MM:SS ` (the stamp is kept as the envelope's time).
- `process-manager`: `[0] ` of concurrently / npm-run-all.
- `grep`: a `path:` (`path:N:` with `-n`) that `grep -r`/`grep -H` puts before a JSON record.
- `compose` also covers `docker service logs` (`name.1.taskid@node    | `).

One level is peeled: the wrapped text is the program's own line. Peeling never raises.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from monitor.parsers.common import json_loads

PLAIN = "plain"
DOCKER = "docker"
CRI = "cri"
JOURNAL_JSON = "journal-json"
SYSLOG = "syslog"
COMPOSE = "compose"
KUBECTL = "kubectl"
STAMP = "timestamp"
PROCESS = "process-manager"
GREP = "grep"

KINDS = (PLAIN, DOCKER, CRI, JOURNAL_JSON, SYSLOG, COMPOSE, KUBECTL, STAMP, PROCESS, GREP)

_SYSLOG_TIME = (
    r"(?:"
    r"\S+ +\d{1,2} \d\d:\d\d:\d\d(?:\.\d+)?"  # Jan 28 05:05:38 (any language: the shape, not the names)
    r"|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?"  # RFC 3339, short-iso
    r"|\S+ \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \S+"  # short-full: Tue 2025-01-28 05:05:38 CET
    r"|\d{9,}\.\d+"  # short-unix
    r")"
)
_SYSLOG = re.compile(
    r" *+(?:"
    r"(?:<\d{1,3}>)?"
    + _SYSLOG_TIME
    + r"(?: \S+)? \S+?(?:\[\d+\])?: "  # host optional (HAProxy to remote syslog)
    r"|<\d{1,3}>1 \S+ \S+ \S+ \S+ \S+ (?:-|(?:\[(?:[^\]\\]|\\.)*+\])+) "  # RFC 5424
    r"|(?:<\d{1,3}>)?[\w./-]{1,64}\[\d{1,10}\]: "  # a tag alone (HAProxy's documented examples)
    r")",
    re.ASCII,
)
_COMPOSE = re.compile(
    r"(?:\x1b\[[0-9;]*m)?[\w.@-]+ *\|(?:\x1b\[[0-9;]*m)? ", re.ASCII
)  # swarm: name.1.id@node
# `docker logs -t`, `kubectl logs --timestamps` (RFC 3339 nanoseconds), Docker Desktop (local `YYYY-MM-DD HH:MM:SS`).
_STAMP = re.compile(
    r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?) +",
    re.ASCII,
)
_PROCESS = re.compile(r"\[\d{1,4}\] ", re.ASCII)  # concurrently, npm-run-all: `[0] `
# `grep -r` / `grep -H` (`path:`) and `grep -n` (`path:123:`) before a JSON record.
_GREP = re.compile(r"[^\s:{\[\]\"]{1,1024}:(?:\d{1,12}:)?(?=\{)")
_KUBECTL = re.compile(r"\[[^\]\s/]+/[^\]\s/]+/[^\]\s]+\] ", re.ASCII)
_CRI = re.compile(r"(\d{4}-\d\d-\d\dT[\d:.]+(?:Z|[+-]\d\d:?\d\d)?) (stdout|stderr) ([FP])(?: |$)", re.ASCII)
# Text prefixes are short (a host name is at most 255 bytes): never scan further into a hostile line.
_PREFIX_SPAN = 1024


class Peeled(NamedTuple):
    """The program's line and what the wrapper said about it.

    `text` is None when the wrapper holds no line (then `reason` says why). `partial` marks a piece of a
    split line that the caller must join with the next pieces of the same `stream`.
    `time`/`cursor` are the wrapper's raw values (Docker or CRI time, journald realtime microseconds and
    cursor), kept for sources that checkpoint by cursor.
    """

    kind: str
    text: str | None
    partial: bool = False
    stream: str = ""
    time: str | None = None
    cursor: str | None = None
    reason: str = ""


def detect(line: str) -> str:
    """Return the wrapper kind of one raw line (`plain` when it has none or does not parse as one)."""
    for kind in _candidates(line):
        if peel(kind, line) is not None:
            return kind
    return PLAIN


def _candidates(line: str) -> tuple[str, ...]:
    if line.startswith("{"):
        if line.startswith(('{"log":', '{"stream":')):
            return (DOCKER,)
        if '"__REALTIME_TIMESTAMP"' in line or '"__CURSOR"' in line:
            return (JOURNAL_JSON,)
        return ()
    if line.startswith("["):
        return (KUBECTL, PROCESS)
    return (CRI, SYSLOG, COMPOSE, STAMP, GREP)


def peel(kind: str, line: str) -> Peeled | None:
    """Given a wrapper kind and a raw line, return the peeled line, or None if the line lacks that wrapper."""
    if kind == PLAIN:
        return Peeled(PLAIN, line)
    if kind == SYSLOG:
        m = _SYSLOG.match(line, 0, _PREFIX_SPAN)
        return None if m is None else Peeled(SYSLOG, line[m.end() :])
    if kind == COMPOSE:
        m = _COMPOSE.match(line, 0, _PREFIX_SPAN)
        return None if m is None else Peeled(COMPOSE, line[m.end() :])
    if kind == KUBECTL:
        m = _KUBECTL.match(line, 0, _PREFIX_SPAN)
        return None if m is None else Peeled(KUBECTL, line[m.end() :])
    if kind == STAMP:
        m = _STAMP.match(line, 0, _PREFIX_SPAN)
        return None if m is None else Peeled(STAMP, line[m.end() :], time=m[1])
    if kind == PROCESS:
        m = _PROCESS.match(line, 0, _PREFIX_SPAN)
        return None if m is None else Peeled(PROCESS, line[m.end() :])
    if kind == GREP:
        m = _GREP.match(line, 0, _PREFIX_SPAN)
        return None if m is None else Peeled(GREP, line[m.end() :])
    if kind == CRI:
        m = _CRI.match(line, 0, _PREFIX_SPAN)
        if m is None:
            return None
        return Peeled(CRI, line[m.end() :], m[3] == "P", m[2], m[1])
    if kind == DOCKER:
        return _docker(line)
    if kind == JOURNAL_JSON:
        return _journal(line)
    return None


def _load_object(line: str) -> dict[str, object] | None:
    try:
        value = json_loads(line)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _docker(line: str) -> Peeled | None:
    record = _load_object(line)
    if record is None:
        return None
    log = record.get("log", "")
    stream = record.get("stream", "")
    time = record.get("time")
    if (
        not isinstance(log, str)
        or not isinstance(stream, str)
        or ("log" not in record and "time" not in record)
    ):
        return None
    time_text = time if isinstance(time, str) else None
    if log.endswith("\n") or ("stream" not in record and "time" not in record):
        # Docker's json-file always writes stream and time; a record with only `log` (another
        # shipper's export) is a whole line, not a piece of one.
        return Peeled(DOCKER, _chomp(log), False, stream, time_text)
    return Peeled(DOCKER, log, True, stream, time_text)


def _journal(line: str) -> Peeled | None:
    record = _load_object(line)
    if record is None or ("__REALTIME_TIMESTAMP" not in record and "__CURSOR" not in record):
        return None
    realtime = record.get("__REALTIME_TIMESTAMP")
    cursor = record.get("__CURSOR")
    time_text = realtime if isinstance(realtime, str) else None
    cursor_text = cursor if isinstance(cursor, str) else None
    message = record.get("MESSAGE")
    if isinstance(message, list) and message and not all(isinstance(b, int) for b in message):
        message = message[0]  # a field logged more than once: journalctl lists every value
    if isinstance(message, str):
        return Peeled(JOURNAL_JSON, _chomp(message), False, "", time_text, cursor_text)
    if isinstance(message, list):
        try:
            data = bytes(message)  # ints outside 0-255 raise ValueError
        except (ValueError, TypeError):
            return Peeled(JOURNAL_JSON, None, False, "", time_text, cursor_text, "journal: bad MESSAGE bytes")
        text = data.decode("utf-8", "backslashreplace")
        return Peeled(JOURNAL_JSON, _chomp(text), False, "", time_text, cursor_text)
    if message is None:
        why = "journal: MESSAGE too large (null)" if "MESSAGE" in record else "journal: no MESSAGE"
    else:
        why = "journal: MESSAGE is not text"
    return Peeled(JOURNAL_JSON, None, False, "", time_text, cursor_text, why)


def _chomp(text: str) -> str:
    if text.endswith("\n"):
        text = text[:-1]
    if text.endswith("\r"):
        text = text[:-1]
    return text
