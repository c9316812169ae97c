"""Dependencies point one way: cds_service -> model -> fhir_mappings; devtools above them all.

The graph is read from the source with `ast` (function-level imports included); a cycle anywhere,
or an import of a higher layer from a lower one, fails. The product never imports devtools.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.architecture.imports import dependency_graph, find_cycle, module_files

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("fhir_mappings", "model", "cds_service", "devtools")  # lowest first
PRODUCT = LAYERS[:3]


def _files(root: Path = ROOT, packages: tuple[str, ...] = LAYERS) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for package in packages:
        files.update(module_files(root, package))
    return files


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Each import of a higher layer by a lower one, as `importer -> imported`."""

    def layer(module: str) -> int:
        return LAYERS.index(module.split(".")[0])

    return sorted(
        f"{importer} -> {imported}"
        for importer, targets in graph.items()
        for imported in targets
        if layer(imported) > layer(importer)
    )


def test_every_layer_package_is_read() -> None:
    files = _files()
    assert {name.split(".")[0] for name in files} == set(LAYERS)
    assert {"cds_service.app", "model.synth.simulate", "fhir_mappings.gather"} <= set(files)


def test_no_module_imports_a_higher_layer() -> None:
    assert upward_imports(dependency_graph(_files())) == []


def test_the_product_never_imports_the_development_tools() -> None:
    graph = dependency_graph(_files())
    product = [m for m in graph if m.split(".")[0] in PRODUCT]
    assert [m for m in product if any(t.startswith("devtools") for t in graph[m])] == []


def test_there_is_no_import_cycle() -> None:
    assert find_cycle(dependency_graph(_files())) is None


@pytest.fixture
def planted(tmp_path: Path) -> Path:
    """A small tree with a cycle (a <-> b) and an upward import (fhir_mappings -> model)."""
    (tmp_path / "fhir_mappings").mkdir()
    (tmp_path / "model").mkdir()
    (tmp_path / "fhir_mappings" / "__init__.py").write_text("")
    (tmp_path / "fhir_mappings" / "low.py").write_text(
        "def late():\n    from model.a import thing\n    return thing\n"
    )
    (tmp_path / "model" / "__init__.py").write_text("")
    (tmp_path / "model" / "a.py").write_text("from model import b\nthing = 1\n")
    (tmp_path / "model" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nfrom . import a\n"
        "if TYPE_CHECKING:\n    from fhir_mappings import low\n"
    )
    return tmp_path


def test_the_checks_find_a_planted_cycle_and_a_function_level_upward_import(planted: Path) -> None:
    graph = dependency_graph(_files(planted, ("fhir_mappings", "model")))
    assert find_cycle(graph) in (
        ["model.a", "model.b", "model.a"],
        ["model.b", "model.a", "model.b"],
    )
    assert upward_imports(graph) == ["fhir_mappings.low -> model.a"]
    assert "fhir_mappings.low" not in graph["model.b"]  # type-only imports are not run-time edges
