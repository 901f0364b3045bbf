"""Layers point one way: the package's import graph (every import, module-level or inside a function) has no
cycle, and no benchmark is known by name outside its own module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "capdrift_fast"


def _module(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (``from a import b`` counts ``a.b`` when that is a module)."""
    modules = {_module(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                           for a in node.names]
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != mod and t.startswith("capdrift_fast"):
                    graph[mod].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 40
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


BENCHMARK_NAMES = re.compile(r"""["'](ifeval|gsm8k|superni)["']""")
OWN_MODULES = {"benchmarks/ifeval.py", "benchmarks/gsm8k.py", "benchmarks/superni.py"}


@pytest.mark.parametrize("path", sorted(p for p in PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_no_benchmark_name_outside_its_module(path: Path):
    rel = str(path.relative_to(PKG))
    if rel in OWN_MODULES:
        return
    hits = [f"{rel}:{i}: {line.strip()}" for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
            if BENCHMARK_NAMES.search(line) and not line.lstrip().startswith("#")]
    assert not hits, "\n".join(hits)


LAYER = {"cli": 9, "display": 9, "__main__": 9, "api": 8, "distributed": 7, "runner": 6, "pipeline": 6, "demo": 6,
         "report": 5, "analysis": 4, "benchmarks": 3, "engines": 2, "rundir": 2, "metrics": 2,
         "config": 1, "records": 0, "conversation": 0, "errors": 0, "registry": 0, "logs": 0, "parity_process": 6, "signals": 0, "prompt_checks": 6}
"""Layer of each top-level module or package (DESIGN.md): an import may only point to the same or a lower layer."""


def test_imports_point_down():
    graph = import_graph()
    tops = {m.split(".")[1] for m in graph if m.count(".") >= 1}
    assert tops <= set(LAYER), f"give these a layer: {sorted(tops - set(LAYER))}"

    def layer(m: str) -> int:
        return LAYER[m.split(".")[1]] if "." in m else 10

    upward = [f"{m} -> {d}" for m, deps in sorted(graph.items()) for d in sorted(deps) if layer(d) > layer(m)]
    assert not upward, "\n".join(upward)
