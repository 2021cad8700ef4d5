"""The import graph of the package, folder by folder: no cycles, and each layer imports only the layers below.

Layers: the core (``rm_edit/`` less its consumers) < ``pipelines/`` (``rm_edit.pipelines``) < ``training/``
(``rm_edit.training``); ``rm_edit.cli`` and ``rm_edit.evaluation`` consume the core and the pipelines. Rules:
the core imports no consumer; nothing in ``pipelines/`` imports ``training/``; ``training/`` imports
``pipelines/`` only in the modules that evaluate or package trained models (``EVALUATES``); nothing installed
imports ``benchmarks/`` (scripts, not part of the package). Edges are read from the source (every ``import`` /
``from ... import`` at any depth, so lazy imports count too), for every file under each package folder that
``pyproject.toml``'s package-dir names, so a new file or sub-folder is covered without being listed here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONSUMERS = ("rm_edit.cli", "rm_edit.evaluation", "rm_edit.pipelines", "rm_edit.training")
EVALUATES = {"rm_edit.training.grid_report", "rm_edit.training.recipe", "rm_edit.training.fair_comparison",
             "rm_edit.training.model_folders"}  # loads an init folder as a pipeline, writes the trained one


def package_folders(root: Path = ROOT) -> dict[str, Path]:
    """pyproject's package-dir: package name -> folder."""
    text = (root / "pyproject.toml").read_text(encoding="utf-8")
    line = next(l for l in text.splitlines() if l.startswith("package-dir"))
    return {name: root / folder for name, folder in re.findall(r'"([\w.]+)"\s*=\s*"([\w./-]+)"', line)}


def modules(folders: dict[str, Path]) -> dict[str, Path]:
    found = {}
    nested = {p: [q for q in folders if q.startswith(p + ".")] for p in folders}
    for package, folder in folders.items():
        for path in folder.rglob("*.py"):
            parts = [p for p in path.relative_to(folder).with_suffix("").parts if p != "__init__"]
            name = ".".join([package, *parts])
            if any(name == q or name.startswith(q + ".") for q in nested[package]):
                continue  # under another package's own folder mapping (e.g. rm_edit/pipelines if it existed)
            found[name] = path
    return found


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
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
            if t == "benchmarks" or t.startswith("benchmarks."):
                out.add(t)
                continue
            while t and t not in known:  # "pkg.module.Class" -> "pkg.module"
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    known = modules(package_folders(root))
    return {name: _imports(name, path, known) for name, path in known.items()}


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def layering_violations(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for m, targets in g.items():
        for t in sorted(targets):
            core = m != "rm_edit" and not any(_in(m, c) for c in CONSUMERS)
            if core and any(_in(t, c) for c in CONSUMERS):
                bad.append(f"core {m} -> consumer {t}")
            if _in(m, "rm_edit.pipelines") and _in(t, "rm_edit.training"):
                bad.append(f"pipelines {m} -> training {t}")
            if _in(m, "rm_edit.training") and _in(t, "rm_edit.pipelines") and m not in EVALUATES:
                bad.append(f"training {m} -> pipelines {t} (only {sorted(EVALUATES)} may: they evaluate)")
            if _in(t, "benchmarks"):
                bad.append(f"installed {m} -> script {t}")
    return bad


def _is_package_init(name: str, g) -> bool:
    return any(other.startswith(name + ".") for other in g)


def test_the_graph_is_read_from_every_package_folder():
    g = graph()
    assert {"rm_edit.schedulers", "rm_edit.adapters", "rm_edit.metrics", "rm_edit.pipelines.lumina_dimoo",
            "rm_edit.training.lora_rm", "rm_edit.cli.batch", "rm_edit.evaluation.runner"} <= set(g)
    assert "rm_edit.adapters" in g["rm_edit.pipelines.lumina_checkpoint"]  # edges are read


def test_each_layer_imports_only_the_layers_below():
    assert layering_violations(graph()) == []


def test_the_layering_check_catches_each_rule(tmp_path):
    """A copy of the package layout with one bad import per rule, in files and sub-folders this test does not
    name: each is reported."""
    (tmp_path / "pyproject.toml").write_text(
        'package-dir = { "rm_edit" = "rm_edit", "rm_edit.pipelines" = "pipelines", "rm_edit.training" = "training" }\n')
    files = {
        "rm_edit/__init__.py": "", "rm_edit/sub/__init__.py": "", "rm_edit/sub/deep.py": "import rm_edit.training.t\n",
        "rm_edit/ok.py": "from rm_edit.sub import deep\n",
        "pipelines/__init__.py": "", "pipelines/new/__init__.py": "", "pipelines/new/p.py": "from ...training import t\n",
        "training/__init__.py": "", "training/t.py": "from rm_edit.pipelines.new import p\n",
        "training/grid_report.py": "from rm_edit.pipelines.new import p\nimport benchmarks.gpu_check\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    found = layering_violations(graph(tmp_path))
    assert any(v.startswith("core rm_edit.sub.deep -> consumer rm_edit.training.t") for v in found)
    assert any(v.startswith("pipelines rm_edit.pipelines.new.p -> training rm_edit.training") for v in found)
    assert any(v.startswith("training rm_edit.training.t -> pipelines rm_edit.pipelines.new.p") for v in found)
    assert any(v.startswith("installed rm_edit.training.grid_report -> script benchmarks") for v in found)


def test_the_import_graph_has_no_cycle():
    g = graph()
    # A package's __init__ that re-exports its own submodules is not a cycle through them.
    edges = {m: {t for t in ts if not (t.startswith(m + ".") and _is_package_init(m, g))} for m, ts in g.items()}
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


def test_scripts_live_outside_the_installed_package():
    """Benchmarks and the GPU check are run as ``python benchmarks/NAME.py``; none is installed."""
    installed = {p.stem for folder in package_folders().values() for p in folder.rglob("*.py")}
    scripts = {p.stem for p in (ROOT / "benchmarks").glob("*.py")}
    assert {"gpu_check", "benchmark_speed", "benchmark_seam"} <= scripts
    assert not installed & scripts, sorted(installed & scripts)
