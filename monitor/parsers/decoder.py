"""LineDecoder: turns raw lines of one file (or stream) into ParseResults.

Peels wrappers (Docker json-file records, `journalctl -o json` records, syslog/journald text
prefixes, docker compose and kubectl prefixes), picks the format (given, or `auto`: detected from the
first request-looking lines of the file, re-detected per line when a line does not fit), and calls the
format's pure parser.

(Minimal first version: no wrappers yet.)
"""

from __future__ import annotations

from monitor import parsers
from monitor.parsers import ParseContext
from monitor.records import ParseResult, Reject


class LineDecoder:
    """Stateful per-file decoder. `detected` is the format in use (None until auto detects one)."""

    def __init__(self, fmt: str = "auto", ctx: ParseContext | None = None) -> None:
        self.fmt = fmt
        self.ctx = ctx or ParseContext()
        self.detected: str | None = None if fmt == "auto" else fmt
        self._parse = None if fmt == "auto" else parsers.get(fmt).parse

    def decode(self, line: str) -> ParseResult | None:
        """Return the result for one line (without its newline); None while a split record waits."""
        if self._parse is None:
            name = parsers.sniff(line)
            if name is None:
                return Reject("unknown format")
            self.detected = name
            self._parse = parsers.get(name).parse
        return self._parse(line, self.ctx)
