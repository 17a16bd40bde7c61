"""The registry of log formats: every format module's `FORMATS`, by name, and `auto` detection.

Format modules do not register themselves: each declares a module-level `FORMATS` tuple of
`Format(...)` records, and this module imports them and collects the tuples (see README.md here).
"""

from __future__ import annotations

from monitor.parsers import caddy, clf, haproxy, ollama, traefik
from monitor.parsers.context import Format, ParseFn, SniffFn

MODULES = (caddy, clf, haproxy, ollama, traefik)

REGISTRY: dict[str, Format] = {fmt.name: fmt for module in MODULES for fmt in module.FORMATS}

# JSON formats first (cheap, unambiguous), then the text formats from most to least specific.
DETECT_ORDER = ("caddy", "traefik", "nginx", "ollama", "haproxy", "apache")


def register(name: str, parse: ParseFn, sniff: SniffFn, description: str = "") -> None:
    """Add (or replace) a format at run time; the formats shipped here are in `MODULES`."""
    REGISTRY[name] = Format(name, parse, sniff, description)


def get(name: str) -> Format:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown format {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def names() -> list[str]:
    return sorted(REGISTRY)


def sniff(line: str) -> str | None:
    """Return the name of the first format whose sniff accepts the (unwrapped) line, or None."""
    for name in DETECT_ORDER:
        fmt = REGISTRY.get(name)
        if fmt is not None and fmt.sniff(line):
            return name
    return None
