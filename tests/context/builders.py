"""FHIR R4 Encounter, Location, Condition and ServiceRequest dicts shaped like EHR exports."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

V3_ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PHYSICAL_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
SITE_LOCATIONS = "https://ehr.example.org/location-ids"
SERVICE_TYPE = "http://terminology.hl7.org/CodeSystem/service-type"
PATIENT = "pat-0042"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def at(hours_ago: float) -> str:
    """A FHIR dateTime `hours_ago` before NOW, written with a +01:00 offset like a European EHR."""
    local = (NOW - timedelta(hours=hours_ago)).astimezone(UTC) + timedelta(hours=1)
    return local.replace(tzinfo=None).isoformat(timespec="seconds") + "+01:00"


def ago(hours: float) -> datetime:
    """NOW minus `hours`, as the aware UTC datetime the mapping should produce."""
    return NOW - timedelta(hours=hours)


def location(
    location_id: str,
    name: str,
    *,
    role: str | None = None,
    physical: str = "wa",
    part_of: str | None = None,
    identifier: str | None = None,
    status: str = "active",
) -> dict[str, Any]:
    """A Location: a ward typed with a v3 RoleCode, a room or a bed that is partOf its parent."""
    resource: dict[str, Any] = {
        "resourceType": "Location",
        "id": location_id,
        "status": status,
        "name": name,
        "mode": "instance",
        "physicalType": {"coding": [{"system": PHYSICAL_TYPE, "code": physical}]},
    }
    if role is not None:
        resource["type"] = [{"coding": [{"system": V3_ROLE_CODE, "code": role}], "text": name}]
    if part_of is not None:
        resource["partOf"] = {"reference": f"Location/{part_of}"}
    if identifier is not None:
        resource["identifier"] = [{"system": SITE_LOCATIONS, "value": identifier}]
    return resource


def picu_bed(prefix: str = "", ward_role: str = "PEDICU") -> list[dict[str, Any]]:
    """A bed in a room on a ward typed `ward_role`: bed -> room -> ward through partOf."""
    return [
        location(f"{prefix}picu", "Paediatric ICU, 6 North", role=ward_role, identifier="6N"),
        location(f"{prefix}picu-r4", "6N room 4", physical="ro", part_of=f"{prefix}picu"),
        location(
            f"{prefix}picu-r4-b2", "6N room 4 bed 2", physical="bd", part_of=f"{prefix}picu-r4"
        ),
    ]


def stay(
    location_id: str,
    *,
    status: str | None = "active",
    start: float | None = None,
    end: float | None = None,
    display: str | None = None,
    reference: str | None = None,
) -> dict[str, Any]:
    """One Encounter.location entry; `start`/`end` in hours before NOW."""
    target: dict[str, Any] = {"reference": reference or f"Location/{location_id}"}
    if display is not None:
        target["display"] = display
    entry: dict[str, Any] = {"location": target}
    if status is not None:
        entry["status"] = status
    period = {k: at(v) for k, v in (("start", start), ("end", end)) if v is not None}
    if period:
        entry["period"] = period
    return entry


def encounter(
    encounter_id: str,
    *,
    status: str = "in-progress",
    start: float | None = 30.0,
    end: float | None = None,
    stays: Sequence[dict[str, Any]] = (),
    service_type: tuple[str, str] | None = None,
    patient: str = PATIENT,
    encounter_class: str = "IMP",
) -> dict[str, Any]:
    """An inpatient Encounter; `start`/`end` in hours before NOW."""
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": encounter_id,
        "status": status,
        "class": {"system": V3_ACT_CODE, "code": encounter_class},
        "subject": {"reference": f"Patient/{patient}"},
    }
    period = {k: at(v) for k, v in (("start", start), ("end", end)) if v is not None}
    if period:
        resource["period"] = period
    if service_type is not None:
        system, code = service_type
        resource["serviceType"] = {"coding": [{"system": system, "code": code}]}
    if stays:
        resource["location"] = list(stays)
    return resource


def condition(
    condition_id: str,
    code: str = "91302008",
    *,
    onset: float | None = 20.0,
    recorded: float | None = None,
    verification: str | None = "confirmed",
    clinical: str = "active",
    onset_period: bool = False,
    patient: str = PATIENT,
    encounter_id: str | None = "enc-1",
) -> dict[str, Any]:
    """A SNOMED Condition (sepsis by default) with an onset `onset` hours before NOW."""
    clinical_system = "http://terminology.hl7.org/CodeSystem/condition-clinical"
    verification_system = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": condition_id,
        "clinicalStatus": {"coding": [{"system": clinical_system, "code": clinical}]},
        "code": {"coding": [{"system": SNOMED, "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
    }
    if verification is not None:
        resource["verificationStatus"] = {
            "coding": [{"system": verification_system, "code": verification}]
        }
    if onset is not None:
        if onset_period:
            resource["onsetPeriod"] = {"start": at(onset)}
        else:
            resource["onsetDateTime"] = at(onset)
    if recorded is not None:
        resource["recordedDate"] = at(recorded)
    if encounter_id is not None:
        resource["encounter"] = {"reference": f"Encounter/{encounter_id}"}
    return resource


def service_request(
    request_id: str,
    code: str = "98115-9",
    *,
    status: str = "active",
    intent: str = "order",
    authored: float | None = 3.0,
    system: str = LOINC,
    patient: str = PATIENT,
    **extra: Any,
) -> dict[str, Any]:
    """A lab ServiceRequest (CXCL9 by default) authored `authored` hours before NOW."""
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": request_id,
        "status": status,
        "intent": intent,
        "category": [{"coding": [{"system": SNOMED, "code": "108252007"}]}],
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
    }
    if authored is not None:
        resource["authoredOn"] = at(authored)
    resource.update(extra)
    return resource
