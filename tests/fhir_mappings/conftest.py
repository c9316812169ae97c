"""Small Observation builders for the mapping tests."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_mappings.panel import LOINC_SYSTEM, Panel, load_panel

UCUM = "http://unitsofmeasure.org"


def observation(
    code: str = "26881-3",
    value: float | None = 42.0,
    unit: str | None = "pg/mL",
    *,
    status: str = "final",
    effective: str | None = "2026-03-01T08:00:00Z",
    subject: str | None = "Patient/p1",
    ucum: bool = True,
    system: str = LOINC_SYSTEM,
    **extra: Any,
) -> dict[str, Any]:
    """A minimal lab Observation dict; `value=None` leaves out valueQuantity."""
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"obs-{code}",
        "status": status,
        "code": {"coding": [{"system": system, "code": code}]},
    }
    if subject is not None:
        resource["subject"] = {"reference": subject}
    if effective is not None:
        resource["effectiveDateTime"] = effective
    if value is not None:
        quantity: dict[str, Any] = {"value": value}
        if unit is not None:
            quantity["unit"] = unit
            if ucum:
                quantity |= {"system": UCUM, "code": unit}
        resource["valueQuantity"] = quantity
    resource.update(extra)
    return resource


@pytest.fixture
def panel() -> Panel:
    """The packaged panel."""
    return load_panel()
