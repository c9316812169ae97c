"""Builders for Phoenix readings and FHIR resources."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from fhir_mappings.phoenix_inputs import (
    PhoenixCatalog,
    PhoenixPatient,
    PhoenixReading,
    load_phoenix_catalog,
)

UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def reading(
    key: str,
    value: float = 1.0,
    *,
    hours_before: float = 0.0,
    at: datetime | None = None,
    **extra: Any,
) -> PhoenixReading:
    """A reading `hours_before` NOW (or at `at`)."""
    time = at if at is not None else NOW - timedelta(hours=hours_before)
    return PhoenixReading(key, value, time, LOINC, "test", source=f"Observation/{key}", **extra)


def child(age_months: float, when: datetime = NOW, **extra: Any) -> PhoenixPatient:
    """A patient whose age at `when` is about `age_months`: whole months to the day, the
    fraction as days of a 30-day month."""
    whole = int(age_months)
    year, month = divmod(when.month - 1 - whole, 12)
    birth = date(when.year + year, month + 1, min(when.day, 28))
    birth -= timedelta(days=round((age_months - whole) * 30))
    return PhoenixPatient(birth_date=birth, **extra)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def observation(
    code: str,
    value: float | None = None,
    unit: str | None = None,
    *,
    at: datetime = NOW,
    status: str = "final",
    ucum: bool = True,
    ident: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An Observation with a valueQuantity (when `value` is given)."""
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": ident or f"obs-{code}",
        "status": status,
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": iso(at),
    }
    if value is not None:
        quantity: dict[str, Any] = {"value": value}
        if unit is not None:
            quantity["unit"] = unit
            if ucum:
                quantity |= {"system": UCUM, "code": unit}
        resource["valueQuantity"] = quantity
    resource.update(extra)
    return resource


def concept(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


@pytest.fixture(scope="session")
def catalog() -> PhoenixCatalog:
    return load_phoenix_catalog()


@pytest.fixture
def toddler() -> PhoenixPatient:
    """30 months old (MAP band 24-60 months: 1 point below 45, 2 below 32)."""
    return child(30)
