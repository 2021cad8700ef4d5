"""The import graph of the package: no cycles, and the core never reaches up into its consumers.

Edges are read from the source (every ``import`` / ``from ... import`` at any depth, so lazy imports count
too) and resolved to the package's own modules; ``rm_edit.pipelines`` and ``rm_edit.training`` live in the
top-level ``pipelines/`` and ``training/`` folders (``pyproject.toml``'s package-dir).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"rm_edit": ROOT / "rm_edit", "rm_edit.pipelines": ROOT / "pipelines", "rm_edit.training": ROOT / "training"}
CONSUMERS = ("rm_edit.cli", "rm_edit.evaluation", "rm_edit.pipelines", "rm_edit.training")


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([package, *parts])
            if package == "rm_edit" and parts and parts[0] in ("pipelines", "training", "models"):
                continue
            found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in modules:  # "pkg.module.Class" -> "pkg.module"
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _is_package_init(name: str, graph) -> bool:
    return any(other.startswith(name + ".") for other in graph)


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    # A package's __init__ that re-exports its own submodules is not a cycle through them.
    edges = {m: {t for t in ts if not (t.startswith(m + ".") and _is_package_init(m, graph))} for m, ts in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                cycle = stack[stack.index(t):] + [t]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)


def test_the_core_imports_neither_pipelines_nor_training():
    graph = _graph()
    core = {m for m in graph if m != "rm_edit" and not m.startswith(CONSUMERS)}
    assert {"rm_edit.schedulers", "rm_edit.reflective", "rm_edit.vq", "rm_edit.metrics"} <= core  # the graph is read
    bad = sorted(f"{m} -> {t}" for m in core for t in graph[m] if t.startswith(("rm_edit.pipelines", "rm_edit.training")))
    assert not bad, bad


def test_library_code_does_not_import_the_diagnostic_scripts():
    graph = _graph()
    users = sorted(m for m, ts in graph.items() for t in ts if t.rsplit(".", 1)[-1] in ("gpu_check", "benchmark_speed"))
    assert not users, users
