"""The package layout: no import circles in ``orchestrator/`` and ``actors/``, and imports point
only down the stages (cli → jobs → monitor → delivery → run → plan → actors → store →
importers → spec).

Read from the source with :mod:`ast`, not by importing: every ``import``/``from … import``
counts, at module level or inside a function, with relative imports resolved; only imports
under ``if TYPE_CHECKING:`` are left out (they never run). Importing ``a.b.c`` runs ``a`` and
``a.b`` first, so a module also depends on the packages above what it imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("orchestrator", "actors")

# Lowest first. A module may import its own stage and the stages before it, never one after.
# ``actors`` sits between store and plan: actors import the store (and plan/spec types only for
# type checking), while expansion asks the backends to validate a story.
LAYERS = [
    "orchestrator.spec",
    "orchestrator.importers",
    "orchestrator.store",
    "actors",
    "orchestrator.plan",
    "orchestrator.run",
    "orchestrator.delivery",
    "orchestrator.monitor",
    "orchestrator.jobs",
    "orchestrator.cli",
]
# The top-level package is the public face: it loads its names lazily from every stage.
UNLAYERED = {"orchestrator"}


def _modules() -> dict[str, Path]:
    out = {}
    for root in ROOTS:
        for path in (REPO / root).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def walk(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    walk(sub)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            walk(child)

    walk(tree)
    return found


def _with_parents(name: str, known: dict[str, Path]) -> set[str]:
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & set(known)


def import_graph() -> dict[str, set[str]]:
    known = _modules()
    graph: dict[str, set[str]] = {}
    for mod, path in known.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        deps: set[str] = set()
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    deps |= _with_parents(alias.name, known)
                continue
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            deps |= _with_parents(target, known)
            for alias in node.names:  # ``from pkg import submodule``
                if f"{target}.{alias.name}" in known:
                    deps |= _with_parents(f"{target}.{alias.name}", known)
        deps.discard(mod)
        # a package's own __init__ runs before its modules: that edge is not a dependency
        graph[mod] = {d for d in deps if not mod.startswith(d + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A list of modules that import each other in a circle, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def layer_of(mod: str) -> int | None:
    best = None
    for i, prefix in enumerate(LAYERS):
        if (mod == prefix or mod.startswith(prefix + ".")) and (
                best is None or len(prefix) > len(LAYERS[best])):
            best = i
    return best


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for mod, deps in sorted(graph.items()):
        mine = layer_of(mod)
        if mine is None or mod in UNLAYERED:
            continue
        for dep in sorted(deps):
            theirs = layer_of(dep)
            if dep not in UNLAYERED and theirs is not None and theirs > mine:
                bad.append(f"{mod} imports {dep} ({LAYERS[mine]} is below {LAYERS[theirs]})")
    return bad


def test_every_module_belongs_to_a_stage():
    stray = [m for m in import_graph() if m not in UNLAYERED and layer_of(m) is None]
    assert stray == []


def test_the_import_graph_has_no_circle():
    assert find_cycle(import_graph()) is None


def test_a_lower_stage_never_imports_a_higher_one():
    assert upward_imports(import_graph()) == []


def test_the_graph_sees_relative_and_function_level_imports():
    """The checks above would pass vacuously if the reader missed imports: the real graph has
    the edges we know of, including one made inside a function and one relative import."""
    graph = import_graph()
    assert "orchestrator.store.base" in graph["orchestrator.store.local"]  # from .base import
    # cli.common imports the manifest loader inside a function
    assert "orchestrator.spec.loading" in graph["orchestrator.cli.common"]
    assert "orchestrator.run.state" in graph["orchestrator.run.driver"]  # from .state import
    # ``from ..store import cache as ops``: the submodule, and the package it runs first
    assert {"orchestrator.store", "orchestrator.store.cache"} <= graph["orchestrator.cli.cache"]
    # ``import ray`` is not ours; imports under ``if TYPE_CHECKING:`` are left out
    assert "orchestrator.run.pool" not in graph["orchestrator.run.events"]


@pytest.mark.parametrize("edges,circle", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b"}, "b": set(), "c": {"a"}}, None),
])
def test_find_cycle_names_the_circle(edges, circle):
    assert find_cycle(edges) == circle


def test_an_upward_import_is_reported():
    graph = {"orchestrator.spec.loading": {"orchestrator.run.driver"},
             "orchestrator.run.driver": {"orchestrator.spec.loading"}}
    assert upward_imports(graph) == [
        "orchestrator.spec.loading imports orchestrator.run.driver "
        "(orchestrator.spec is below orchestrator.run)"]
