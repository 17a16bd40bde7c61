"""LineDecoder: turns the raw lines of one file (or stream) into ParseResults.

For each line the decoder peels the wrapper (see `monitor.parsers.wrappers`: Docker json-file, CRI,
`journalctl -o json`, journald/syslog text prefixes, docker compose and kubectl prefixes), picks the
format and calls the format's pure parser.

- Wrapper: decided from the first line, then kept (the Gin parser finds its record behind any prefix,
  so a Gin line with a prefix is checked for a known wrapper, whose facts the envelope keeps); it is re-detected only when a line does not fit
  it (a wrapped kind whose prefix is missing, or a plain line that does not parse as a request). So a
  plain file costs one extra call and one type check per line over calling the parser directly.
- Format: fixed by the caller, or `auto`: detected from the first line that a format's `sniff`
  accepts (on the unwrapped text). Until a format is detected, lines are Skipped ("format not
  detected"); a source that never detects one shows `detected is None`. In `auto`, a line the current
  format does not read as a request is sniffed again, and the format that reads it becomes the current
  one (files that mix formats, like `docker compose logs` of a proxy and Ollama).
- Split records (Docker json-file lines over 16 KiB, CRI `P` records) are held per stream and joined
  with the following records; `decode` returns None for the held parts. A joined line is capped at
  `MAX_JOINED` characters: beyond that it is dropped with one Reject.

Never raises for any input text.
"""

from __future__ import annotations

from monitor.core.records import ParseResult, Reject, Request, Skip
from monitor.parsers import registry
from monitor.parsers import wrappers as wr
from monitor.parsers.context import ParseContext, ParseFn

MAX_JOINED = 8 * 1024 * 1024

_UNDETECTED = Skip("format not detected")
# Formats whose parser finds its record anywhere in the line (so a wrapper may still precede it).
_FOUND_INSIDE = frozenset({"ollama"})


class LineDecoder:
    """Stateful per-file decoder.

    `detected` is the format in use (None until `auto` detects one); `wrapper` is the wrapper kind in
    use (None before the first line); `envelope` is the last wrapper record peeled (None for plain
    lines), whose `time`/`cursor` a source may keep.
    """

    def __init__(self, fmt: str = "auto", ctx: ParseContext | None = None) -> None:
        self.fmt = fmt
        self.ctx = ctx or ParseContext()
        self.auto = fmt == "auto"
        self.detected: str | None = None if self.auto else fmt
        self._parse: ParseFn | None = None if self.auto else registry.get(fmt).parse
        self.wrapper: str | None = None
        self.envelope: wr.Peeled | None = None
        self._held: dict[str, list[str]] = {}
        self._held_size: dict[str, int] = {}
        self._fast: ParseFn | None = None  # the parser, while the wrapper is plain: the fast path
        self._found_inside = self.detected in _FOUND_INSIDE

    @property
    def holding(self) -> bool:
        """True while pieces of a split record wait for their end (a source should not checkpoint
        past their first byte if it wants a restart to see the whole line)."""
        return bool(self._held)

    def decode(self, line: str) -> ParseResult | None:
        """Return the result for one line (without its newline); None while a split record waits."""
        fast = self._fast
        if fast is not None:
            result = fast(line, self.ctx)
            if result.__class__ is Request:
                if self._found_inside and line[:1] != "[":
                    return self._prefixed(line, result)
                return result
            return self._plain_miss(line, result)
        return self._slow(line)

    def _prefixed(self, line: str, result: ParseResult) -> ParseResult | None:
        """A Gin record found behind a prefix: a known wrapper still gives its facts (envelope)."""
        kind = wr.detect(line)
        if kind == wr.PLAIN:
            return result
        self._set_wrapper(kind)
        return self._wrapped(line)

    # -- slow paths ---------------------------------------------------------------------------------

    def _plain_miss(self, line: str, result: ParseResult) -> ParseResult | None:
        """A plain line that is no request: maybe a wrapper starts here, maybe another format (auto)."""
        kind = wr.detect(line)
        if kind != wr.PLAIN:
            self._set_wrapper(kind)
            return self._wrapped(line)
        return self._other_format(line, result) if self.auto else result

    def _slow(self, line: str) -> ParseResult | None:
        """No fast path: the first line, a wrapped file, or a plain file before `auto` detects a format."""
        if self.wrapper is None:
            if line.startswith("\ufeff"):  # a byte-order mark before the first line
                line = line[1:]
            self._set_wrapper(wr.detect(line))
        if self.wrapper == wr.PLAIN:
            result = self._parse_text(line)
            if result.__class__ is Request:
                if self._found_inside and line[:1] != "[":
                    return self._prefixed(line, result)
                return result
            kind = wr.detect(line)
            if kind == wr.PLAIN:
                return result
            self._set_wrapper(kind)
        return self._wrapped(line)

    def _wrapped(self, line: str) -> ParseResult | None:
        peeled = wr.peel(self.wrapper or wr.PLAIN, line)
        if peeled is None:  # the line lacks the wrapper in use: find what it has
            kind = wr.detect(line)
            self._set_wrapper(kind)
            peeled = wr.peel(kind, line) or wr.Peeled(wr.PLAIN, line)
        self.envelope = peeled if peeled.kind != wr.PLAIN else None
        text = peeled.text
        if text is None:
            return Skip(peeled.reason or "wrapper without a line")
        if peeled.partial or (self._held and peeled.kind + ":" + peeled.stream in self._held):
            joined = self._join(peeled.kind + ":" + peeled.stream, text, peeled.partial)
            if joined is None or isinstance(joined, Reject):
                return joined
            text = joined
        return self._parse_text(text)

    def _parse_text(self, text: str) -> ParseResult:
        parse = self._parse
        if parse is None:
            name = registry.sniff(text)
            if name is None:
                return _UNDETECTED
            self._use(name)
            parse = registry.get(name).parse
        result = parse(text, self.ctx)
        if result.__class__ is Request or not self.auto:
            return result
        return self._other_format(text, result)

    def _other_format(self, text: str, result: ParseResult) -> ParseResult:
        """In auto: when the current format did not read a request, try the format the line sniffs as."""
        name = registry.sniff(text)
        if name is None or name == self.detected:
            return result
        other = registry.get(name).parse(text, self.ctx)
        if other.__class__ is Request:
            self._use(name)
            return other
        return result

    def _join(self, stream: str, text: str, partial: bool) -> str | Reject | None:
        """Hold a partial piece of `stream` (wrapper kind and stream name); on the last piece return the
        whole line, or a Reject when it is too long."""
        pieces = self._held.setdefault(stream, [])
        size = self._held_size.get(stream, 0) + len(text)
        if size > MAX_JOINED:
            # Keep dropping pieces until the line ends, then report it once.
            pieces.clear()
            pieces.append("")
            self._held_size[stream] = MAX_JOINED + 1
            if partial:
                return None
            del self._held[stream], self._held_size[stream]
            return Reject(f"split line longer than {MAX_JOINED} characters")
        pieces.append(text)
        self._held_size[stream] = size
        if partial:
            return None
        del self._held[stream], self._held_size[stream]
        return "".join(pieces)

    def _use(self, name: str) -> None:
        self.detected = name
        self._found_inside = name in _FOUND_INSIDE
        self._parse = registry.get(name).parse
        self._fast = self._parse if self.wrapper == wr.PLAIN else None

    def _set_wrapper(self, kind: str) -> None:
        self.wrapper = kind
        if kind == wr.PLAIN:
            self.envelope = None
        self._fast = self._parse if kind == wr.PLAIN else None
