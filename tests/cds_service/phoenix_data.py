"""Phoenix inputs as FHIR resources for hook tests: vitals, support, infusions, infection."""

from __future__ import annotations

from datetime import datetime
from typing import Any

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
EPINEPHRINE = "3992"
CEFTRIAXONE = "2193"
BLOOD_CULTURE = "600-7"
SEPSIS = "91302008"


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _code(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def pulse_oximetry(
    patient_id: str, at: datetime, spo2: float, fio2_percent: float | None = None
) -> dict[str, Any]:
    """SpO2 (59408-5) with the inspired oxygen (3150-0, %) as a component when on oxygen."""
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"{patient_id}-spo2-{at:%m%d%H%M}",
        "status": "final",
        "code": _code(LOINC, "59408-5"),
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": at.isoformat(),
        "valueQuantity": _quantity(spo2, "%"),
    }
    if fio2_percent is not None:
        resource["component"] = [
            {"code": _code(LOINC, "3150-0"), "valueQuantity": _quantity(fio2_percent, "%")}
        ]
    return resource


def blood_pressure(patient_id: str, at: datetime, systolic: float, diastolic: float) -> dict:
    """A cuff blood-pressure panel (85354-9) with systolic and diastolic components."""
    return {
        "resourceType": "Observation",
        "id": f"{patient_id}-bp-{at:%m%d%H%M}",
        "status": "final",
        "code": _code(LOINC, "85354-9"),
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": at.isoformat(),
        "component": [
            {"code": _code(LOINC, "8480-6"), "valueQuantity": _quantity(systolic, "mm[Hg]")},
            {"code": _code(LOINC, "8462-4"), "valueQuantity": _quantity(diastolic, "mm[Hg]")},
        ],
    }


def ventilation(patient_id: str, start: datetime, ident: str = "imv-1") -> dict[str, Any]:
    """Invasive mechanical ventilation (SNOMED 1258985005), running since `start`."""
    return {
        "resourceType": "Procedure",
        "id": f"{patient_id}-{ident}",
        "status": "in-progress",
        "code": _code(SNOMED, "1258985005"),
        "subject": {"reference": f"Patient/{patient_id}"},
        "performedPeriod": {"start": start.isoformat()},
    }


def infusion(patient_id: str, start: datetime, rxnorm: str = EPINEPHRINE) -> dict[str, Any]:
    """A continuous intravenous infusion running since `start`."""
    return {
        "resourceType": "MedicationAdministration",
        "id": f"{patient_id}-infusion-{rxnorm}",
        "status": "in-progress",
        "medicationCodeableConcept": _code(RXNORM, rxnorm),
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectivePeriod": {"start": start.isoformat()},
        "dosage": {"route": _code(SNOMED, "47625008")},
    }


def dose(patient_id: str, at: datetime, rxnorm: str = CEFTRIAXONE, number: int = 1) -> dict:
    """One administered dose of an antimicrobial."""
    return {
        "resourceType": "MedicationAdministration",
        "id": f"{patient_id}-dose-{number}",
        "status": "completed",
        "medicationCodeableConcept": _code(RXNORM, rxnorm),
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": at.isoformat(),
    }


def culture_order(patient_id: str, at: datetime) -> dict[str, Any]:
    """A blood culture ordered (LOINC 600-7)."""
    return {
        "resourceType": "ServiceRequest",
        "id": f"{patient_id}-culture",
        "status": "active",
        "intent": "order",
        "code": _code(LOINC, BLOOD_CULTURE),
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": at.isoformat(),
    }


def sepsis_condition(patient_id: str, at: datetime) -> dict[str, Any]:
    """A sepsis diagnosis (SNOMED 91302008) with its onset."""
    return {
        "resourceType": "Condition",
        "id": f"{patient_id}-sepsis",
        "code": _code(SNOMED, SEPSIS),
        "subject": {"reference": f"Patient/{patient_id}"},
        "onsetDateTime": at.isoformat(),
    }


def gestational_age(patient_id: str, weeks: float) -> dict[str, Any]:
    """Gestational age at birth (76516-4) in weeks."""
    return {
        "resourceType": "Observation",
        "id": f"{patient_id}-gestation",
        "status": "final",
        "code": _code(LOINC, "76516-4"),
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2026-01-01",
        "valueQuantity": {"value": weeks, "unit": "wk", "system": UCUM, "code": "wk"},
    }
