"""Impossible values and conflicting copies are excluded before anything can score them."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fhir_mappings.measurement import ExclusionReason
from fhir_mappings.observations import extract
from fhir_mappings.panel import Panel, load_panel

UCUM = "http://unitsofmeasure.org"
CODES = {"il6": "26881-3", "ferritin": "2276-4", "crp": "1988-5", "lactate": "2524-7"}


@pytest.fixture(scope="module")
def panel() -> Panel:
    return load_panel()


def result(analyte: str, value: Any, unit: str, *, obs_id: str = "obs-1", **extra: Any) -> dict:
    """A final Observation of `analyte` with a UCUM quantity."""
    quantity = {"value": value, "unit": unit, "system": UCUM, "code": unit, **extra}
    return {
        "resourceType": "Observation",
        "id": obs_id,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": CODES[analyte]}]},
        "effectiveDateTime": "2026-11-20T06:00:00Z",
        "valueQuantity": quantity,
    }


@pytest.mark.parametrize(
    ("analyte", "value", "unit", "detail"),
    [
        ("il6", -3, "pg/mL", "Interleukin-6 -3 pg/mL is below the physical limit of 0 pg/mL"),
        ("ferritin", -80, "ng/mL", "Ferritin -80 ng/mL is impossible: it must be above 0 ng/mL"),
        ("ferritin", 0, "ng/mL", "Ferritin 0 ng/mL is impossible: it must be above 0 ng/mL"),
        ("crp", -3, "mg/L", "C-reactive protein -3 mg/L is below the physical limit of 0 mg/L"),
        ("crp", 1e308, "mg/dL", "C-reactive protein 1e+308 mg/dL is not a finite number in mg/L"),
        ("crp", 60000, "mg/L", "C-reactive protein 60000 mg/L is above the physical limit of"),
        ("lactate", 0, "mmol/L", "Lactate 0 mmol/L is impossible: it must be above 0 mmol/L"),
    ],
)
def test_impossible_values_are_excluded_with_the_reason(
    panel: Panel, analyte: str, value: float, unit: str, detail: str
) -> None:
    extraction = extract([result(analyte, value, unit)], panel)

    assert extraction.measurements == ()
    [exclusion] = extraction.exclusions
    assert exclusion.reason is ExclusionReason.IMPLAUSIBLE
    assert exclusion.detail.startswith(detail)
    assert exclusion.analyte == analyte


@pytest.mark.parametrize(
    ("analyte", "value", "unit"),
    [("crp", 0, "mg/L"), ("lactate", 0.3, "mmol/L"), ("ferritin", 250000, "ng/mL")],
)
def test_possible_values_at_the_edges_are_kept(
    panel: Panel, analyte: str, value: float, unit: str
) -> None:
    extraction = extract([result(analyte, value, unit)], panel)

    assert extraction.exclusions == ()
    assert [m.value for m in extraction.measurements] == [value]


def test_a_censored_value_beyond_the_physical_limit_is_excluded(panel: Panel) -> None:
    extraction = extract([result("il6", 2e7, "pg/mL", comparator=">")], panel)

    assert [e.reason for e in extraction.exclusions] == [ExclusionReason.IMPLAUSIBLE]


def test_every_panel_analyte_has_an_ordered_plausible_range(panel: Panel) -> None:
    for analyte in panel.analytes.values():
        assert analyte.plausible_min == 0.0, analyte.key  # no concentration or count is negative
        assert analyte.plausible_max > analyte.plausible_min, analyte.key
        assert not analyte.is_plausible(-0.001) and not analyte.is_plausible(float("nan"))
        assert not analyte.is_plausible(float("inf"))


def test_copies_of_one_id_with_different_values_are_all_excluded_as_conflicting(
    panel: Panel,
) -> None:
    first, second = result("il6", 12, "pg/mL"), result("il6", 950, "pg/mL")

    for order in ([first, second], [second, first]):
        extraction = extract(order, panel)
        assert extraction.measurements == ()
        assert [e.reason for e in extraction.exclusions] == [ExclusionReason.CONFLICTING] * 2
        assert {e.observation_id for e in extraction.exclusions} == {"obs-1"}


def test_identical_copies_and_copies_differing_only_in_meta_are_not_conflicting(
    panel: Panel,
) -> None:
    original = result("il6", 12, "pg/mL")
    refreshed = copy.deepcopy(original) | {"meta": {"lastUpdated": "2026-11-21T00:00:00Z"}}

    extraction = extract([original, copy.deepcopy(original), refreshed], panel)

    assert extraction.exclusions == ()
    assert {m.value for m in extraction.measurements} == {12}


def test_different_ids_with_the_same_value_are_two_results(panel: Panel) -> None:
    extraction = extract(
        [result("il6", 12, "pg/mL", obs_id="a"), result("il6", 12, "pg/mL", obs_id="b")], panel
    )

    assert extraction.exclusions == ()
    assert len(extraction.measurements) == 2
