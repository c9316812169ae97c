"""The Phoenix queries and templates against a real FHIR server (sekmet): onset found both ways."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from devtools import SandboxFhir, load_resources, sekmet_binary
from fhir_mappings.client import FhirClient, entry_resources
from fhir_mappings.encounters import encounter_facts
from fhir_mappings.phoenix_inputs import extract_phoenix, phoenix_patient
from fhir_mappings.phoenix_queries import (
    ENCOUNTER_KEY,
    phoenix_prefetch_templates,
    phoenix_queries,
    query_since,
)
from fhir_mappings.prefetch import fill_template, is_search
from model.phoenix import phoenix_course

from .conftest import NOW, RXNORM, SCT, concept, iso, observation

PATIENT = "phx-pat-1"
ENCOUNTER = "phx-enc-1"
ADMITTED = NOW - timedelta(hours=30)
CONTEXT = {"patientId": PATIENT, "encounterId": ENCOUNTER}


def on_patient(resource: dict[str, Any], patient: str = PATIENT) -> dict[str, Any]:
    return {**resource, "subject": {"reference": f"Patient/{patient}"}}


def stay() -> list[dict[str, Any]]:
    """A child admitted 30 h ago: platelets low from the start, lactate high and intubated 20 h
    ago (onset), epinephrine running; an older lactate and another child's result as noise."""
    onset = NOW - timedelta(hours=20)
    resources: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": PATIENT, "birthDate": "2023-05-10"},
        {"resourceType": "Patient", "id": "phx-pat-2", "birthDate": "2020-01-01"},
        {
            "resourceType": "Encounter",
            "id": ENCOUNTER,
            "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": {"reference": f"Patient/{PATIENT}"},
            "period": {"start": iso(ADMITTED)},
        },
        on_patient(observation("777-3", 70, "10*3/uL", at=ADMITTED, ident="phx-plt-1")),
        on_patient(
            observation("2524-7", 2.0, "mmol/L", at=NOW - timedelta(days=4), ident="phx-lac-old")
        ),
        on_patient(observation("2524-7", 7.5, "mmol/L", at=onset, ident="phx-lac-1")),
        on_patient(observation("2524-7", 7.5, "mmol/L", at=onset, ident="phx-other"), "phx-pat-2"),
        {
            "resourceType": "Procedure",
            "id": "phx-vent",
            "status": "in-progress",
            "subject": {"reference": f"Patient/{PATIENT}"},
            "code": concept(SCT, "1258985005"),
            "performedPeriod": {"start": iso(onset)},
        },
        {
            "resourceType": "MedicationAdministration",
            "id": "phx-epi",
            "status": "in-progress",
            "subject": {"reference": f"Patient/{PATIENT}"},
            "medicationCodeableConcept": concept(RXNORM, "3992"),
            "effectivePeriod": {"start": iso(onset + timedelta(hours=1))},
            "dosage": {"route": concept(SCT, "47625008")},
        },
    ]
    for hour in range(0, 20, 2):  # SpO2 and FiO2 every other hour on the ventilator
        moment = onset + timedelta(hours=hour)
        resources.append(
            on_patient(observation("3150-0", 60, "%", at=moment, ident=f"phx-fio2-{hour}"))
        )
        resources.append(
            on_patient(observation("59408-5", 88, "%", at=moment, ident=f"phx-spo2-{hour}"))
        )
    return resources


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxFhir]:
    """A sekmet server holding the stay; the sandbox venv is set up by `python3 dev.py test`."""
    if sekmet_binary() is None:
        pytest.fail("the sandbox FHIR server (sekmet) is not installed: run python3 dev.py test")
    with SandboxFhir.start(Path(tmp_path_factory.mktemp("sekmet-phoenix"))) as server:
        load_resources(server.base_url, stay())
        yield server


def course_of(resources: list[dict[str, Any]], catalog):
    patient = next(r for r in resources if r.get("resourceType") == "Patient")
    (encounter,) = encounter_facts(resources, patient_id=PATIENT).facts
    signals = phoenix_patient(patient, encounter, resources)
    extraction = extract_phoenix(resources, catalog, patient_id=PATIENT)
    assert extraction.exclusions == ()
    start = signals.encounter_start
    return phoenix_course(extraction.readings, signals, start=start, end=NOW, catalog=catalog)


def check_course(course) -> None:
    assert course.out_of_scope is None
    assert course.onset is not None and course.onset.time == NOW - timedelta(hours=20)
    assert course.points[0].total == 1  # platelets alone
    assert course.latest is not None and course.latest.time == NOW
    # respiratory 3 (IMV, S/F 88/0.6 = 147 < 148), cardiovascular 1 (epinephrine; the lactate
    # has expired), coagulation 0 (the platelets are older than 24 h)
    assert course.latest.subscores == {
        "respiratory": 3,
        "cardiovascular": 1,
        "coagulation": 0,
        "neurologic": 0,
    }


def test_query_path_finds_the_onset(sandbox: SandboxFhir, catalog) -> None:
    queries = phoenix_queries(catalog, PATIENT, since=query_since(ADMITTED, catalog), page_size=7)
    found: list[dict[str, Any]] = []
    with FhirClient(sandbox.base_url, None, timeout=10, max_pages=20) as client:
        for query in queries.values():
            found.extend(client.search(query))
        found.append(client.read(f"Patient/{PATIENT}"))
        found.append(client.read(f"Encounter/{ENCOUNTER}"))
    ids = {r["id"] for r in found}
    assert "phx-lac-old" not in ids and "phx-other" not in ids  # date bound, patient
    assert {"phx-vent", "phx-epi", "phx-plt-1", "phx-lac-1"} <= ids
    check_course(course_of(found, catalog))


def test_prefetch_path_finds_the_same_onset(sandbox: SandboxFhir, catalog) -> None:
    templates = phoenix_prefetch_templates(catalog, page_size=100)
    found: list[dict[str, Any]] = []
    for key, template in templates.items():
        url = f"{sandbox.base_url}/{fill_template(template, CONTEXT)}"
        response = requests.get(url, headers={"Accept": "application/fhir+json"}, timeout=10)
        assert response.status_code == 200, (key, response.text[:300])
        body = response.json()
        found.extend(entry_resources(body) if is_search(template) else [body])
        if key == ENCOUNTER_KEY:
            assert body["id"] == ENCOUNTER
    patient = requests.get(f"{sandbox.base_url}/Patient/{PATIENT}", timeout=10).json()
    check_course(course_of([patient, *found], catalog))
