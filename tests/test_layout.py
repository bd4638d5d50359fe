"""The package's layout: modules import in any order (no import-time cycle), the module-level import graph has no
circle, no module is over 400 lines, and the module names of version 0.2 still import (with a warning)."""

from __future__ import annotations

import ast
import random
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sharing_lab"
MAX_LINES = 400


def modules(package: Path = PACKAGE) -> list[str]:
    """Every module of the package by its dotted name (``__main__`` aside: importing it runs the command line)."""
    names = []
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__main__":
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level:
        base = base[: len(base) - (level - 1)]
        return ".".join([*base, *([target] if target else [])])
    return target or ""


def import_graph(package: Path = PACKAGE, anywhere: bool = False) -> dict[str, set[str]]:
    """Module → the package modules it imports at import time (module level, ``TYPE_CHECKING`` blocks aside;
    ``from package import submodule`` counts as importing the submodule); ``anywhere``: imports inside functions
    too."""
    known = set(modules(package))
    graph: dict[str, set[str]] = {}
    for name in known:
        path = package.parent / Path(*name.split("."))
        is_package = path.is_dir()
        source = (path / "__init__.py") if is_package else path.with_suffix(".py")
        tree = ast.parse(source.read_text())
        edges: set[str] = set()
        body = [node for node in tree.body
                if not (isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test))]
        if anywhere:
            body = [node for top in body for node in ast.walk(top)]
        for node in body:
            if isinstance(node, ast.ImportFrom):
                target = _resolve(name, is_package, node.level, node.module)
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    edges.add(sub if sub in known else target)
            elif isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names)
        graph[name] = {edge for edge in edges if edge in known and edge != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
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


def height(graph: dict[str, set[str]]) -> int:
    """Floors of the import graph: a module stands one floor above everything it imports (ground floor 1); the
    modules of a circle share one floor."""
    component = {node: node for node in graph}
    for members in cycles(graph):
        for member in members:
            component[member] = members[0]
    condensed: dict[str, set[str]] = {}
    for node, edges in graph.items():
        condensed.setdefault(component[node], set()).update(component[edge] for edge in edges)
    memo: dict[str, int] = {}

    def floor(node: str) -> int:
        if node not in memo:
            memo[node] = 1 + max((floor(nxt) for nxt in condensed[node] if nxt != node), default=0)
        return memo[node]

    return max(floor(node) for node in condensed)


def test_the_module_level_import_graph_has_no_circle():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("seed", [0, 1])
def test_every_module_imports_first_in_a_fresh_interpreter_in_random_order(seed):
    order = modules()
    random.Random(seed).shuffle(order)
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\nprint('ok')"
    result = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", code, *order],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


def test_no_module_is_over_400_lines():
    long = {path.relative_to(PACKAGE.parent).as_posix(): n for path in PACKAGE.rglob("*.py")
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_module_names_of_version_0_2_import_with_a_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from sharing_lab.ground_truth import SPACES, TruthSpace  # noqa: F401
        from sharing_lab.schemes import SharingScheme, Transforms  # noqa: F401
        from sharing_lab.sharing import random_semi_orthogonal  # noqa: F401
    assert any("sharing_lab.truth.table" in str(w.message) for w in caught)
    import sharing_lab.ground_truth

    import sharing_lab.truth.table

    assert sharing_lab.ground_truth is sharing_lab.truth.table  # one module, not a copy
    from sharing_lab.space import SearchSpace  # an old module that is a folder now: its main name

    assert SearchSpace.__module__ == "sharing_lab.space.search_space"


def rooms(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph of the package's top-level rooms: each root module, and each folder as one."""
    def room(name: str) -> str:
        return ".".join(name.split(".")[:2])

    merged: dict[str, set[str]] = {}
    for name, edges in graph.items():
        merged.setdefault(room(name), set()).update(room(edge) for edge in edges)
    return {name: edges - {name, "sharing_lab"} for name, edges in merged.items()}


if __name__ == "__main__":  # the figures of the closing note: python tests/test_layout.py [PACKAGE_DIR]
    package = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else PACKAGE
    for anywhere in (False, True):
        graph = import_graph(package, anywhere)
        top = rooms(graph)
        print(f"{'every import' if anywhere else 'module-level imports'}: {len(graph)} modules, height "
              f"{height(graph)} floors, circles {len(cycles(graph))}; {len(top)} rooms (root modules and folders), "
              f"height {height(top)} floors, circles {len(cycles(top))}")
