"""FHIR R4 resources we emit: the draft ServiceRequest behind "order missing markers".

Each resource is built as a plain dict on the hook's path. Its shape is validated with the
fhir.resources R4B model once per analyte (`check_proposals`, run at start-up), off that path;
the ids filled in per call are checked against the FHIR id pattern.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import ValidationError

from fhir_mappings.panel import Analyte, Coding

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
_EXAMPLE_ID = "example"
_EXAMPLE_REQUESTER = "Practitioner/example"


def service_request_for(
    analyte: Analyte,
    *,
    patient_id: str,
    encounter_id: str | None = None,
    requester: str | None = None,
) -> dict[str, Any]:
    """A draft proposal ServiceRequest for an analyte's primary LOINC; bad ids: ValueError."""
    _check_proposal(analyte.display, analyte.primary)
    return _service_request(analyte.display, analyte.primary, patient_id, encounter_id, requester)


def check_proposals(analytes: Iterable[Analyte]) -> None:
    """Validate each analyte's ServiceRequest as FHIR R4B now; ValueError if one is not."""
    for analyte in analytes:
        _check_proposal(analyte.display, analyte.primary)


@functools.lru_cache(maxsize=256)
def _check_proposal(display: str, primary: Coding) -> None:
    """Validate one analyte's proposal, with example ids, against the R4B ServiceRequest model."""
    sample = _service_request(display, primary, _EXAMPLE_ID, _EXAMPLE_ID, _EXAMPLE_REQUESTER)
    try:
        ServiceRequest.model_validate(sample)
    except ValidationError as error:
        raise ValueError(
            f"the ServiceRequest for {primary.code} is not valid R4B: {error}"
        ) from None


def _service_request(
    display: str,
    primary: Coding,
    patient_id: str,
    encounter_id: str | None,
    requester: str | None,
) -> dict[str, Any]:
    """The proposal dict for one analyte, its references filled in, in a fixed key order."""
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "proposal",
        "category": [_laboratory_category()],
        "code": {"coding": [primary.as_fhir()], "text": display},
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
