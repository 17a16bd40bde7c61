"""Keep each heavy library inside its stage, by walking every module's imports with `ast`.

- `monitor.core` imports nothing of ours; `monitor.config` imports only `monitor.core`.
- SQLAlchemy only in monitor.store, watchdog in monitor.sources, scikit-learn in monitor.detect.model,
  apprise in monitor.alerts.targets (the one owner of alert services), pandas in monitor.detect and
  the summary.

The layers, cycles and module sizes are kept by tests/test_layers.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "monitor"

HEAVY = {
    "sqlalchemy": ("monitor.store",),
    "watchdog": ("monitor.sources",),
    "sklearn": ("monitor.detect.model",),
    "joblib": ("monitor.detect.model",),
    "apprise": ("monitor.alerts.targets",),
    "pandas": ("monitor.detect", "monitor.reports.summary"),
}


def modules() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for file in PACKAGE.rglob("*.py"):
        rel = file.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        imports: set[str] = set()
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imports.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imports.add(node.module)
                imports.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[name] = imports
    return found


def test_leaf_modules_import_nothing_of_ours() -> None:
    mods = modules()
    for name, imports in mods.items():
        if name.startswith("monitor.core"):
            ours = {i for i in imports if i.startswith("monitor") and not i.startswith("monitor.core")}
            assert not ours, f"{name} imports {ours}"
    ours = {i for i in mods["monitor.config"] if i.startswith("monitor")}
    assert all(i.startswith("monitor.core") for i in ours), ours


def test_heavy_libraries_stay_in_their_stage() -> None:
    for module, imports in modules().items():
        for lib, allowed in HEAVY.items():
            if any(i == lib or i.startswith(lib + ".") for i in imports):
                assert module.startswith(allowed), f"{module} imports {lib}; only {allowed} may"
