"""The client and gather against a real FHIR server (sekmet): its paging, its Bundles, its 404s."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devtools import SandboxFhir, load_resources, sekmet_binary
from fhir_mappings.client import FhirClient, next_link
from fhir_mappings.config import FhirSettings
from fhir_mappings.gather import FhirAccess, PatientData, gather_patient_data
from fhir_mappings.panel import Panel
from fhir_mappings.prefetch import fill_template, prefetch_templates
from tests.fhir_access.conftest import observation, patient_resource

SANDBOX_PATIENT = "sbx-pat-1"
CONTEXT = {"patientId": SANDBOX_PATIENT}


def sandbox_observations() -> list[dict]:
    """Five IL-6 and two ferritin results for the sandbox patient, and one for another patient."""
    il6 = [
        observation(
            f"sbx-il6-{n}", "26881-3", 20.0 * n, f"2026-11-2{n}T06:00:00+00:00", SANDBOX_PATIENT
        )
        for n in range(1, 6)
    ]
    ferritin = [
        observation("sbx-fer-1", "2276-4", 900.0, "2026-11-21T08:00:00+00:00", SANDBOX_PATIENT),
        observation("sbx-fer-2", "20567-4", 1800.0, "2026-11-22T08:00:00+00:00", SANDBOX_PATIENT),
    ]
    other = observation("sbx-other", "26881-3", 7.0, "2026-11-22T06:00:00+00:00", "sbx-pat-2")
    return [*il6, *ferritin, other]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxFhir]:
    """A sekmet server holding two patients and their results; skipped when not installed."""
    if sekmet_binary() is None:
        pytest.skip("sandbox FHIR server (sekmet) not installed")
    with SandboxFhir.start(Path(tmp_path_factory.mktemp("sekmet-fhir-access"))) as server:
        patients = [patient_resource(SANDBOX_PATIENT), patient_resource("sbx-pat-2")]
        load_resources(server.base_url, [*patients, *sandbox_observations()])
        yield server


@pytest.fixture
def settings() -> FhirSettings:
    """Generous limits: a real server on a busy 2-core machine."""
    return FhirSettings(timeout_seconds=5, deadline_seconds=15, max_pages=10, max_workers=4)


def observation_ids(data: PatientData) -> set[str]:
    return {obs["id"] for obs in data.observations}


def search_as_ehr(base_url: str, template: str) -> Any:
    """What an EHR would prefetch: one GET of the filled template, as the server answers it."""
    url = f"{base_url}/{fill_template(template, CONTEXT)}"
    response = requests.get(url, headers={"Accept": "application/fhir+json"}, timeout=10)
    return response.json() if response.status_code == 200 else None


def test_sandbox_paging_links_stay_inside_the_base_url_and_are_followed(
    sandbox: SandboxFhir,
) -> None:
    query = f"Observation?patient={SANDBOX_PATIENT}&code=http://loinc.org|26881-3&_count=2"
    first = requests.get(f"{sandbox.base_url}/{query}", timeout=10).json()

    with FhirClient(sandbox.base_url, None, timeout=5, max_pages=10) as client:
        found = client.search(query)

    assert next_link(first) is not None, "the sandbox pages at _count=2"
    assert {obs["id"] for obs in found} == {f"sbx-il6-{n}" for n in range(1, 6)}


def test_sandbox_query_and_prefetch_give_the_same_data(
    sandbox: SandboxFhir, panel: Panel, settings: FhirSettings
) -> None:
    """R45 against a real server: small pages queried and followed == one big prefetched page."""
    paged_templates = prefetch_templates(panel, page_size=2)
    whole_templates = prefetch_templates(panel, page_size=100)
    prefetch = {key: search_as_ehr(sandbox.base_url, t) for key, t in whole_templates.items()}
    access = FhirAccess(sandbox.base_url, None)

    queried = gather_patient_data(None, CONTEXT, paged_templates, access, settings)
    prefetched = gather_patient_data(prefetch, CONTEXT, whole_templates, None, settings)

    expected = {f"sbx-il6-{n}" for n in range(1, 6)} | {"sbx-fer-1", "sbx-fer-2"}
    assert observation_ids(queried) == observation_ids(prefetched) == expected
    assert queried.patient is not None and queried.patient["id"] == SANDBOX_PATIENT
    assert {json.dumps(o, sort_keys=True) for o in queried.observations} == {
        json.dumps(o, sort_keys=True) for o in prefetched.observations
    }


def test_sandbox_unknown_patient_reads_as_none_and_searches_as_empty(
    sandbox: SandboxFhir, panel: Panel, settings: FhirSettings
) -> None:
    templates = prefetch_templates(panel, page_size=10)
    access = FhirAccess(sandbox.base_url, None)

    data = gather_patient_data(None, {"patientId": "nobody-here"}, templates, access, settings)

    assert data.patient is None and data.observations == ()
    assert data.sources["patient"] == "query:not-found"


def test_sandbox_answers_the_panel_template_newest_first_across_codes(
    sandbox: SandboxFhir, panel: Panel
) -> None:
    """The panel template ORs every panel code (ferritin's two among them), sorted by `-date`."""
    template = prefetch_templates(panel, page_size=3)["panel"]
    first_page = search_as_ehr(sandbox.base_url, template)
    with FhirClient(sandbox.base_url, None, timeout=5, max_pages=10) as client:
        every_page = client.search(fill_template(template, CONTEXT))

    newest = [entry["resource"]["id"] for entry in first_page["entry"]]
    assert newest == ["sbx-il6-5", "sbx-il6-4", "sbx-il6-3"]
    expected = {f"sbx-il6-{n}" for n in range(1, 6)} | {"sbx-fer-1", "sbx-fer-2"}
    assert {obs["id"] for obs in every_page} == expected
