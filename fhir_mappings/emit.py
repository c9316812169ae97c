"""FHIR R4 resources we emit: the draft ServiceRequest behind "order missing markers"."""

from __future__ import annotations

import re
from typing import Any

from fhir_mappings.panel import Analyte

SNOMED_SYSTEM = "http://snomed.info/sct"
LABORATORY_CODE = "108252007"
LABORATORY_DISPLAY = "Laboratory procedure"
PROPOSAL_NOTE = (
    "Proposed by the picu-endotype clinical decision support service; "
    "a clinician decides whether to order it."
)
REQUESTER_TYPES = frozenset(
    {"Practitioner", "PractitionerRole", "Organization", "Patient", "RelatedPerson", "Device"}
)
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def service_request_for(
    analyte: Analyte,
    *,
    patient_id: str,
    encounter_id: str | None = None,
    requester: str | None = None,
) -> dict[str, Any]:
    """A draft proposal ServiceRequest for an analyte's primary LOINC; bad ids: ValueError."""
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "proposal",
        "category": [_laboratory_category()],
        "code": {"coding": [analyte.primary.as_fhir()], "text": analyte.display},
        "subject": {"reference": f"Patient/{_resource_id(patient_id, 'Patient')}"},
        "note": [{"text": PROPOSAL_NOTE}],
    }
    if encounter_id is not None:
        resource["encounter"] = {
            "reference": f"Encounter/{_resource_id(encounter_id, 'Encounter')}"
        }
    if requester is not None:
        resource["requester"] = {"reference": _requester_reference(requester)}
    return resource


def _laboratory_category() -> dict[str, Any]:
    """A fresh SNOMED CT "laboratory procedure" category, so callers may change their copy."""
    coding = {"system": SNOMED_SYSTEM, "code": LABORATORY_CODE, "display": LABORATORY_DISPLAY}
    return {"coding": [coding], "text": "Laboratory"}


def _resource_id(value: str, resource_type: str) -> str:
    """A bare FHIR id from `id` or `Type/id`; ValueError when it is not a valid FHIR id."""
    candidate = value.removeprefix(f"{resource_type}/") if isinstance(value, str) else ""
    if not _FHIR_ID.match(candidate):
        raise ValueError(f"not a valid {resource_type} id: {value!r}")
    return candidate


def _requester_reference(requester: str) -> str:
    """`Type/id` for a requester such as the hook's `userId` (`Practitioner/123`)."""
    resource_type, _, resource_id = requester.partition("/")
    if resource_type not in REQUESTER_TYPES:
        raise ValueError(f"requester must be one of {sorted(REQUESTER_TYPES)}: {requester!r}")
    return f"{resource_type}/{_resource_id(resource_id, resource_type)}"
