"""Whatever shape an Encounter, Location, Condition or ServiceRequest arrives in: no exception."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from fhir_mappings.encounters import (
    Mapped,
    condition_facts,
    encounter_facts,
    location_facts,
    order_facts,
)
from fhir_mappings.panel import load_panel
from tests.fhir_mappings.test_robustness import JUNK, paths, replaced

from .builders import SERVICE_TYPE, condition, encounter, picu_bed, service_request, stay

PANEL = load_panel()
MAPPERS: dict[str, Callable[[Any], Mapped[Any]]] = {
    "Location": location_facts,
    "Encounter": lambda resources: encounter_facts(resources, patient_id="pat-0042"),
    "Condition": lambda resources: condition_facts(resources, patient_id="pat-0042"),
    "ServiceRequest": lambda resources: order_facts(resources, PANEL, patient_id="pat-0042"),
}


def full_resources() -> list[dict[str, Any]]:
    """One of each resource type using every field the mappers read."""
    picu_encounter = encounter(
        "enc-1",
        end=1,
        stays=[stay("picu-r4-b2", start=20, end=2)],
        service_type=(SERVICE_TYPE, "604"),
    )
    return [
        picu_bed()[2],
        picu_encounter,
        condition("c-1", recorded=19),
        service_request("sr-1"),
    ]


CASES = [
    (index, path) for index, resource in enumerate(full_resources()) for path in paths(resource)
]


def check_facts(mapped: Mapped[Any]) -> None:
    """Facts hold strings where ids and codes go and aware datetimes where times go."""
    assert isinstance(mapped.skipped, int) and mapped.skipped >= 0
    for fact in mapped.facts:
        assert isinstance(fact.id, str) and fact.id
        for name in fact.__slots__:
            value = getattr(fact, name)
            if isinstance(value, datetime):
                assert value.utcoffset() is not None
            for item in value if isinstance(value, tuple) else ():
                if isinstance(item, tuple):
                    assert all(isinstance(part, str) and part for part in item)


@pytest.mark.parametrize(("index", "path"), CASES, ids=[f"{i}:{p}" for i, p in CASES])
def test_any_field_replaced_by_junk_never_raises(index: int, path: tuple[Any, ...]) -> None:
    resource = full_resources()[index]
    mapper = MAPPERS[resource["resourceType"]]
    for junk in JUNK:
        mapped = mapper([replaced(resource, path, junk)])
        assert len(mapped.facts) + mapped.skipped <= 1
        check_facts(mapped)


@pytest.mark.parametrize("junk", JUNK, ids=repr)
def test_junk_entries_beside_good_ones_never_hide_the_good_ones(junk: Any) -> None:
    for resource in full_resources():
        mapped = MAPPERS[resource["resourceType"]]([junk, resource])
        assert len(mapped.facts) == 1
