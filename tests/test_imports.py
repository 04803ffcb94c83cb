"""The import graph of the package: no cycles, and the layers import only downwards.

Read from the source (module-level imports; those under `if TYPE_CHECKING:` or inside a
function don't run at import time), and checked for real by importing each module first
in a fresh interpreter: a cycle that happens to work in one import order fails in another.
"""

from __future__ import annotations

import ast
import concurrent.futures
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "asyncjobs"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {
    _module_name(path): path
    for path in sorted(PACKAGE.rglob("*.py"))
    if "__pycache__" not in path.parts and path.name != "__main__.py"  # it runs the command
}


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> list[str]:
    """The asyncjobs modules a `from ... import ...` loads."""
    if node.level:
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module or ""
    found = [base]
    # `from pkg import name` loads pkg.name too when that is a module.
    found += [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES]
    return found


def _loaded(name: str) -> list[str]:
    """`name` and the package __init__s Python runs to reach it (not the top package's:
    it is always initialized first, whatever is imported)."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(2, len(parts) + 1)]


def _top_level_statements(body: list[ast.stmt]) -> list[ast.stmt]:
    found: list[ast.stmt] = []
    for node in body:
        if isinstance(node, ast.If):
            test = node.test
            if isinstance(test, ast.Name) and test.id == "TYPE_CHECKING":
                found += _top_level_statements(node.orelse)
                continue
            found += _top_level_statements(node.body) + _top_level_statements(node.orelse)
        elif isinstance(node, ast.Try):
            found += _top_level_statements(node.body)
        else:
            found.append(node)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the asyncjobs modules its import runs."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        edges: set[str] = set()
        for node in _top_level_statements(ast.parse(path.read_text()).body):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom):
                names = _resolve(module, path, node)
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            # A module's own packages are initialized before it, whatever is imported.
            ancestors = set(_loaded(module))
            for name in names:
                edges.update(n for n in _loaded(name) if n in MODULES and n not in ancestors)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back() -> None:
    assert cycles(import_graph()) == []


# Who may not import whom: the storage layer knows nothing above it; the worker doesn't
# borrow the client (only the enqueue encoding they share); nothing but the command imports
# the command.
FORBIDDEN = [
    ("asyncjobs.db", "asyncjobs.client"),
    ("asyncjobs.db", "asyncjobs.worker"),
    ("asyncjobs.db", "asyncjobs.cli"),
    ("asyncjobs.worker", "asyncjobs.client.client"),
    ("asyncjobs.worker", "asyncjobs.cli"),
    ("asyncjobs.client", "asyncjobs.worker"),
    ("asyncjobs.client", "asyncjobs.cli"),
    ("asyncjobs.app", "asyncjobs.cli"),
    # The integrations are optional extras built on the hooks: the core never needs them.
    ("asyncjobs.app", "asyncjobs.observability"),
    ("asyncjobs.hooks", "asyncjobs.observability"),
    ("asyncjobs.db", "asyncjobs.observability"),
    ("asyncjobs.client", "asyncjobs.observability"),
    ("asyncjobs.worker", "asyncjobs.observability"),
]


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


@pytest.mark.parametrize(("importer", "imported"), FORBIDDEN)
def test_layers_import_downwards(importer: str, imported: str) -> None:
    graph = import_graph()
    wrong = sorted(
        f"{module} -> {other}"
        for module, edges in graph.items()
        if _within(module, importer)
        for other in edges
        if _within(other, imported) and other != "asyncjobs.client"
    )
    assert wrong == []


def _import_alone(module: str) -> tuple[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return module, done.stderr.strip().splitlines()[-1] if done.returncode else ""


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        failed = {module: error for module, error in pool.map(_import_alone, MODULES) if error}
    assert failed == {}
