"""Where `summary --output FILE` goes: the format the file's name asks for, and a write that readers
never see half done."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from monitor.core.errors import MonitorError

BY_SUFFIX = {
    ".txt": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".json": "json",
}


def format_for(path: Path, fmt: str | None, configured: str) -> str:
    """The format to write path in: the one asked for, else its extension's, else `[summary] format`."""
    return fmt or BY_SUFFIX.get(path.suffix.lower(), configured)


def write_atomically(path: Path, text: str) -> None:
    """Write text to path through a temporary file in the same directory, so readers never see half a
    file; raise MonitorError when the directory does not exist."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise MonitorError(f"{path}: the directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
