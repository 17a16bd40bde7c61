"""Make attacker-controlled text safe to show: in chat, in email, and in a terminal.

Every byte of a log line is attacker-controlled: client IPs, paths, user agents, forwarded-for
values. Before such text reaches a notification or a screen it goes through here:

- `clean(text, max_len)` removes what can drive a terminal or fake a layout: ANSI/VT escape
  sequences (CSI, OSC, DCS, ...), C0/C1 control characters (newlines too, unless kept), zero-width
  characters and the bidirectional overrides of "Trojan Source"; then caps the length with an ellipsis.
- `neutralise(text)` defuses the mention and link syntax of the common chat services, so a user agent
  cannot page `@channel`, hide a link behind friendly text or be clicked: Slack `<!channel>`,
  `<!here>`, `<@U123>`, `<#C123>`, `<https://x|y>`; Discord/Teams `@everyone`, `@here`, `<@123>`,
  `<@&role>`; Markdown links and images `[x](y)`; URLs and host names, glued to a word or not, in any
  script (`http://` -> `hxxp://`, dots and IDNA dot look-alikes in a host -> `[.]`); and
  zero-width/invisible characters that would split a keyword past a filter.
- `for_terminal(text)` shows control characters as visible escapes (`\\x1b`) instead of obeying them.
- `json_text(data)` is JSON for a terminal or a pipe: C1 controls and invisibles escaped too.

This does not rely on any one apprise plugin's escaping: the monitor sends the result as plain text
(`body_format="text"`) to every service. Pure standard library; the audit, summary and CLI code
reuse it. All functions are idempotent: applying one twice gives the same text as once.
"""

from __future__ import annotations

import json
import re
import unicodedata

ELLIPSIS = "\u2026"

# ESC-introduced sequences: CSI (ESC [ ... final), OSC / DCS / SOS / PM / APC strings ended by BEL or
# ST (ESC \) or left unterminated, and two-byte escapes. The 8-bit C1 forms (0x9b CSI, 0x9d OSC, ...)
# are matched too: some terminals obey them.
_ANSI = re.compile(
    r"""
    (?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?              # CSI: parameters, intermediates, final byte
    | (?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])       # OSC, DCS, SOS, PM, APC ...
      .*?(?:\x07|\x1b\\|\x9c|$)                     # ... up to BEL or ST (or the end of the text)
    | \x1b[ -/]*[0-~]?                              # any other escape (charset selection, RIS, ...)
    """,
    re.VERBOSE | re.DOTALL,
)
# Invisible characters: zero-width spaces and joiners, word joiner, invisible operators, BOM, soft
# hyphen, Mongolian vowel separator, and the bidi embeddings/overrides/isolates (Trojan Source).
_INVISIBLE = (
    "\u00ad\u180e\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
    "\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069\ufeff"
)
_INVISIBLE_RE = re.compile(f"[{_INVISIBLE}]")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_KEEP_NL_RE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
_SPACES_RE = re.compile(r"[ \t]{2,}")

# Mentions: `@` directly before a name character. A full-width commercial at (U+FF20) reads the same
# to a person and is a mention in no service.
_AT_RE = re.compile(r"@(?=[\w!#&.-])")
# Angle brackets delimit Slack's control sequences (<!channel>, <@U1>, <#C1>, <url|text>), Discord's
# (<@123>, <@&1>, <#1>, <t:1:R>, <:emoji:1>) and HTML. Single guillemets read alike and mean nothing.
_ANGLES = str.maketrans({"<": "\u2039", ">": "\u203a"})
# Markdown links and images: `[text](url)`, `![alt](url)`; separate the two halves.
_MD_LINK_RE = re.compile(r"\]\s*\(")
# Characters that IDNA (UTS 46) and browsers read as the dot between host labels: the ideographic,
# full-width and half-width full stops, one dot leader and the small full stop. Between two word
# characters they become `[.]` like an ASCII dot (`evil\u3002example` -> `evil[.]example`).
_DOT_LOOKALIKES = "\u3002\uff0e\uff61\u2024\ufe52"
_LOOKALIKE_DOT_RE = re.compile(rf"(?<=[\w-])[{_DOT_LOOKALIKES}](?=\w)")
# URLs with a scheme (`http://`, `javascript:` is harmless once the brackets are gone) and `www.` hosts.
# No word boundary before the scheme: chat services link `_https://x` and `1http://x` all the same.
# The scheme is at most 16 characters (the match starts no earlier), which keeps the search linear.
# The host ends where another `scheme://` starts (`http://http://x` is two URLs), defanged or not
# (`http://http.://` -> `hxxp://http.[:]://`, which a second pass leaves as it is).
_SCHEME = r"[a-z][a-z0-9+.\-]{0,15}"
_URL_RE = re.compile(rf"({_SCHEME})://((?:(?!{_SCHEME}(?:\[:\])?://)[^\s/?#\u2039\u203a|])*)", re.IGNORECASE)
_WWW_RE = re.compile(r"(?<![^\W_])www\.([^\s/?#\u2039\u203a|]+)", re.IGNORECASE)
# A bare host name (`evil.example`, `backup.zip`, `hf.co`, `пример.рф`): chat services link such names
# by their top-level domain, and new ones (.zip, .mov) look like file names, so every dotted name whose
# last label starts with a letter (any script) is defanged. Addresses and versions (203.0.113.7,
# curl/8.5.0) end in a digit.
_BARE_HOST_RE = re.compile(r"(?<![\w.\-])((?:\w[\w\-]*\.)+[^\W\d_][\w\-]*)(?![\w\-]|\.\w)")
_DEFANGED_SCHEMES = {
    "http": "hxxp",
    "https": "hxxps",
    "ftp": "fxp",
    "ftps": "fxps",
    "ws": "wxs",
    "wss": "wxss",
}


def clean(text: object, max_len: int = 500, *, keep_newlines: bool = False) -> str:
    """Return `text` without escape sequences, control characters or bidi overrides, at most `max_len` long.

    Given any value (None becomes ""; others are turned into text with `str`), remove ANSI/VT escape
    sequences and C0/C1 control characters (each replaced by a space so words stay apart; newlines
    are kept only with `keep_newlines`), remove zero-width and bidi characters, replace other
    unprintable code points with "?", squeeze runs of spaces (single-line text only: with
    `keep_newlines` the lines keep their inner spacing and lose trailing blanks), strip the ends,
    and cut to `max_len` characters ending in an ellipsis when longer. `max_len` must be >= 1.
    """
    if text is None:
        return ""
    s = text if isinstance(text, str) else str(text)
    if s.isascii() and s.isprintable() and len(s) <= max_len and "  " not in s and s == s.strip():
        return s  # the common case: nothing to do
    s = _ANSI.sub("", s)
    s = _INVISIBLE_RE.sub("", s)
    s = _CONTROL_KEEP_NL_RE.sub(" ", s.replace("\r\n", "\n")) if keep_newlines else _CONTROL_RE.sub(" ", s)
    # Other unprintable code points (unassigned, private use, format characters) become "?".
    s = "".join(c if c.isprintable() or c == "\n" else _unprintable(c) for c in s)
    if keep_newlines:
        # Keep indentation and alignment inside lines; only the line ends are trimmed.
        s = "\n".join(line.rstrip() for line in s.split("\n")).strip("\n")
    else:
        s = _SPACES_RE.sub(" ", s).strip()
    return cap(s, max_len)


def cap(text: str, max_len: int) -> str:
    """Return `text` cut to at most `max_len` characters, ending in an ellipsis when it was cut."""
    if max_len < 1:
        raise ValueError("max_len must be at least 1")
    if len(text) <= max_len:
        return text
    return text[: max_len - 1].rstrip() + ELLIPSIS


def _unprintable(c: str) -> str:
    if c in " \t":
        return c
    if unicodedata.category(c).startswith("Z"):
        return " "  # exotic spaces and line/paragraph separators are harmless as plain spaces
    return "?"


def neutralise(text: str) -> str:
    """Return `text` with mention, link and invisible-character tricks defused, for any chat service.

    Given text (ideally already `clean`ed), remove zero-width and bidi characters, turn `<` and `>`
    into look-alike guillemets (kills Slack's and Discord's control sequences and HTML), turn `@`
    before a name into a full-width at (no `@everyone`, `@here`, `@channel`, `@user`), split Markdown
    links `[x](y)` into `[x] (y)`, and defang URLs and host names: `http://evil.example/x` ->
    `hxxp://evil[.]example/x`, `www.evil.example` -> `www[.]evil[.]example`, `evil.example` ->
    `evil[.]example`. The result reads the same to a person and is clickable and mentionable nowhere.
    Idempotent.
    """
    s = _INVISIBLE_RE.sub("", text)
    s = s.translate(_ANGLES)
    s = _AT_RE.sub("\uff20", s)
    s = _LOOKALIKE_DOT_RE.sub("[.]", s)
    if "://" in s:
        s = _URL_RE.sub(_defang_url, s)
    if "www" in s.lower():
        s = _WWW_RE.sub(lambda m: "www[.]" + _defang_host(m.group(1)), s)
    s = _BARE_HOST_RE.sub(lambda m: _defang_host(m.group(1)), s)
    # Last: defanging writes `[.]`, which can close a Markdown link text (`x.(y)` -> `x[.](y)`).
    s = _MD_LINK_RE.sub("] (", s)
    return s


def _defang_host(host: str) -> str:
    return host.replace("[.]", ".").replace(".", "[.]")


_JSON_ESCAPE_RE = re.compile(f"[\x7f-\x9f\u2028\u2029{_INVISIBLE}]")


def json_text(data: object, *, indent: int | None = 2) -> str:
    """Return `data` as JSON whose every control, invisible or bidi character is a `\\uXXXX` escape.

    `json.dumps(ensure_ascii=False)` escapes C0 controls only; C1 controls (U+0080-U+009F, which
    some terminals obey: 0x9b is CSI), line/paragraph separators and bidi overrides would reach a
    terminal or a log viewer raw. Other non-ASCII text stays readable. The result parses back to
    the same data.
    """
    text = json.dumps(data, ensure_ascii=False, indent=indent, default=str)
    return _JSON_ESCAPE_RE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _defang_url(match: re.Match[str]) -> str:
    scheme, host = match.group(1), match.group(2)
    lower = scheme.lower()
    if lower in _DEFANGED_SCHEMES.values():
        new_scheme = scheme  # already defanged
    elif lower in _DEFANGED_SCHEMES:
        new_scheme = _DEFANGED_SCHEMES[lower]
    else:
        new_scheme = scheme + "[:]" if not scheme.endswith("[:]") else scheme
    # Keep "www[.]" from the second pass: the host is defanged here already.
    return f"{new_scheme}://{_defang_host(host)}"


def safe_text(text: object, max_len: int = 500, *, keep_newlines: bool = False) -> str:
    """Return `neutralise(clean(text, ...))` capped at `max_len`: the one call for text bound for a notification."""
    return cap(neutralise(clean(text, max_len * 2, keep_newlines=keep_newlines)), max_len)


def for_terminal(text: object, max_len: int | None = None) -> str:
    """Return `text` with every control character shown as a visible escape, safe to print to a terminal.

    ESC becomes `\\x1b`, a newline `\\n`, a tab `\\t`, other C0/C1 characters `\\xNN`, and invisible or
    bidi characters `\\u200b`-style escapes, so an operator sees an injection attempt instead of
    having the terminal obey it. Print the result with Rich markup off (`markup=False`). Optionally
    capped at `max_len` characters.
    """
    if text is None:
        return ""
    s = text if isinstance(text, str) else str(text)
    if not (s.isascii() and s.isprintable()):
        s = "".join(_visible(c) for c in s)
    return cap(s, max_len) if max_len is not None else s


def _visible(c: str) -> str:
    if c == "\n":
        return "\\n"
    if c == "\t":
        return "\\t"
    if c == "\r":
        return "\\r"
    code = ord(c)
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return f"\\x{code:02x}"
    if c in _INVISIBLE or not c.isprintable() and unicodedata.category(c) != "Zs":
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
    return c
