"""The cohort's Phoenix inputs: the service finds each child's onset exactly where the generator
put it, every input kind occurs, with missingness, and the laboratory results stay as they were."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

import pytest

from fhir_mappings.encounters import encounter_facts
from fhir_mappings.phoenix_inputs import extract_phoenix, load_phoenix_catalog
from model.phoenix_context import PhoenixContext, PhoenixSettings, assess_phoenix
from model.synth import Cohort, generate_cohort
from model.synth.phoenix import map_band


def by_patient(cohort: Cohort) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for resource in [*cohort.observations, *cohort.phoenix]:
        owner = (resource.get("subject") or resource["patient"])["reference"]
        grouped[owner.removeprefix("Patient/")].append(resource)
    return grouped


@pytest.fixture(scope="module")
def contexts(small_cohort: Cohort) -> dict[str, PhoenixContext]:
    """Each child's Phoenix context as the service computes it, over the whole stay."""
    resources = by_patient(small_cohort)
    found = {}
    for patient, encounter in zip(small_cohort.patients, small_cohort.encounters, strict=True):
        (facts,) = encounter_facts([encounter]).facts
        found[patient["id"]] = assess_phoenix(
            patient=patient,
            encounter=facts,
            resources=resources[patient["id"]],
            now=facts.end,
            settings=PhoenixSettings(course_days=30),
            patient_id=patient["id"],
        )
    return found


def test_the_service_finds_each_childs_onset_where_the_generator_put_it(
    small_cohort: Cohort, contexts: dict[str, PhoenixContext]
) -> None:
    for row in small_cohort.outcomes:
        assert contexts[row.patient_id].onset_time == datetime.fromisoformat(row.onset_time)


def test_before_the_onset_no_hour_scores_2_and_at_it_one_or_two_organs_fail(
    small_cohort: Cohort, contexts: dict[str, PhoenixContext]
) -> None:
    failing = Counter()
    for row in small_cohort.outcomes:
        context = contexts[row.patient_id]
        assert context.course is not None and context.onset is not None
        before = [p for p in context.course.points if p.time < context.onset.time]
        assert before and max(p.total for p in before) <= 1, row.patient_id
        organs = context.onset.subscores
        failing[(organs["respiratory"] >= 2, organs["cardiovascular"] >= 2)] += 1
    assert failing[(True, False)] and failing[(False, True)] and failing[(True, True)]
    assert failing[(False, False)] == 0, "each onset is one organ failing, or both"


def test_every_input_kind_occurs_in_its_units_and_codes(small_cohort: Cohort) -> None:
    readings = extract_phoenix(small_cohort.phoenix, load_phoenix_catalog())
    inputs = Counter(reading.input for reading in readings.readings)
    expected = {
        "spo2", "fio2", "pao2", "sbp_cuff", "dbp_cuff", "sbp_arterial", "dbp_arterial",
        "map_arterial", "gcs", "pupil_right", "pupil_left", "inr", "fibrinogen", "d_dimer",
        "imv", "other_respiratory_support", "vasoactive",
    }  # fmt: skip
    assert expected <= set(inputs)
    assert readings.exclusions == ()
    units = {(r.input, r.source_unit) for r in readings.readings if r.source_unit}
    assert {("fibrinogen", "g/L"), ("d_dimer", "ug/L"), ("inr", "{INR}")} <= units
    fio2_sent = {r.source_value for r in readings.readings if r.input == "fio2"}
    assert any(value <= 1 for value in fio2_sent) and any(value > 1 for value in fio2_sent)
    support = {r.code for r in readings.readings if r.input == "other_respiratory_support"}
    assert {"371907003", "426854004"} <= support, "low-flow Procedure and high-flow Device"
    agents = {r.agent for r in readings.readings if r.input == "vasoactive"}
    assert len(agents) >= 3


def test_inputs_are_missing_for_some_children(small_cohort: Cohort) -> None:
    inputs: dict[str, set[str]] = defaultdict(set)
    for patient, resources in by_patient(small_cohort).items():
        for reading in extract_phoenix(resources, load_phoenix_catalog()).readings:
            inputs[patient].add(reading.input)
    children = len(small_cohort.patients)
    for optional in ("pupil_right", "inr", "d_dimer", "pao2"):
        having = sum(optional in found for found in inputs.values())
        assert 0 < having < children, optional
    assert all({"spo2", "gcs"} <= found for found in inputs.values())


def test_the_phoenix_inputs_leave_the_laboratory_results_as_they_were() -> None:
    with_inputs, without = generate_cohort(15, seed=4), generate_cohort(15, seed=4, phoenix=False)
    assert with_inputs.observations == without.observations
    assert with_inputs.outcomes == without.outcomes and without.phoenix == ()
    assert with_inputs.phoenix


def test_the_map_bands_come_from_the_package() -> None:
    # the rubric: for 144-216 months, 1 point for MAP 38 to < 52 and 2 points below 38
    assert map_band(200) == (38, 52)
    assert map_band(6) == (25, 39)
