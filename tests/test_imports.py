"""Every module of the package imports, and no two moalign modules import each other, directly or in a ring.

The graph is built from each file's *top-level* import statements (``ast``; imports inside functions are
deferred on purpose and do not make a cycle at import time), with a package's ``__init__`` counted as a module.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import moalign

SRC = Path(moalign.__file__).resolve().parent
MODULES = sorted(m.name for m in pkgutil.walk_packages(moalign.__path__, "moalign."))


def test_the_walk_finds_the_package():
    assert {"moalign.core.mopo", "moalign.trainers.run", "moalign.cli.main"} <= set(MODULES)


@pytest.mark.parametrize("name", [m for m in MODULES if m != "moalign.__main__"])  # __main__ runs the CLI
def test_module_imports(name):
    importlib.import_module(name)


def _module_file(name: str) -> Path:
    path = SRC.joinpath(*name.split(".")[1:])
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _resolve(name: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = name.split(".") if _module_file(name).name == "__init__.py" else name.split(".")[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def top_level_imports(name: str, known: set[str]) -> set[str]:
    """The moalign modules ``name`` imports at module level (``from pkg import mod`` counts ``pkg.mod``)."""
    tree = ast.parse(_module_file(name).read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in tree.body:
        statements = [node]
        if isinstance(node, ast.If | ast.Try):  # e.g. optional imports in try/except, TYPE_CHECKING blocks
            statements = [n for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)]
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                statements = []
        for stmt in statements:
            if isinstance(stmt, ast.Import):
                targets = [alias.name for alias in stmt.names]
            elif isinstance(stmt, ast.ImportFrom):
                module = _resolve(name, stmt)
                targets = [module] + [f"{module}.{alias.name}" for alias in stmt.names]
            else:
                continue
            found |= {t for t in targets if t in known and t != name}
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first repeated last), or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in sorted(graph):
        if state.get(root):
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_find_cycle_on_known_graphs():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycles_among_moalign_modules():
    known = set(MODULES) | {"moalign"}
    graph = {name: top_level_imports(name, known) for name in MODULES}
    graph["moalign"] = top_level_imports("moalign", known)
    # a package's __init__ runs before its submodules: importing moalign.x.y imports moalign.x first
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"
