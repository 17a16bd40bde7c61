"""Time zones of log sources: a named zone, or the host's own ("local")."""

from __future__ import annotations

import os
from datetime import datetime, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def tzinfo_for(name: str) -> tzinfo:
    """Return a tzinfo for a source's `timezone`. 'local' is the host's zone, with its DST rules
    ($TZ, else the /etc/localtime link), falling back to the current fixed offset."""
    if name != "local":
        return ZoneInfo(name)
    env = os.environ.get("TZ", "").lstrip(":")
    candidates = [env] if env else []
    target = str(Path("/etc/localtime").resolve())
    if "zoneinfo/" in target:
        candidates.append(target.split("zoneinfo/", 1)[1])
    for candidate in candidates:
        try:
            return ZoneInfo(candidate)
        except (ZoneInfoNotFoundError, ValueError):
            continue
    local = datetime.now().astimezone().tzinfo
    assert local is not None  # astimezone() always sets one
    return local
