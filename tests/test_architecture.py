"""The layout keeps data flowing one way: no import circles inside ``src/yolo_ov``, and no layer imports
from a layer above it.

Every import counts, including those inside functions (a lazy import is still
a dependency) and those under ``if TYPE_CHECKING:`` (a circle hidden from the
interpreter is still a circle in the design). A package's ``__init__`` counts
as a module of its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "yolo_ov"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()

    def resolve(target: str) -> str | None:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target or None

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("yolo_ov"):
                    target = resolve(alias.name)
                    if target:
                        found.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            if prefix.startswith("yolo_ov"):
                for alias in node.names:
                    full = f"{prefix}.{alias.name}"
                    target = full if full in modules else resolve(prefix)
                    if target:
                        found.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    import sys

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_the_graph_is_read_correctly():
    graph = import_graph()
    assert "yolo_ov.runtime.core" in graph["yolo_ov.detector"]
    assert "yolo_ov.pipeline" in graph["yolo_ov.detector"]
    assert "yolo_ov.export.convert" in graph["yolo_ov.default_model"]  # a lazy import inside a function counts


def test_no_import_circles_in_the_package():
    cycles = _cycles(import_graph())
    assert not cycles, "import circles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_detector_sits_above_the_pipeline_and_the_model_never_exports():
    graph = import_graph()
    reach: dict[str, set[str]] = {}

    def reachable(v: str) -> set[str]:
        if v not in reach:
            reach[v] = set()
            for w in graph.get(v, ()):
                reach[v] |= {w} | reachable(w)
        return reach[v]

    assert "yolo_ov.detector" not in reachable("yolo_ov.pipeline")
    assert "yolo_ov.export.convert" not in reachable("yolo_ov.runtime.model")


@pytest.mark.parametrize("cycle", [{"a": {"b"}, "b": {"a"}}, {"a": {"b"}, "b": {"c"}, "c": {"a"}}])
def test_cycle_finder_finds_cycles(cycle):
    assert _cycles(cycle)


def test_type_checking_imports_count():
    graph = {"yolo_ov.a": set()}
    tree_src = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n"
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        a = Path(tmp) / "a.py"
        a.write_text(tree_src, encoding="utf-8")
        graph["yolo_ov.a"] = _imports("yolo_ov.a", a, {"yolo_ov.a": a, "yolo_ov.b": a})
    assert graph["yolo_ov.a"] == {"yolo_ov.b"}


#: Layers, lowest first: a module may import its own layer and those below, never one above.
#: A name matches a module and everything under it (the longest prefix wins).
LAYERS: dict[str, int] = {
    "yolo_ov.errors": 0, "yolo_ov.config": 0, "yolo_ov._version": 0, "yolo_ov._console": 0,
    "yolo_ov.runtime": 1, "yolo_ov.imaging": 1, "yolo_ov.ops": 1,
    "yolo_ov.results": 2,
    "yolo_ov.heads": 3,
    "yolo_ov.io": 4,
    "yolo_ov.pipeline": 5,
    # the front door and what is built on it as a library
    "yolo_ov.detector": 6, "yolo_ov.default_model": 6, "yolo_ov.track": 6, "yolo_ov.eval": 6,
    "yolo_ov.export": 6, "yolo_ov.bench": 6,
    # front ends
    "yolo_ov.serve": 7, "yolo_ov.ray": 7, "yolo_ov.watch": 7,
    "yolo_ov.cli": 8,
    "yolo_ov.__main__": 9, "yolo_ov": 9,
}


def layer_of(module: str) -> int:
    parts = module.split(".")
    for k in range(len(parts), 0, -1):
        name = ".".join(parts[:k])
        if name in LAYERS:
            return LAYERS[name]
    raise AssertionError(f"{module} has no layer: add it to LAYERS in tests/test_architecture.py")


def test_no_module_imports_from_a_layer_above_it():
    graph = import_graph()
    wrong = sorted(f"{m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)})"
                   for m, targets in graph.items() for t in targets if layer_of(t) > layer_of(m))
    assert not wrong, "imports from a higher layer:\n" + "\n".join(wrong)


def test_runtime_imaging_and_ops_know_nothing_above_them():
    graph = import_graph()
    low = [m for m in graph if layer_of(m) <= 1]
    assert low
    for m in low:
        assert all(layer_of(t) <= 1 for t in graph[m]), (m, graph[m])


def test_the_top_holds_only_the_front_door():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 12, top


def test_no_module_is_over_600_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 600}
    assert not long, long
