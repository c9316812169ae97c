"""End-to-end fixtures: a real sandbox FHIR server (sekmet) holding synthetic patients."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from cds_service.discovery import SERVICE_ID
from cds_service.settings import ClientSettings, Settings
from devtools import (
    ASSESSMENT_EXTENSION,
    SEKMET_BIN_ENV,
    SandboxFhir,
    load_resources,
    sekmet_binary,
)
from tests.support.hook_caller import HookCaller
from tests.support.tokens import SigningKey, fhir_authorization, jwks

__all__ = ["ASSESSMENT_EXTENSION", "HookCaller"]

SCENARIO_KINDS = ("hyperinflammatory", "quiescent", "missing-panel", "resolving", "general-ward")

SERVICE_BASE_URL = "https://cds.e2e.test"
EHR_ISSUER = "https://ehr.e2e.test"

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
def scenario_resources(
    load_into_sandbox: LoadResources, scenario_now: datetime
) -> dict[str, list[dict[str, Any]]]:
    """One synthetic patient per scenario kind, loaded into the sandbox: kind -> resources."""
    from model.synth import scenario_patient

    loaded = {}
    for kind in SCENARIO_KINDS:
        resources = scenario_patient(kind, f"e2e-{kind}", now=scenario_now)
        response = load_into_sandbox(resources)
        statuses = [entry["response"]["status"] for entry in response["entry"]]
        assert all(status.startswith(("200", "201")) for status in statuses), statuses
        loaded[kind] = resources
    return loaded


@pytest.fixture(scope="session")
def scenario_patients(scenario_resources: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """kind -> id of the loaded scenario patient."""
    return {kind: resources[0]["id"] for kind, resources in scenario_resources.items()}


@pytest.fixture(scope="session")
def ehr_key() -> SigningKey:
    """The test EHR's ES384 signing key."""
    return SigningKey.generate("ES384")


def e2e_settings(sandbox: SandboxFhir, key: SigningKey, state_dir: Path) -> Settings:
    """The service configured as a site would for this EHR, with the http sandbox allowed."""
    client = ClientSettings(
        iss=EHR_ISSUER, jwks=json.dumps(jwks(key)), fhir_servers=[sandbox.base_url]
    )
    return Settings(
        public_base_url=SERVICE_BASE_URL,
        insecure_http_fhir_hosts=["127.0.0.1"],
        clients=[client],
        state_dir=state_dir,
    )


@pytest.fixture(scope="session")
def service_client(
    sandbox_fhir: SandboxFhir, ehr_key: SigningKey, tmp_path_factory: pytest.TempPathFactory
) -> FlaskClient:
    """A Flask test client of `create_app` configured for the sandbox."""
    from cds_service.app import create_app

    settings = e2e_settings(sandbox_fhir, ehr_key, tmp_path_factory.mktemp("state"))
    return create_app(settings).test_client()


@pytest.fixture(scope="session")
def hook_caller(service_client: FlaskClient, ehr_key: SigningKey) -> HookCaller:
    """Calls the service as the EHR does, one fresh signed JWT per request."""
    return HookCaller(service_client, ehr_key, EHR_ISSUER, SERVICE_BASE_URL)


@pytest.fixture(scope="session")
def discovery_templates(hook_caller: HookCaller) -> dict[str, str]:
    """The prefetch templates the service advertises in discovery."""
    response = hook_caller.discover()
    assert response.status_code == 200, response.get_data(as_text=True)
    (service,) = [s for s in response.get_json()["services"] if s["id"] == SERVICE_ID]
    return service["prefetch"]


@pytest.fixture
def fhir_access(sandbox_fhir: SandboxFhir) -> dict[str, Any]:
    """Request fields for direct queries: the sandbox as fhirServer and a registered token."""
    return {"fhir_server": sandbox_fhir.base_url, "fhir_authorization": fhir_authorization()}
