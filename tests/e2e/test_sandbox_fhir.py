"""The sandbox FHIR server behaves as the end-to-end tests and the demo rely on."""

from __future__ import annotations

from urllib.parse import urlsplit

import requests

from devtools import SandboxFhir, transaction_bundle

LOINC = "http://loinc.org"


def _observation(observation_id: str, patient_id: str, hour: int) -> dict:
    return {
        "resourceType": "Observation",
        "id": observation_id,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "1988-5"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": f"2026-01-02T{hour:02d}:00:00+00:00",
        "valueQuantity": {
            "value": 10 + hour,
            "unit": "mg/L",
            "system": "http://unitsofmeasure.org",
            "code": "mg/L",
        },
    }


def test_transaction_bundle_puts_each_resource_at_its_own_id() -> None:
    bundle = transaction_bundle(
        "http://fhir.test/fhir/", [{"resourceType": "Patient", "id": "p-1"}]
    )
    (entry,) = bundle["entry"]
    assert bundle["type"] == "transaction"
    assert entry["request"] == {"method": "PUT", "url": "Patient/p-1"}
    assert entry["fullUrl"] == "http://fhir.test/fhir/Patient/p-1"


def test_loaded_resources_keep_their_ids_and_reload_idempotently(
    sandbox_fhir: SandboxFhir, load_into_sandbox
) -> None:
    resources = [{"resourceType": "Patient", "id": "sandbox-check-1", "gender": "female"}]
    load_into_sandbox(resources)
    load_into_sandbox(resources)
    found = requests.get(
        f"{sandbox_fhir.base_url}/Patient", params={"_id": "sandbox-check-1"}, timeout=10
    ).json()
    assert [entry["resource"]["id"] for entry in found.get("entry", [])] == ["sandbox-check-1"]


def test_paging_links_point_at_the_sandbox_own_port(
    sandbox_fhir: SandboxFhir, load_into_sandbox
) -> None:
    patient = {"resourceType": "Patient", "id": "sandbox-paging"}
    load_into_sandbox([patient, *(_observation(f"sp-{h}", "sandbox-paging", h) for h in range(5))])
    page = requests.get(
        f"{sandbox_fhir.base_url}/Observation",
        params={"patient": "sandbox-paging", "_sort": "-date", "_count": 2},
        timeout=10,
    ).json()
    next_url = next(link["url"] for link in page["link"] if link["relation"] == "next")
    assert urlsplit(next_url).port == sandbox_fhir.port
    second = requests.get(next_url, timeout=10).json()
    assert [e["resource"]["id"] for e in page["entry"] + second["entry"]] == [
        "sp-4",
        "sp-3",
        "sp-2",
        "sp-1",
    ]
