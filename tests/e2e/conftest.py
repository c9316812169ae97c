"""End-to-end fixtures: a real sandbox FHIR server (sekmet) holding synthetic patients."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from cds_service.sandbox_fhir import SEKMET_BIN_ENV, SandboxFhir, load_resources, sekmet_binary

SCENARIO_KINDS = ("hyperinflammatory", "quiescent", "missing-panel", "resolving")

LoadResources = Callable[[Iterable[Mapping[str, Any]]], dict[str, Any]]


@pytest.fixture(scope="session")
def sandbox_fhir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxFhir]:
    """A sekmet server on a free loopback port, stopped (SIGTERM, then wait) after the session."""
    if sekmet_binary() is None:
        message = (
            f"sandbox FHIR server not installed: set {SEKMET_BIN_ENV} or run "
            "`python3 dev.py test`, which installs sekmet-fhir into .venv-sekmet"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    sandbox = SandboxFhir.start(tmp_path_factory.mktemp("sekmet"))
    yield sandbox
    sandbox.stop()


@pytest.fixture(scope="session")
def load_into_sandbox(sandbox_fhir: SandboxFhir) -> LoadResources:
    """Load resources into the sandbox as one transaction of PUTs (ids stay as given)."""

    def load(resources: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
        return load_resources(sandbox_fhir.base_url, resources)

    return load


@pytest.fixture(scope="session")
def scenario_now() -> datetime:
    """The moment the scenario patients' results are generated relative to."""
    return datetime.now(UTC)


@pytest.fixture(scope="session")
def scenario_patients(load_into_sandbox: LoadResources, scenario_now: datetime) -> dict[str, str]:
    """Load one synthetic patient per scenario kind; return kind -> patient id."""
    from model.synth import scenario_patient

    patient_ids = {kind: f"e2e-{kind}" for kind in SCENARIO_KINDS}
    for kind, patient_id in patient_ids.items():
        response = load_into_sandbox(scenario_patient(kind, patient_id, now=scenario_now))
        statuses = [entry["response"]["status"] for entry in response["entry"]]
        assert all(status.startswith(("200", "201")) for status in statuses), statuses
    return patient_ids
