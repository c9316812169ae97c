"""FHIR resources for service tests, built from the packaged panel, and a fake FHIR server."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from werkzeug.wrappers import Request, Response

from fhir_mappings.panel import load_panel

UCUM = "http://unitsofmeasure.org"


def patient(patient_id: str, birth_date: date | str | None) -> dict[str, Any]:
    """A Patient resource with an optional birthDate."""
    resource: dict[str, Any] = {"resourceType": "Patient", "id": patient_id}
    if birth_date is not None:
        resource["birthDate"] = str(birth_date)
    return resource


def years_before(moment: datetime, years: float) -> date:
    """The date `years` (may be fractional) before `moment`."""
    return (moment - timedelta(days=365.25 * years)).date()


def observation(
    patient_id: str, analyte: str, value: float, time: datetime, *, index: int = 0
) -> dict[str, Any]:
    """A final panel Observation in the analyte's canonical unit, coded with its primary code."""
    spec = load_panel().analytes[analyte]
    coding = spec.primary
    return {
        "resourceType": "Observation",
        "id": f"{patient_id}-{analyte}-{index}",
        "status": "final",
        "code": {"coding": [coding.as_fhir()]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": time.isoformat(),
        "valueQuantity": {"value": value, "unit": spec.unit, "system": UCUM, "code": spec.unit},
    }


def searchset(resources: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A searchset Bundle holding `resources` (no entry element when there are none)."""
    entries = [{"resource": dict(resource)} for resource in resources]
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(entries)}
    if entries:
        bundle["entry"] = entries
    return bundle


def _codes(resource: Mapping[str, Any]) -> set[str]:
    return {f"{c['system']}|{c['code']}" for c in resource["code"]["coding"]}


def analyte_of(resource: Mapping[str, Any]) -> str:
    """The panel analyte an Observation built here reports."""
    return resource["id"].split("-")[-2]


V3_ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"


def ward(location_id: str, role: str) -> dict[str, Any]:
    """A ward Location typed with a v3 RoleCode (PEDICU, PEDNICU, PEDU, ...)."""
    return {
        "resourceType": "Location",
        "id": location_id,
        "status": "active",
        "name": f"{role} ward",
        "type": [{"coding": [{"system": V3_ROLE_CODE, "code": role}]}],
    }


def stay(
    patient_id: str,
    admitted: datetime,
    *,
    role: str = "PEDICU",
    encounter_id: str = "enc-1",
    status: str = "in-progress",
) -> list[dict[str, Any]]:
    """An Encounter whose active location is a bed in a `role` ward since `admitted`, with its
    Locations (bed partOf ward), as an `_include` search returns them."""
    bed = {
        "resourceType": "Location",
        "id": f"{encounter_id}-bed",
        "status": "active",
        "partOf": {"reference": f"Location/{encounter_id}-ward"},
    }
    encounter = {
        "resourceType": "Encounter",
        "id": encounter_id,
        "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "period": {"start": (admitted - timedelta(hours=6)).isoformat()},
        "location": [
            {
                "location": {"reference": f"Location/{bed['id']}"},
                "status": "active",
                "period": {"start": admitted.isoformat()},
            }
        ],
    }
    return [encounter, bed, ward(f"{encounter_id}-ward", role)]


def lab_order(patient_id: str, analyte: str, authored: datetime) -> dict[str, Any]:
    """An active ServiceRequest (an order) for one panel analyte's primary code."""
    return {
        "resourceType": "ServiceRequest",
        "id": f"sr-{analyte}",
        "status": "active",
        "intent": "order",
        "code": {"coding": [load_panel().analytes[analyte].primary.as_fhir()]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": authored.isoformat(),
    }


def full_prefetch(
    templates: Mapping[str, str],
    subject: dict[str, Any],
    observations: list[dict[str, Any]],
    *,
    encounters: list[dict[str, Any]] | None = None,
    orders: Iterable[Mapping[str, Any]] = (),
    others: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """A prefetch answering every template: the patient, the panel, the PICU stay, the orders,
    and the Phoenix searches (`others`: Procedures, infusions, ... sorted by resource type).

    Without `encounters`, the patient has been in the PICU since 40 h before this call's clock;
    a test comparing the card with one from a `FakeFhirServer` passes the server's `encounters`,
    since the card shows the admission time to the second.
    """
    if encounters is None:
        patient_id = subject.get("id") or observations[0]["subject"]["reference"].split("/")[-1]
        encounters = stay(patient_id, datetime.now(UTC) - timedelta(hours=40))
    answers: dict[str, list[Mapping[str, Any]]] = {
        "Observation": list(observations),
        "Encounter": encounters,
        "ServiceRequest": list(orders),
    }
    for resource in others:
        answers.setdefault(resource["resourceType"], []).append(resource)
    prefetch: dict[str, Any] = {}
    for key, template in templates.items():
        if template.startswith("Patient/"):
            prefetch[key] = subject
        else:
            prefetch[key] = searchset(_answer(template, answers))
    return prefetch


def _answer(template: str, answers: Mapping[str, list[Mapping[str, Any]]]) -> list:
    """What a server returns for one search template: its type, its codes where it names some."""
    resource_type, _, query = template.partition("?")
    found = list(answers.get(resource_type, []))
    codes = parse_qs(query).get("code")
    if codes is not None and resource_type in CODED_TYPES:
        wanted = set(codes[0].split(","))
        found = [r for r in found if _coded(r) & wanted]
    if "_include=DeviceUseStatement:device" in query:
        found += answers.get("Device", [])
    return found


CODED_TYPES = frozenset({"Observation", "Procedure", "MedicationAdministration"})


def _coded(resource: Mapping[str, Any]) -> set[str]:
    """system|code of a resource's code, or of its medication."""
    concept = resource.get("code") or resource.get("medicationCodeableConcept") or {}
    return {f"{c['system']}|{c['code']}" for c in concept.get("coding", [])}


@dataclass
class FakeFhirServer:
    """Answers Patient reads, Observation code searches and care-context searches."""

    patients: dict[str, dict[str, Any]] = field(default_factory=dict)
    observations: list[dict[str, Any]] = field(default_factory=list)
    encounters: list[dict[str, Any]] = field(default_factory=list)  # with their Locations
    orders: list[dict[str, Any]] = field(default_factory=list)
    conditions: list[dict[str, Any]] = field(default_factory=list)
    others: list[dict[str, Any]] = field(default_factory=list)  # Procedures, infusions, Devices
    authorizations: list[str | None] = field(default_factory=list)
    # each Observation search's codes and `date` bounds
    observation_searches: list[tuple[frozenset[str], list[str]]] = field(default_factory=list)

    def __call__(self, request: Request) -> Response:
        """Handle one request, recording its Authorization header."""
        self.authorizations.append(request.headers.get("Authorization"))
        resource_path = request.path.split("/fhir/", 1)[1]
        if resource_path.startswith("Patient/"):
            found = self.patients.get(resource_path.split("/", 1)[1])
            return _json(found, 200) if found else _json({"resourceType": "OperationOutcome"}, 404)
        query = parse_qs(request.query_string.decode())
        if resource_path == "Encounter":
            return _json(searchset(self.encounters), 200)
        if resource_path == "ServiceRequest":
            return _json(searchset(self.orders), 200)
        if resource_path == "Condition":
            return _json(searchset(self.conditions), 200)
        if resource_path == "Observation":
            return _json(self._search(query), 200)
        answers: dict[str, list[Mapping[str, Any]]] = {}
        for resource in self.others:
            answers.setdefault(resource["resourceType"], []).append(resource)
        return _json(searchset(_answer(request.full_path.split("/fhir/", 1)[1], answers)), 200)

    def _search(self, query: Mapping[str, list[str]]) -> dict[str, Any]:
        wanted = set(query["code"][0].split(","))
        subject = f"Patient/{query['patient'][0]}"
        bounds = query.get("date", [])
        self.observation_searches.append((frozenset(wanted), bounds))
        return searchset(
            o
            for o in self.observations
            if _codes(o) & wanted
            and o["subject"]["reference"] == subject
            and all(_within(o, bound) for bound in bounds)
        )


def _within(observation: Mapping[str, Any], bound: str) -> bool:
    """Whether an Observation's effective time meets one `date` search bound (ge, gt, le, lt)."""
    moment = datetime.fromisoformat(observation["effectiveDateTime"].replace("Z", "+00:00"))
    limit = datetime.fromisoformat(bound[2:].replace("Z", "+00:00"))
    checks = {
        "ge": moment >= limit,
        "gt": moment > limit,
        "le": moment <= limit,
        "lt": moment < limit,
    }
    return checks[bound[:2]]


def _json(body: Any, status: int) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/fhir+json")
