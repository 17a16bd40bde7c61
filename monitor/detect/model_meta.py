"""Small facts a saved model records: the libraries' versions and the model file's SHA-256."""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path

import numpy as np

from monitor import __version__


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def versions() -> dict[str, str]:
    """Library versions, read from the installed distributions (importing scikit-learn costs ~1 s)."""
    from importlib import metadata

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "scikit-learn": version("scikit-learn"),
        "numpy": np.__version__,
        "pandas": version("pandas"),
        "python": platform.python_version(),
        "ollama-monitor": __version__,
    }
