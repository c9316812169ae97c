"""The cohort carries the result shapes the mapping layer must handle, and they map correctly."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import pytest

from fhir_mappings.measurement import ExclusionReason
from fhir_mappings.observations import extract
from fhir_mappings.panel import Panel
from model.synth import Cohort


def _code(observation: dict) -> str:
    return observation["code"]["coding"][0]["code"]


def _unit(observation: dict) -> str | None:
    return observation["valueQuantity"].get("code")


def _shapes(cohort: Cohort) -> Counter:
    return Counter((_code(o), _unit(o)) for o in cohort.observations)


@pytest.mark.slow  # the large session cohort (3,000 patients)
@pytest.mark.parametrize(
    ("code", "unit"),
    [
        ("1988-5", "mg/dL"),  # CRP in mg/dL
        ("30522-7", "mg/L"),  # hs-CRP alias
        ("14118-4", "mg/dL"),  # lactate under a mass code
        ("32693-4", "mmol/L"),  # lactate in whole blood
        ("731-0", "/uL"),  # lymphocytes per microlitre
        ("26474-7", "10*3/uL"),
        ("777-3", "10*9/L"),
        ("777-3", None),  # unit text only
        ("2276-4", "ug/L"),
        ("20567-4", "ng/mL"),
        ("26881-3", "ng/L"),
        ("75241-0", "ng/mL"),
        ("76039-7", "[arb'U]/mL"),  # sIL-2R in assay units
        ("12729-0", "[IU]/mL"),  # IFN-gamma units/volume code
    ],
)
def test_alternate_codes_and_units_occur(large_cohort: Cohort, code: str, unit: str | None) -> None:
    assert _shapes(large_cohort)[(code, unit)] >= 5


@pytest.mark.slow  # the large session cohort (3,000 patients)
def test_low_il6_is_reported_with_a_less_than_comparator(large_cohort: Cohort) -> None:
    low = [
        o["valueQuantity"]
        for o in large_cohort.observations
        if _code(o) == "26881-3" and o["valueQuantity"].get("comparator") == "<"
    ]
    assert len(low) >= 20
    assert {(q["value"], q["code"]) for q in low} <= {(2.0, "pg/mL"), (2.0, "ng/L")}


@pytest.mark.slow  # the large session cohort (3,000 patients)
def test_statuses_include_entered_in_error_preliminary_and_amended(large_cohort: Cohort) -> None:
    statuses = Counter(o["status"] for o in large_cohort.observations)
    assert statuses["final"] > 0.9 * len(large_cohort.observations)
    assert min(statuses["entered-in-error"], statuses["preliminary"], statuses["amended"]) >= 50


@pytest.mark.slow  # the large session cohort (3,000 patients)
def test_entered_in_error_results_have_a_valid_twin(large_cohort: Cohort) -> None:
    by_id = {o["id"]: o for o in large_cohort.observations}
    voided = [o for o in large_cohort.observations if o["status"] == "entered-in-error"]
    for observation in voided:
        twin = by_id[observation["id"].removesuffix("-eie")]
        assert twin["status"] != "entered-in-error"
        assert twin.get("effectiveDateTime") == observation.get("effectiveDateTime")


def _offset(text: str) -> str:
    return "Z" if text.endswith("Z") else text[-6:]


@pytest.mark.slow  # the large session cohort (3,000 patients)
def test_times_use_mixed_offsets_periods_and_a_few_bare_dates(large_cohort: Cohort) -> None:
    times = [o["effectiveDateTime"] for o in large_cohort.observations if "effectiveDateTime" in o]
    periods = [o for o in large_cohort.observations if "effectivePeriod" in o]
    offsets = Counter(_offset(t) for t in times if len(t) > 10)
    assert len(offsets) >= 5 and "Z" in offsets
    assert len(periods) >= 50
    assert sum(len(t) == 10 for t in times) >= 5


def test_converted_units_map_back_to_the_canonical_value(
    small_cohort: Cohort, panel: Panel
) -> None:
    observations = {o["id"]: o for o in small_cohort.observations}
    factors = {"mg/dL": {"crp": 0.1, "lactate": 9.008}, "/uL": {"lymphocytes": 1000.0}}
    checked = 0
    for measurement in extract(small_cohort.observations, panel).measurements:
        factor = factors.get(measurement.source_unit or "", {}).get(measurement.analyte)
        if factor is None:
            continue
        sent = observations[measurement.observation_id]["valueQuantity"]["value"]
        assert measurement.value == pytest.approx(sent / factor, rel=1e-6)
        checked += 1
    assert checked >= 20


def test_mapping_excludes_only_the_results_meant_to_be_unusable(
    small_cohort: Cohort, panel: Panel
) -> None:
    extraction = extract(small_cohort.observations, panel)
    reasons = Counter(e.reason for e in extraction.exclusions)
    expected = {
        ExclusionReason.ENTERED_IN_ERROR,
        ExclusionReason.UNIT_NOT_CONVERTIBLE,
        ExclusionReason.IMPRECISE_TIME,
    }
    assert set(reasons) <= expected
    assert reasons[ExclusionReason.ENTERED_IN_ERROR] == sum(
        o["status"] == "entered-in-error" for o in small_cohort.observations
    )
    usable = len(extraction.measurements)
    assert usable + len(extraction.exclusions) == len(small_cohort.observations)


def test_send_out_results_are_issued_days_after_collection(small_cohort: Cohort) -> None:
    for observation in small_cohort.observations:
        if _code(observation) != "98115-9" or "effectiveDateTime" not in observation:
            continue
        if len(observation["effectiveDateTime"]) == 10:
            continue
        collected = datetime.fromisoformat(observation["effectiveDateTime"])
        issued = datetime.fromisoformat(observation["issued"])
        assert 2 <= (issued - collected).total_seconds() / 86400 <= 10
