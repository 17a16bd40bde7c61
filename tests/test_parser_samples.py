"""One generic test drives every annotated sample log under tests/logs/<format>/ (the fail2ban way).

A sample file is a log whose lines are each preceded by an annotation saying what it must parse to:

    # options: {"timezone": "Europe/Berlin", "trusted_proxies": ["10.0.0.0/8"]}   (optional, first line)
    # expect: {"client_ip": "1.2.3.4", "ts": "2020-01-04T08:41:43+00:00", "method": "GET", ...}
    1.2.3.4 - - [04/Jan/2020:08:41:43 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8"
    # expect-skip
    Jan 28 05:05:38 host ollama[373]: time=... level=INFO msg="Listening on [::]:11434"
    # expect-reject
    garbage

`expect` compares the listed fields only, but must list ts, client_ip, method, path and status. The
directory name is the format given to the decoder; files in tests/logs/auto/ are decoded with `auto`
and may also say `"format": "nginx"` to check what was detected. The test also fails when a
registered format has no samples.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from monitor import parsers
from monitor.config import tzinfo_for
from monitor.core.records import Reject, Request, Skip
from monitor.parsers.decoder import LineDecoder

LOGS = Path(__file__).parent / "logs"
REQUIRED = {"ts", "client_ip", "method", "path", "status"}
MIN_SAMPLES = 10


@dataclass
class Sample:
    file: Path
    lineno: int
    line: str
    kind: str  # expect | skip | reject
    fields: dict[str, Any]
    options: dict[str, Any]


def _load_samples() -> list[Sample]:
    samples: list[Sample] = []
    for file in sorted(LOGS.glob("*/*.log")):
        options: dict[str, Any] = {}
        pending: tuple[str, dict[str, Any]] | None = None
        with file.open(encoding="utf-8", errors="surrogateescape", newline="\n") as fh:
            for lineno, raw in enumerate(fh, 1):
                line = raw.rstrip("\n")
                if pending is None:
                    if line.startswith("# options:"):
                        options = json.loads(line.split(":", 1)[1])
                    elif line.startswith("# expect:"):
                        pending = ("expect", json.loads(line.split(":", 1)[1]))
                    elif line.startswith("# expect-skip"):
                        pending = ("skip", {})
                    elif line.startswith("# expect-reject"):
                        pending = ("reject", {})
                    elif line.strip() and not line.startswith("#"):
                        raise AssertionError(f"{file}:{lineno}: sample line without an annotation")
                    continue
                samples.append(Sample(file, lineno, line, pending[0], pending[1], options))
                pending = None
        if pending is not None:
            raise AssertionError(f"{file}: annotation at the end without a line")
    return samples


SAMPLES = _load_samples()


def _decoder(sample: Sample) -> LineDecoder:
    fmt = sample.file.parent.name
    opts = sample.options
    ctx = parsers.ParseContext.build(
        tz=tzinfo_for(opts.get("timezone", "UTC")),
        trusted_proxies=opts.get("trusted_proxies", []),
        json_fields=opts.get("json_fields"),
    )
    return LineDecoder(fmt, ctx)


def test_every_format_has_samples() -> None:
    counts = {name: 0 for name in parsers.names()}
    for s in SAMPLES:
        fmt = s.file.parent.name
        if fmt in counts and s.kind == "expect":
            counts[fmt] += 1
    missing = {k: v for k, v in counts.items() if v < MIN_SAMPLES}
    assert not missing, f"formats with fewer than {MIN_SAMPLES} annotated request samples: {missing}"


@pytest.mark.parametrize(
    "sample", SAMPLES, ids=[f"{s.file.parent.name}/{s.file.name}:{s.lineno}" for s in SAMPLES]
)
def test_sample(sample: Sample) -> None:
    decoder = _decoder(sample)
    result = decoder.decode(sample.line)
    where = f"{sample.file}:{sample.lineno}"
    if sample.kind == "skip":
        assert isinstance(result, Skip), f"{where}: expected skip, got {result!r}"
        return
    if sample.kind == "reject":
        assert isinstance(result, Reject), f"{where}: expected reject, got {result!r}"
        return
    assert isinstance(result, Request), f"{where}: expected a request, got {result!r}"
    expected = dict(sample.fields)
    want_format = expected.pop("format", None)
    missing = REQUIRED - set(expected)
    assert not missing, f"{where}: annotation lacks {sorted(missing)}"
    if want_format is not None:
        assert decoder.detected == want_format, f"{where}: detected {decoder.detected}, want {want_format}"
    got = result._asdict()
    assert got["ts"].utcoffset() is not None and got["ts"].utcoffset().total_seconds() == 0, (
        f"{where}: ts not UTC"
    )
    for key, want in expected.items():
        value = got[key]
        if key == "ts":
            want = datetime.fromisoformat(want)
        if key == "latency_ms" and want is not None and value is not None:
            assert value == pytest.approx(want, rel=1e-6, abs=1e-6), f"{where}: latency_ms {value} != {want}"
            continue
        assert value == want, f"{where}: {key} = {value!r}, want {want!r}"
