"""The package map is the architecture: imports only go down the layers, and no module imports itself
back through others (a cycle), counting lazy imports inside functions as well.

Layers, lowest first (a module may import its own layer's package and anything below):

    core < config < parsers < store < sources, ingest < alerts < detect < reports < service < cli

`core` is the vocabulary (records, errors, sanitising, endpoint categories); `cli` is the only
package that prints; nothing imports `service` but `cli`.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "monitor"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("monitor.core",),
    ("monitor.config",),
    ("monitor.parsers",),
    ("monitor.store",),
    ("monitor.sources", "monitor.ingest"),
    ("monitor.alerts",),
    ("monitor.detect",),
    ("monitor.reports",),
    ("monitor.service",),
    ("monitor.cli", "monitor.__main__"),
)


def _name(file: Path) -> str:
    rel = file.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(rel.parts).removesuffix(".__init__")


def _resolve(module: str, level: int, current: str, is_package: bool) -> str:
    if level == 0:
        return module
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, module] if module else base)


def imports() -> dict[str, set[str]]:
    """Every module of the package -> the modules of ours it imports (module-level and lazy)."""
    files = {_name(f): f for f in PACKAGE.rglob("*.py")}
    found: dict[str, set[str]] = {}
    for name, file in files.items():
        is_package = file.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node.module or "", node.level, name, is_package)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in files else base)
        ours: set[str] = set()
        for t in targets:
            while t and t not in files:
                t = t.rpartition(".")[0]
            if t.startswith("monitor") and t != name:
                ours.add(t)
        found[name] = ours
    return found


def layer(module: str) -> int:
    if module == "monitor":
        return 0
    for i, packages in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in packages):
            return i
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS")


def test_every_module_has_a_layer() -> None:
    for module in imports():
        layer(module)


def test_imports_only_go_down() -> None:
    upward = [
        f"{m} (layer {layer(m)}) imports {t} (layer {layer(t)})"
        for m, targets in imports().items()
        for t in targets
        if layer(t) > layer(m)
    ]
    assert not upward, "\n".join(sorted(upward))


def test_same_layer_packages_do_not_import_each_other_both_ways() -> None:
    edges = {
        (m.split(".")[1], t.split(".")[1]) for m, ts in imports().items() for t in ts if "." in m and "." in t
    }
    both = sorted({tuple(sorted(e)) for e in edges if e[0] != e[1] and (e[1], e[0]) in edges})
    assert not both, both


def test_no_import_cycle() -> None:
    graph = imports()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_nothing_imports_the_service_or_cli() -> None:
    for module, targets in imports().items():
        if module.startswith(("monitor.cli", "monitor.service")) or module == "monitor.__main__":
            continue
        bad = {t for t in targets if t.startswith(("monitor.cli", "monitor.service"))}
        assert not bad, f"{module} imports {bad}"


def test_the_top_level_holds_a_handful_of_modules() -> None:
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(loose) <= 4, loose


def test_no_module_over_500_lines() -> None:
    big = {
        str(f.relative_to(PACKAGE.parent)): n
        for f in PACKAGE.rglob("*.py")
        if (n := len(f.read_text(encoding="utf-8").splitlines())) > 500
    }
    assert not big, big
