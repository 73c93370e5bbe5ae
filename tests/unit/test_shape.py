"""The code's shape, checked: PySyncObj stays inside consensus/, imports only run down
the layers, and no two modules import each other (directly or round a cycle).

Read from the source with `ast`, so it sees every import, also ones inside functions.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bazar", "cluster", "consensus", "web", "node", "frontend", "local", "chaos", "bench")

# Bottom to top; a module may import its own layer and the ones below it. The command
# line (bazar.cli) and the tools' command definitions sit on top of everything.
LAYERS = [
    ["bazar", "bazar.cluster"],
    ["bazar.consensus", "bazar.web"],
    ["bazar.node"],
    ["bazar.frontend"],
    ["bazar.local"],
    ["bazar.chaos", "bazar.bench"],
    ["bazar.cli", "bazar.__main__", "bazar.chaos.cli", "bazar.bench.cli"],
]


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            if parts[0] != "bazar":  # each folder installs as bazar.<folder> (setup.py)
                parts.insert(0, "bazar")
            found[".".join(parts)] = path
    return found


def imports(path: Path) -> set[str]:
    """Every absolute module name `path` imports (from-imports of names count as the module)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def layer(module: str) -> int:
    best = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (index, len(prefix))
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best[0]


def own_imports() -> dict[str, set[str]]:
    known = modules()
    return {name: {i for i in imports(path) if i in known and i != name} for name, path in known.items()}


def test_pysyncobj_is_used_only_inside_consensus():
    leaks = []
    for name, path in modules().items():
        if name.startswith("bazar.consensus"):
            continue
        text = path.read_text()
        if any(i.split(".")[0] == "pysyncobj" for i in imports(path)):
            leaks.append(f"{name} imports pysyncobj")
        for private in ("_SyncObj__", "addOnTickCallback", "raftLastApplied", ".syncobj."):
            if private in text:
                leaks.append(f"{name} uses {private}")
    assert leaks == []


def upward(graph: dict[str, set[str]]) -> list[str]:
    return [f"{name} (layer {layer(name)}) imports {target} (layer {layer(target)})"
            for name, targets in graph.items() for target in targets if layer(target) > layer(name)]


def cycles_in(graph: dict[str, set[str]]) -> list[str]:
    # A package's __init__ importing its own submodules is how packages present their
    # public face; only edges between distinct non-ancestor modules make real cycles.
    edges = {name: {t for t in targets if not t.startswith(name + ".") and not name.startswith(t + ".")}
             for name, targets in graph.items()}
    seen, stack, cycles = set(), [], []

    def visit(name: str) -> None:
        if name in stack:
            cycles.append(" -> ".join(stack[stack.index(name):] + [name]))
            return
        if name in seen:
            return
        seen.add(name)
        stack.append(name)
        for target in sorted(edges.get(name, ())):
            visit(target)
        stack.pop()

    for name in sorted(edges):
        visit(name)
    return cycles


def test_every_import_names_the_one_installed_package():
    """`import node` would load a second copy of a module that is also bazar.node (and
    install Bazar's PySyncObj corrections twice): only `bazar.*` names are Bazar's."""
    bare = [f"{name} imports {target}" for name, path in modules().items() for target in imports(path)
            if target.split(".")[0] in PACKAGES[1:]]
    assert bare == []


def test_imports_only_run_down_the_layers():
    assert upward(own_imports()) == []


def test_no_import_cycles():
    assert cycles_in(own_imports()) == []


def test_the_checks_report_what_they_are_for():
    """What this module found before the shape work: web.errors imported node.commands."""
    assert upward({"bazar.web.errors": {"bazar.node.commands"}, "bazar.node.api": {"bazar.web.errors"}}) == [
        "bazar.web.errors (layer 1) imports bazar.node.commands (layer 2)"]
    assert cycles_in({"bazar.node.api": {"bazar.web.errors"}, "bazar.web.errors": {"bazar.node.api"}}) == [
        "bazar.node.api -> bazar.web.errors -> bazar.node.api"]
    assert cycles_in({"bazar.node.catalog": {"bazar.node.catalog.state"},
                      "bazar.node.catalog.state": {"bazar.node.catalog"}}) == []
