"""Read the import statements of a source tree with `ast`: every import, function-level included.

Imports under `if TYPE_CHECKING:` are kept apart: they are never executed, so they take part in
neither the run-time dependency graph nor its cycles.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Import:
    """One imported module name, where it was imported, and whether only for type checking."""

    module: str  # absolute dotted name, e.g. "model.rules" or "numpy"
    importer: str
    line: int
    type_only: bool


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package directory `root/package`."""
    base = root / package
    files = {}
    for path in sorted(base.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        files[name] = path
    return files


def _type_checking_blocks(tree: ast.AST) -> set[int]:
    """Ids of the statements inside `if TYPE_CHECKING:` blocks."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for statement in node.body:
                inside.update(id(child) for child in ast.walk(statement))
    return inside


def _is_type_checking(test: ast.expr) -> bool:
    """True for `TYPE_CHECKING` and `typing.TYPE_CHECKING`."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _absolute(module: str | None, level: int, importer: str, is_package: bool) -> str:
    """The absolute module name of a (possibly relative) `from ... import`."""
    if level == 0:
        return module or ""
    parts = importer.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def imports_of(name: str, path: Path, known: Iterable[str] = ()) -> Iterator[Import]:
    """Every import in one module; `from X import Y` names X.Y when X.Y is a known module."""
    known_modules = set(known)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    type_only = _type_checking_blocks(tree)
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        guarded = id(node) in type_only
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, name, node.lineno, guarded)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module, node.level, name, is_package)
            for alias in node.names:
                target = f"{base}.{alias.name}"
                module = target if target in known_modules else base
                yield Import(module, name, node.lineno, guarded)


def dependency_graph(files: Mapping[str, Path]) -> dict[str, set[str]]:
    """Module -> the known modules it imports at run time."""
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        for found in imports_of(name, path, files):
            if not found.type_only and found.module in files and found.module != name:
                graph[name].add(found.module)
    return graph


def find_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None
