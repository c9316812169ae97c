"""Search parameters added to our own queries (a date bound), and one more search added later."""

from __future__ import annotations

import pytest
from pytest_httpserver import HTTPServer

from fhir_mappings.config import FhirSettings
from fhir_mappings.gather import FhirAccess, PatientData, add_search, gather_patient_data
from tests.fhir_access.conftest import (
    PATIENT_ID,
    TOKEN,
    FakeFhir,
    observation,
    patient_resource,
    searchset,
)

CONTEXT = {"patientId": PATIENT_ID, "userId": "Practitioner/dr-7"}
TEMPLATES = {
    "patient": "Patient/{{context.patientId}}",
    "panel": "Observation?patient={{context.patientId}}&code=http://loinc.org|26881-3",
}
SETTINGS = FhirSettings(timeout_seconds=5, deadline_seconds=10)
BOUND = "date=ge2026-11-01T00:00:00Z"


def _searches(server: HTTPServer) -> list[dict[str, list[str]]]:
    return [
        {name: request.args.getlist(name) for name in request.args}
        for request, _ in server.log
        if request.path.endswith("/Observation")
    ]


def test_our_query_carries_the_added_parameters(fake_fhir: FakeFhir) -> None:
    gather_patient_data(
        None,
        CONTEXT,
        TEMPLATES,
        FhirAccess(fake_fhir.base_url, TOKEN),
        SETTINGS,
        query_params={"panel": BOUND},
    )

    [search] = _searches(fake_fhir.server)
    assert search["date"] == ["ge2026-11-01T00:00:00Z"]
    assert search["code"] == ["http://loinc.org|26881-3"]


def test_a_prefetched_key_is_not_queried_for_its_added_parameters(fake_fhir: FakeFhir) -> None:
    prefetch = {"patient": patient_resource(), "panel": searchset([])}
    gather_patient_data(
        prefetch,
        CONTEXT,
        TEMPLATES,
        FhirAccess(fake_fhir.base_url, TOKEN),
        SETTINGS,
        query_params={"panel": BOUND},
    )

    assert fake_fhir.server.log == []


def test_an_added_search_merges_its_observations_and_counts_its_call(fake_fhir: FakeFhir) -> None:
    recent = observation("il6-new", "26881-3", 90.0, "2026-11-20T06:00:00Z")
    older = observation("il6-old", "26881-3", 40.0, "2026-10-20T06:00:00Z")
    fake_fhir.observations = [recent, older]
    access = FhirAccess(fake_fhir.base_url, TOKEN)
    # what a first round gave: the recent result, from one query
    first = PatientData(patient_resource(), (recent,), {"panel": "query"}, None, fhir_calls=1)

    more = add_search(
        first, "panel", TEMPLATES["panel"], "date=lt2026-11-01", CONTEXT, access, SETTINGS
    )

    assert sorted(o["id"] for o in more.observations) == ["il6-new", "il6-old"]  # one copy each
    assert more.sources["panel"] == "query+query:older"
    assert more.fhir_calls == 2
    assert more.deadline is not None


def test_only_an_observation_search_can_be_added(fake_fhir: FakeFhir) -> None:
    data = gather_patient_data({"patient": patient_resource()}, CONTEXT, {}, None, SETTINGS)
    with pytest.raises(ValueError, match="Observation search"):
        add_search(
            data,
            "patient",
            TEMPLATES["patient"],
            BOUND,
            CONTEXT,
            FhirAccess(fake_fhir.base_url, TOKEN),
            SETTINGS,
        )
