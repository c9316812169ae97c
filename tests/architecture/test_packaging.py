"""The production package and image hold the product only: never the development tools."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = {"cds_service", "fhir_mappings", "model"}


def _copied_sources() -> list[str]:
    """The source paths of every COPY line of the Dockerfile."""
    sources = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            sources += line.split()[1:-1]
    return sources


def test_the_wheel_packages_are_the_product_packages() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    included = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {pattern.rstrip("*") for pattern in included} == PRODUCT


def test_the_image_copies_the_product_and_of_devtools_only_its_manifest() -> None:
    sources = _copied_sources()
    assert set(sources) >= PRODUCT
    assert [s for s in sources if s.startswith("devtools")] == ["devtools/pyproject.toml"]


def test_the_build_context_leaves_out_devtools_code_tests_and_benchmarks() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert {"tests/", "benchmarks/", "devtools/*", "!devtools/pyproject.toml"} <= set(ignored)


def test_the_image_installs_without_the_dev_group() -> None:
    syncs = re.findall(r"uv sync [^\n]*", (ROOT / "Dockerfile").read_text())
    assert syncs and all("--no-dev" in sync for sync in syncs)
