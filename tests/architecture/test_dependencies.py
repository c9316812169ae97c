"""Every import resolves to a declared distribution; the product declares only what it imports.

The product (cds_service, model, fhir_mappings) may import the standard library, itself and
`[project.dependencies]`; devtools adds its own pyproject's dependencies; tests and benchmarks add
the dev group. Names resolve to distributions through `importlib.metadata.packages_distributions`.
"""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Iterable
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from tests.architecture.imports import imports_of, module_files

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("cds_service", "fhir_mappings", "model")
PROJECT = "picu-endotype"
DEVTOOLS = "picu-endotype-devtools"


def normalised(name: str) -> str:
    """A distribution name in PEP 503 normal form."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(requirements: Iterable[str]) -> set[str]:
    """The normalised distribution names of requirement strings such as `pyjwt[crypto]>=2.10`."""
    names = set()
    for requirement in requirements:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
        assert match, requirement
        names.add(normalised(match.group(1)))
    return names


def _pyproject(path: Path) -> dict:
    return tomllib.loads(path.read_text(encoding="utf-8"))


PROJECT_DEPENDENCIES = requirement_names(
    _pyproject(ROOT / "pyproject.toml")["project"]["dependencies"]
)
DEV_GROUP = requirement_names(_pyproject(ROOT / "pyproject.toml")["dependency-groups"]["dev"])
DEVTOOLS_DEPENDENCIES = requirement_names(
    _pyproject(ROOT / "devtools" / "pyproject.toml")["project"]["dependencies"]
)


def third_party_imports(packages: Iterable[str], directories: Iterable[str] = ()) -> dict[str, str]:
    """Top-level third-party module name -> one place that imports it."""
    files = {}
    for package in packages:
        files.update(module_files(ROOT, package))
    for directory in directories:
        files.update({f"{directory}/{p.name}": p for p in sorted((ROOT / directory).glob("*.py"))})
    own = {*PRODUCT, "devtools", "tests", "benchmarks"}
    own |= {path.stem for directory in directories for path in (ROOT / directory).glob("*.py")}
    found: dict[str, str] = {}
    for name, path in files.items():
        for item in imports_of(name, path):
            top = item.module.split(".")[0]
            if top and top not in sys.stdlib_module_names and top not in own:
                found.setdefault(top, f"{name}:{item.line}")
    return found


def undeclared(imported: dict[str, str], declared: set[str]) -> list[str]:
    """Imports whose distribution is not among `declared`."""
    providers = packages_distributions()
    missing = []
    for top, where in sorted(imported.items()):
        distributions = {normalised(d) for d in providers.get(top, [])}
        if not distributions & declared:
            missing.append(f"{top} ({where}) from {sorted(distributions) or 'no distribution'}")
    return missing


def test_every_product_import_is_a_declared_dependency() -> None:
    assert undeclared(third_party_imports(PRODUCT), PROJECT_DEPENDENCIES) == []


def test_the_product_declares_no_dependency_it_does_not_import() -> None:
    providers = packages_distributions()
    imported = {
        normalised(distribution)
        for top in third_party_imports(PRODUCT)
        for distribution in providers.get(top, [])
    }
    assert sorted(PROJECT_DEPENDENCIES - imported) == []


def test_devtools_imports_are_declared_by_devtools() -> None:
    declared = DEVTOOLS_DEPENDENCIES | PROJECT_DEPENDENCIES
    assert undeclared(third_party_imports(("devtools",)), declared) == []
    assert normalised(PROJECT) in DEVTOOLS_DEPENDENCIES


def test_test_and_benchmark_imports_are_declared_in_the_dev_group_or_the_product() -> None:
    imported = third_party_imports(("tests",), ("benchmarks",))
    assert {"pytest", "pytest_httpserver"} <= set(imported)
    declared = PROJECT_DEPENDENCIES | DEV_GROUP
    assert undeclared(imported, declared) == []
    assert normalised(DEVTOOLS) in DEV_GROUP


def test_test_only_libraries_are_not_product_dependencies() -> None:
    assert not {"pytest", "pytest-httpserver", "ruff"} & PROJECT_DEPENDENCIES


@pytest.mark.parametrize(
    ("requirement", "name"),
    [
        ("pyjwt[crypto]>=2.10", "pyjwt"),
        ("fhir.resources>=8.0", "fhir-resources"),
        ("Flask", "flask"),
    ],
)
def test_requirement_names_are_normalised(requirement: str, name: str) -> None:
    assert requirement_names([requirement]) == {name}


def test_an_undeclared_import_is_reported() -> None:
    assert undeclared({"numpy": "x.py:1"}, {"flask"}) == ["numpy (x.py:1) from ['numpy']"]
