"""Synthetic results as FHIR R4 dicts: Patient, PICU Encounter and laboratory Observations.

Every resource carries the synthetic tags; values are rounded as a laboratory reports them and
carry a comparator beyond the assay limits. Pure: plain data in, plain dicts out.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from fhir_mappings.panel import Panel
from model.cohort import SYNTHETIC_TAG
from model.synth.parameters import DECIMALS, PARAMS, REFERENCE_HIGH, REFERENCE_LOW, Representation

UCUM = "http://unitsofmeasure.org"
SYNTHETIC_TAGS: tuple[dict[str, str], ...] = (
    {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
        "code": "HTEST",
        "display": "test health data",
    },
    {"system": SYNTHETIC_TAG[0], "code": SYNTHETIC_TAG[1]},
)
PATIENT_IDENTIFIER_SYSTEM = "https://picu-endotype.org/fhir/synthetic-patient"
LAB_CATEGORY_CODING = {
    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
    "code": "laboratory",
    "display": "Laboratory",
}
V3_ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
PICU_SERVICE = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
            "code": "PEDICU",
            "display": "Pediatric intensive care unit",
        }
    ],
    "text": "Pediatric intensive care unit (PICU)",
}
INPATIENT_CLASS = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
    "code": "IMP",
    "display": "inpatient encounter",
}
ARBITRARY_UCUM = frozenset({"[IU]/mL", "[arb'U]/mL"})


@dataclass(frozen=True, slots=True)
class Result:
    """One result to render: what, when, how and with which status."""

    observation_id: str
    analyte: str
    value: float  # canonical unit
    time: datetime
    rep: Representation
    status: str = "final"
    effective: str | None = None  # preformatted effective[x] value
    period_minutes: int | None = None  # effectivePeriod instead of effectiveDateTime
    issued_after: timedelta = timedelta(hours=2)
    as_utc: bool = False  # render times in UTC ("Z") instead of the site offset


@functools.lru_cache(maxsize=64)
def zone(offset_minutes: int) -> timezone:
    """The fixed-offset time zone `offset_minutes` east of UTC."""
    return timezone(timedelta(minutes=offset_minutes))


def format_time(moment: datetime, offset_minutes: int, *, as_utc: bool = False) -> str:
    """An ISO 8601 dateTime to the second, at the site offset or in UTC with a "Z"."""
    if as_utc:
        return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return moment.astimezone(zone(offset_minutes)).isoformat(timespec="seconds")


def synthetic_meta() -> dict[str, Any]:
    """A fresh `meta` with the synthetic tags."""
    return {"tag": [dict(tag) for tag in SYNTHETIC_TAGS]}


def _rounded(value: float, decimals: int) -> float | int:
    """`value` rounded as the laboratory reports it (an int for no decimals)."""
    if decimals <= 0:
        return int(round(value))
    return round(value, decimals)


def patient_resource(
    patient_id: str, label: str, sex: str, birth: date, deceased: str | None
) -> dict[str, Any]:
    """A synthetic Patient, named as a test patient, with its birth date and any death."""
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": patient_id,
        "meta": synthetic_meta(),
        "identifier": [{"system": PATIENT_IDENTIFIER_SYSTEM, "value": f"SYNTHETIC-{patient_id}"}],
        "name": [
            {
                "use": "anonymous",
                "text": f"SYNTHETIC TEST PATIENT {label}",
                "family": "SYNTHETIC",
                "given": ["Test", label],
            }
        ],
        "gender": sex,
        "birthDate": birth.isoformat(),
    }
    if deceased is not None:
        resource["deceasedDateTime"] = deceased
    return resource


COHORT_PICU_ID = "synthetic-picu"  # the one PICU ward every cohort encounter stays on


def cohort_picu_location() -> dict[str, Any]:
    """The cohort's PICU ward, typed v3 RoleCode PEDICU."""
    return location_resource(COHORT_PICU_ID, "PEDICU", "SYNTHETIC pediatric intensive care unit")


def location_resource(
    location_id: str, role: str | None, name: str, part_of: str | None = None
) -> dict[str, Any]:
    """A synthetic Location, typed with a v3 RoleCode when given (PEDICU for the PICU), and part
    of another when given (a bed in a ward, recognised through its ward)."""
    resource: dict[str, Any] = {
        "resourceType": "Location",
        "id": location_id,
        "meta": synthetic_meta(),
        "status": "active",
        "name": name,
        "mode": "instance",
    }
    if role is not None:
        resource["type"] = [{"coding": [{"system": V3_ROLE_CODE, "code": role}], "text": name}]
    if part_of is not None:
        resource["partOf"] = {"reference": f"Location/{part_of}"}
    return resource


def encounter_resource(
    encounter_id: str,
    patient_id: str,
    period: dict[str, str],
    *,
    status: str,
    died: bool,
    location_id: str,
    location_status: str = "active",
    picu: bool = True,
) -> dict[str, Any]:
    """An inpatient Encounter at `location_id` for its whole period (a PICU stay by default),
    with an "expired" disposition when the patient died."""
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": encounter_id,
        "meta": synthetic_meta(),
        "status": status,
        "class": dict(INPATIENT_CLASS),
        "subject": {"reference": f"Patient/{patient_id}"},
        "period": period,
        "location": [
            {
                "location": {"reference": f"Location/{location_id}"},
                "status": location_status,
                "period": dict(period),
            }
        ],
    }
    if picu:
        resource["serviceType"] = copy.deepcopy(PICU_SERVICE)
    if died:
        disposition = {"system": "http://terminology.hl7.org/CodeSystem/discharge-disposition"}
        disposition |= {"code": "exp", "display": "Expired"}
        resource["hospitalization"] = {"dischargeDisposition": {"coding": [disposition]}}
    return resource


def _coding(panel: Panel, analyte: str, code: str) -> dict[str, str]:
    """The panel's coding of `analyte` with `code`."""
    for coding in panel.codes_for(analyte):
        if coding.code == code:
            return coding.as_fhir()
    raise KeyError(f"{analyte}: code {code} is not in the panel")


def _quantity(value: float, rep: Representation, decimals: int, analyte: str) -> dict[str, Any]:
    """valueQuantity with a comparator when the canonical value is outside the assay limits."""
    quantity: dict[str, Any] = {}
    low, high = PARAMS.get(f"limit.{analyte}.low"), PARAMS.get(f"limit.{analyte}.high")
    if low is not None and value < low:
        value, quantity["comparator"] = low, "<"
    elif high is not None and value > high:
        value, quantity["comparator"] = high, ">"
    quantity["value"] = _rounded(value * rep.factor, decimals)
    quantity["unit"] = rep.unit
    if rep.ucum is not None:
        quantity |= {"system": UCUM, "code": rep.ucum}
    return quantity


def _reference_range(analyte: str, rep: Representation) -> list[dict[str, Any]] | None:
    """The laboratory reference range in the sent unit, when the result is sent unconverted."""
    if analyte not in REFERENCE_HIGH or rep.ucum is None or rep.factor != 1.0:
        return None
    if rep.ucum in ARBITRARY_UCUM:
        return None
    bound = {"unit": rep.unit, "system": UCUM, "code": rep.ucum}
    reference: dict[str, Any] = {"high": {"value": REFERENCE_HIGH[analyte], **bound}}
    if analyte in REFERENCE_LOW:
        reference = {"low": {"value": REFERENCE_LOW[analyte], **bound}, **reference}
    return [reference]


def observation_resource(
    panel: Panel,
    result: Result,
    patient_id: str,
    encounter_id: str | None,
    offset_minutes: int,
) -> dict[str, Any]:
    """One laboratory Observation dict (FHIR R4) for a synthetic result."""
    analyte, rep = result.analyte, result.rep
    decimals = rep.decimals if rep.decimals is not None else DECIMALS[analyte]
    coding = _coding(panel, analyte, rep.code)
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": result.observation_id,
        "meta": synthetic_meta(),
        "status": result.status,
        "category": [{"coding": [dict(LAB_CATEGORY_CODING)]}],
        "code": {"coding": [coding], "text": panel.analytes[analyte].display},
        "subject": {"reference": f"Patient/{patient_id}"},
    }
    if encounter_id is not None:
        resource["encounter"] = {"reference": f"Encounter/{encounter_id}"}
    resource |= _effective(result, offset_minutes)
    issued = result.time + result.issued_after
    resource["issued"] = format_time(issued, offset_minutes, as_utc=result.as_utc)
    resource["valueQuantity"] = _quantity(result.value, rep, decimals, analyte)
    reference = _reference_range(analyte, rep)
    if reference is not None:
        resource["referenceRange"] = reference
    return resource


def _effective(result: Result, offset_minutes: int) -> dict[str, Any]:
    """effectiveDateTime (preformatted, site offset or UTC) or effectivePeriod."""
    if result.effective is not None:
        return {"effectiveDateTime": result.effective}
    start = format_time(result.time, offset_minutes, as_utc=result.as_utc)
    if result.period_minutes is None:
        return {"effectiveDateTime": start}
    end_time = result.time + timedelta(minutes=result.period_minutes)
    return {"effectivePeriod": {"start": start, "end": format_time(end_time, offset_minutes)}}
