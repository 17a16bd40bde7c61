"""Keep the architecture's boundaries true by walking every module's imports with `ast`.

- records and errors import nothing of ours; config imports only those.
- Heavy libraries stay in their stage: SQLAlchemy in monitor.store, watchdog in monitor.sources,
  scikit-learn in monitor.detector, apprise in monitor.targets (the one owner of alert services), pandas in features/summary/detector.
- Nothing imports monitor.daemon or monitor.cli except the CLI itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "monitor"

HEAVY = {
    "sqlalchemy": ("monitor.store",),
    "watchdog": ("monitor.sources",),
    "sklearn": ("monitor.detector",),
    "joblib": ("monitor.detector",),
    "apprise": ("monitor.targets",),
    "pandas": ("monitor.features", "monitor.summary", "monitor.detector", "monitor.pipeline"),
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
    for leaf in ("monitor.records", "monitor.errors"):
        ours = {i for i in mods[leaf] if i.startswith("monitor")}
        assert not ours, f"{leaf} imports {ours}"
    ours = {
        i.rsplit(".", 1)[0] if i.count(".") > 1 else i
        for i in mods["monitor.config"]
        if i.startswith("monitor")
    }
    assert ours <= {"monitor.errors", "monitor.records", "monitor"}, ours


def test_heavy_libraries_stay_in_their_stage() -> None:
    for module, imports in modules().items():
        for lib, allowed in HEAVY.items():
            if any(i == lib or i.startswith(lib + ".") for i in imports):
                assert module.startswith(allowed), f"{module} imports {lib}; only {allowed} may"


def test_nothing_imports_the_daemon_or_cli() -> None:
    for module, imports in modules().items():
        if module.startswith(("monitor.cli", "monitor.daemon")) or module == "monitor.__main__":
            continue
        bad = {i for i in imports if i.startswith(("monitor.cli", "monitor.daemon"))}
        assert not bad, f"{module} imports {bad}"
