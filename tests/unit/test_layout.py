"""The package layout stays true: no import cycles, no stage importing a stage above it.

The import graph is read with `ast` from the source: every `import` and `from ... import`,
including those inside functions and `TYPE_CHECKING` blocks (which count as lazy), so the rules
hold for lazy imports too. Run this file directly (`python tests/unit/test_layout.py`) to print
the modules per stage and the counts of cycles and forbidden imports.
"""

from __future__ import annotations

import ast
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Which stages each stage may import (itself included). `base` is runner's top level (atomic
# writes); `lang` is the torch-free language in hypodsl; `cli` is hypodsl's command line and
# pytest plugin, which may reach the runner only lazily (see test_cli_imports_runner_lazily).
ALLOWED: dict[str, set[str]] = {
    "lang": {"lang"},
    "base": {"base", "lang"},
    "kv": {"base", "lang", "kv"},
    "task": {"base", "lang", "kv", "task"},
    "model": {"base", "lang", "kv", "task", "model"},
    "features": {"base", "lang", "kv", "model", "features"},
    "measure": {"base", "lang", "kv", "model", "features", "measure"},
    "train": {"base", "lang", "kv", "model", "measure", "train"},
    "stats": {"base", "lang", "stats"},
    "engine": {"base", "lang", "kv", "model", "features", "measure", "stats", "engine"},
    "report": {"base", "lang", "stats", "report"},
}
CLI_MODULES = {
    "hypodsl.cli", "hypodsl.cli_common", "hypodsl.cli_features", "hypodsl.cli_run",
    "hypodsl.pytest_plugin",
}  # fmt: skip
RUNNER_STAGES = ("kv", "task", "model", "features", "measure", "train", "stats", "engine", "report")


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    lazy: bool  # inside a function body


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def collect_modules(root: Path, packages: tuple[str, ...] = ("hypodsl", "runner")) -> dict:
    return {
        module_name(path, root): path
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
    }


def _resolve(name: str, modules: dict) -> str | None:
    """The project module an imported dotted name refers to (longest known prefix)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: dict) -> list[Edge]:
    tree = ast.parse(path.read_text(), str(path))
    deferred = [  # bodies that do not run when the module is imported
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        or (isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"))
    ]
    lazy_lines = {
        node.lineno
        for body in deferred
        for node in ast.walk(body)
        if isinstance(node, ast.Import | ast.ImportFrom)
    }
    edges: list[Edge] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            target = _resolve(name, modules)
            edge = Edge(module, target or "", node.lineno, node.lineno in lazy_lines)
            if target and target != module and edge not in edges:
                edges.append(edge)
    return edges


def stage_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "hypodsl":
        return "cli" if module in CLI_MODULES else "lang"
    if len(parts) > 1 and parts[1] in RUNNER_STAGES:
        return parts[1]
    return "base"


def import_graph(root: Path = ROOT) -> tuple[dict, list[Edge]]:
    modules = collect_modules(root)
    edges = [e for m, path in modules.items() for e in imports_of(m, path, modules)]
    return modules, edges


def forbidden_imports(edges: list[Edge]) -> list[Edge]:
    bad = []
    for e in edges:
        source, target = stage_of(e.source), stage_of(e.target)
        if source == "cli":
            continue  # checked by test_cli_imports_runner_lazily
        if target not in ALLOWED[source]:
            bad.append(e)
    return bad


def cycles(modules: dict, edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    graph: dict[str, list[str]] = {m: [] for m in modules}
    for e in edges:
        graph[e.source].append(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def describe(edges: list[Edge]) -> str:
    return "\n".join(f"{e.source}:{e.line} imports {e.target}" for e in edges)


def test_no_import_cycles():
    modules, edges = import_graph()
    assert cycles(modules, edges) == []


def test_no_stage_imports_a_stage_it_may_not():
    _, edges = import_graph()
    bad = forbidden_imports(edges)
    assert not bad, describe(bad)


def test_cli_imports_runner_lazily():
    _, edges = import_graph()
    eager = [e for e in edges if stage_of(e.source) == "cli" and e.target.startswith("runner")]
    assert all(e.lazy for e in eager), describe([e for e in eager if not e.lazy])


def test_every_stage_has_modules_and_a_docstring_saying_what_it_takes_and_gives():
    modules = collect_modules(ROOT)
    for stage in RUNNER_STAGES:
        init = ROOT / "runner" / stage / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "Takes" in doc and "gives" in doc, f"runner/{stage}/__init__.py"
        assert sum(stage_of(m) == stage for m in modules) > 1


def test_the_checker_finds_a_planted_cycle_and_upward_import(tmp_path):
    def write(name: str, text: str) -> None:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    for package in ("hypodsl", "runner", "runner/kv", "runner/report", "runner/engine"):
        write(f"{package}/__init__.py", "")
    write("runner/kv/a.py", "from runner.kv import b\n")
    write("runner/kv/b.py", "def f():\n    from runner.kv.a import x\n")
    write("runner/report/view.py", "from runner.engine import study\n")
    write("runner/engine/study.py", "import numpy\n")
    modules, edges = import_graph(tmp_path)
    assert cycles(modules, edges) == [["runner.kv.a", "runner.kv.b"]]
    assert [(e.source, e.target) for e in forbidden_imports(edges)] == [
        ("runner.report.view", "runner.engine.study")
    ]


if __name__ == "__main__":
    modules, edges = import_graph()
    counts = Counter(stage_of(m) for m in modules)
    for stage in ("lang", "cli", "base", *RUNNER_STAGES):
        print(f"{stage:8} {counts[stage]:3} modules")
    print(f"modules {len(modules)}, imports between them {len(edges)}")
    print(
        f"cycles {len(cycles(modules, edges))}, forbidden imports {len(forbidden_imports(edges))}"
    )
