"""Fixtures shared by every test package."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
CONFORMANCE = FIXTURES / "conformance"


@pytest.fixture(autouse=True)
def _clean_environment() -> Iterator[None]:
    """No test sees another's PICU_ENDOTYPE_* variables."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("PICU_ENDOTYPE_")}
    for name in saved:
        del os.environ[name]
    yield
    for name in [k for k in os.environ if k.startswith("PICU_ENDOTYPE_")]:
        del os.environ[name]
    os.environ.update(saved)


@pytest.fixture
def conformance_example():
    """Load one of the CDS Hooks 2.0.1 spec examples by file name."""

    def load(name: str) -> Any:
        path = CONFORMANCE / name
        return path.read_text() if path.suffix == ".txt" else json.loads(path.read_text())

    return load
