"""luisy's and luisy_sync's modules import one way: no import cycle (imports inside
functions and ``TYPE_CHECKING`` blocks included), the tasks never import the cloud layer,
and luisy_sync never imports luigi or luisy."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "luisy"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The luisy modules ``path`` imports anywhere in its code. ``from pkg import mod``
    counts as importing ``mod``; importing ``a.b.c`` also imports the package ``a.b``
    (its ``__init__`` runs first), except the top package ``luisy`` (which imports its
    layers last to fill the task hooks) and the packages ``path`` itself is in."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            if target in modules:
                found.add(target)
            parts = target.split(".")
            for i in range(2, len(parts)):
                parent = ".".join(parts[:i])
                if parent in modules and not name.startswith(parent + "."):
                    found.add(parent)
    found.discard(name)
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    paths = sorted(package.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_checker_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_inside_luisy() -> None:
    graph = import_graph()
    assert "luisy.tasks" in graph and "luisy.cloud.session" in graph
    assert cycles(graph) == []


def test_no_import_cycle_inside_luisy_sync() -> None:
    graph = import_graph(ROOT / "luisy_sync")
    assert "luisy_sync.api" in graph and "luisy_sync.stores.local" in graph
    assert cycles(graph) == []


def test_luisy_sync_never_imports_luigi_or_luisy() -> None:
    for path in sorted((ROOT / "luisy_sync").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            assert not [n for n in names if n.split(".")[0] in ("luigi", "luisy")], path


@pytest.mark.parametrize("lower, upper", [
    ("luisy.tasks", "luisy.cloud"), ("luisy.tasks", "luisy.visualize"), ("luisy.tasks", "luisy.spark"),
    ("luisy.run", "luisy.cloud"), ("luisy.graph", "luisy.run"), ("luisy.runplan", "luisy.run"),
    ("luisy.hashfile", "luisy.cloud"), ("luisy.report", "luisy.cloud"),
])
def test_lower_layers_do_not_import_upper_ones(lower: str, upper: str) -> None:
    graph = import_graph()
    assert not {m for m in graph[lower] if m == upper or m.startswith(upper + ".")}


def test_import_luisy_fills_the_task_hooks() -> None:
    import luisy
    import luisy.cloud.verbs
    import luisy.visualize
    from luisy.tasks import hooks

    assert hooks.fetch is luisy.cloud.verbs.fetch_output
    assert hooks.transfer is luisy.cloud.verbs.sync_task_output
    assert hooks.visualize is luisy.visualize.visualize_task
    assert luisy.tasks.SparkTask is luisy.SparkTask
