"""Whatever shape an Observation arrives in, extraction returns data and never raises."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from typing import Any

import pytest
from fhir.resources.R4B.observation import Observation

from fhir_mappings.observations import extract
from fhir_mappings.panel import LOINC_SYSTEM, Panel

from .conftest import UCUM, observation

JUNK: tuple[Any, ...] = (None, 0, -1.5, True, "", "x", [], [None], {}, {"value": "x"})


def full_observation() -> dict[str, Any]:
    """A lactate panel Observation using every field the extractor reads."""
    resource = observation("2524-7", 3.2, "mmol/L", id="lac-1")
    resource["valueQuantity"]["comparator"] = ">"
    resource["component"] = [
        {
            "code": {"coding": [{"system": LOINC_SYSTEM, "code": "26881-3"}]},
            "valueQuantity": {"value": 12.0, "unit": "pg/mL", "system": UCUM, "code": "pg/mL"},
        }
    ]
    return resource


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key or index path inside a JSON value."""
    if isinstance(node, dict):
        items: Any = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for key, child in items:
        yield (*prefix, key)
        yield from paths(child, (*prefix, key))


def replaced(resource: dict[str, Any], path: tuple[Any, ...], junk: Any) -> dict[str, Any]:
    mutated = copy.deepcopy(resource)
    node: Any = mutated
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = copy.deepcopy(junk)
    return mutated


def test_the_full_observation_is_valid_r4b_and_yields_two_measurements(panel: Panel) -> None:
    Observation.model_validate(full_observation())
    extraction = extract([full_observation()], panel, patient_id="p1")
    assert {m.analyte for m in extraction.measurements} == {"lactate", "il6"}


@pytest.mark.parametrize("path", list(paths(full_observation())), ids=str)
def test_any_field_replaced_by_junk_never_raises_or_yields_bad_measurements(
    panel: Panel, path: tuple[Any, ...]
) -> None:
    for junk in JUNK:
        extraction = extract([replaced(full_observation(), path, junk)], panel, patient_id="p1")
        assert len(extraction.measurements) + len(extraction.exclusions) <= 2
        for measurement in extraction.measurements:
            assert math.isfinite(measurement.value)
            assert measurement.time.utcoffset() is not None
            assert measurement.unit == panel.analytes[measurement.analyte].unit
            assert measurement.status in {"final", "amended", "corrected", "preliminary"}


@pytest.mark.parametrize("junk", JUNK, ids=repr)
def test_junk_entries_in_the_list_are_reported_or_ignored(panel: Panel, junk: Any) -> None:
    extraction = extract([junk, observation()], panel)
    assert len(extraction.measurements) == 1
