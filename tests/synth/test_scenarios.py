"""Demo scenario children: their ward and anchor, their values relative to the anchor, and what
the live path (care context, mapping, timeline, rules v2) makes of them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from fhir_mappings.encounters import encounter_facts, location_facts, order_facts
from fhir_mappings.observations import extract
from fhir_mappings.panel import Panel
from model.assessment import Pathway, TimeFrame, Timeline
from model.context import AnchorSource, ContextSettings, GateOutcome, assess_context
from model.phoenix_context import PhoenixContext, PhoenixSettings, assess_phoenix
from model.rules_scorer import load_rules_v2_scorer
from model.states import PersistenceState
from model.synth import SCENARIO_KINDS, SYNTHETIC_TAGS, scenario_onset, scenario_patient
from model.synth.scenarios import SCENARIOS
from model.timeline import build_timeline

NOW = datetime(2026, 3, 10, 14, 30, tzinfo=timezone(timedelta(hours=-4)))
WINDOW = timedelta(hours=48)
EXPECTED = {  # kind -> (gate, pathway, persistence)
    "hyperinflammatory": (GateOutcome.IN_PICU, Pathway.BIOMARKER_GUIDED, "persistent"),
    "quiescent": (GateOutcome.IN_PICU, Pathway.STANDARD, "never-high"),
    "missing-panel": (GateOutcome.IN_PICU, Pathway.INSUFFICIENT_DATA, "unknown"),
    "resolving": (GateOutcome.IN_PICU, Pathway.STANDARD, "resolving"),
    "general-ward": (GateOutcome.NOT_IN_PICU, None, None),
}


def _of_type(resources: list[dict[str, Any]], resource_type: str) -> list[dict[str, Any]]:
    return [r for r in resources if r["resourceType"] == resource_type]


def _phoenix(resources: list[dict[str, Any]], patient_id: str, now: datetime) -> PhoenixContext:
    """The Phoenix course of the child's encounter, as the hook computes it."""
    (encounter,) = encounter_facts(_of_type(resources, "Encounter"), patient_id=patient_id).facts
    return assess_phoenix(
        patient=resources[0],
        encounter=encounter,
        resources=resources,
        now=now,
        settings=PhoenixSettings(),
        patient_id=patient_id,
    )


def _context(kind: str, patient_id: str, now: datetime = NOW):
    resources = scenario_patient(kind, patient_id, now=now)
    return resources, assess_context(
        encounters=encounter_facts(_of_type(resources, "Encounter"), patient_id=patient_id).facts,
        locations=location_facts(_of_type(resources, "Location")).facts,
        conditions=(),
        orders=(),
        context_encounter_id=None,
        now=now,
        settings=ContextSettings(),
        window=WINDOW,
        phoenix_onset=_phoenix(resources, patient_id, now).onset_time,
    )


def _timeline(kind: str, panel: Panel, now: datetime = NOW) -> Timeline:
    patient_id = f"demo-{kind}"
    resources, care = _context(kind, patient_id, now)
    extraction = extract(_of_type(resources, "Observation"), panel, patient_id=patient_id)
    assert not extraction.exclusions
    return build_timeline(extraction, TimeFrame(now, care.anchor, WINDOW))


def test_there_are_five_children_one_of_them_on_a_general_ward() -> None:
    assert SCENARIO_KINDS == (
        "hyperinflammatory",
        "quiescent",
        "missing-panel",
        "resolving",
        "general-ward",
    )


@pytest.mark.parametrize("kind", SCENARIO_KINDS)
def test_the_care_context_finds_the_ward_and_anchors_at_the_phoenix_onset(kind: str) -> None:
    _, care = _context(kind, "demo-1")
    gate = EXPECTED[kind][0]
    assert care.gate is gate
    if gate is GateOutcome.IN_PICU:
        onset = scenario_onset(kind, NOW)
        admitted = NOW - timedelta(hours=SCENARIOS[kind].admitted_hours_ago)
        assert (care.anchor.source, care.anchor.time) == (AnchorSource.PHOENIX, onset)
        assert timedelta(0) < onset - admitted + timedelta(hours=1) <= timedelta(hours=4)


@pytest.mark.parametrize("kind", SCENARIO_KINDS)
def test_each_child_carries_vital_signs_and_only_the_picu_children_reach_a_score_of_2(
    kind: str,
) -> None:
    resources = scenario_patient(kind, "demo-5", now=NOW)
    phoenix = _phoenix(resources, "demo-5", NOW)
    codes = {o["code"]["coding"][0]["code"] for o in _of_type(resources, "Observation")}
    assert {"59408-5", "85354-9", "9269-2"} <= codes  # SpO2, blood pressure, GCS
    assert phoenix.course is not None and phoenix.excluded == {}
    if kind == "general-ward":
        assert phoenix.onset is None
        assert max(point.total for point in phoenix.course.points) < 2
    else:
        assert phoenix.onset_time == scenario_onset(kind, NOW)


def test_the_hyperinflammatory_child_is_still_ventilated_on_two_infusions() -> None:
    resources = scenario_patient("hyperinflammatory", "demo-6", now=NOW)
    latest = _phoenix(resources, "demo-6", NOW).course.latest
    assert latest is not None and latest.subscores["cardiovascular"] == 2
    assert latest.subscores["respiratory"] >= 1
    support = ("Procedure", "MedicationAdministration")
    statuses = {(r["resourceType"], r["status"]) for r in resources if r["resourceType"] in support}
    assert statuses == {("Procedure", "in-progress"), ("MedicationAdministration", "in-progress")}


@pytest.mark.parametrize("kind", [k for k in SCENARIO_KINDS if k != "general-ward"])
def test_rules_v2_give_each_picu_child_its_pathway_and_persistence(kind: str, panel: Panel) -> None:
    assessment = load_rules_v2_scorer().assess(_timeline(kind, panel))
    _, pathway, persistence = EXPECTED[kind]
    assert (assessment.pathway, assessment.persistence.state.value) == (pathway, persistence)


def test_the_hyperinflammatory_child_is_high_early_and_still_high(panel: Panel) -> None:
    assessment = load_rules_v2_scorer().assess(_timeline("hyperinflammatory", panel))
    (first,) = assessment.persistence.earlier_high
    assert first.phase.value == "early"
    assert assessment.persistence.state is PersistenceState.PERSISTENT


def test_the_resolving_child_was_high_three_days_ago_and_is_normal_now(panel: Panel) -> None:
    timeline = _timeline("resolving", panel)
    il6, ferritin = timeline.series["il6"], timeline.series["ferritin"]
    assert (il6.first.value, ferritin.first.value) == (640.0, 5200.0)
    assert il6.first.time == NOW - timedelta(hours=72)
    assert il6.latest.value <= 5.0 and ferritin.latest.value < 500.0


def test_the_missing_panel_child_has_crp_and_platelets_and_a_pending_cxcl9_order(
    panel: Panel,
) -> None:
    resources = scenario_patient("missing-panel", "demo-7", now=NOW)
    assert set(_timeline("missing-panel", panel).series) == {"crp", "platelets"}
    orders = order_facts(_of_type(resources, "ServiceRequest"), panel, patient_id="demo-7").facts
    assert [(order.analyte, order.status, order.intent) for order in orders] == [
        ("cxcl9", "active", "order")
    ]


@pytest.mark.parametrize("kind", SCENARIO_KINDS)
def test_scenario_child_is_synthetic_with_an_open_encounter_on_a_bed_in_its_ward(kind: str) -> None:
    resources = scenario_patient(kind, "demo-1", now=NOW)
    patient, encounter, ward, bed = resources[:4]
    age_years = (NOW.date() - date.fromisoformat(patient["birthDate"])).days / 365.25
    assert 2 <= age_years <= 12
    assert patient["name"][0]["family"] == "SYNTHETIC"
    assert encounter["status"] == "in-progress"
    assert encounter["location"][0]["location"]["reference"] == f"Location/{bed['id']}"
    assert bed["partOf"]["reference"] == f"Location/{ward['id']}"
    assert ward["type"][0]["coding"][0]["code"] == SCENARIOS[kind].ward
    assert all(r["meta"]["tag"] == list(SYNTHETIC_TAGS) for r in resources)
    observations = _of_type(resources, "Observation")
    assert {o["encounter"]["reference"] for o in observations} == {f"Encounter/{encounter['id']}"}


@pytest.mark.parametrize("kind", SCENARIO_KINDS)
def test_scenario_resources_are_valid_fhir_r4(kind: str) -> None:
    for resource in scenario_patient(kind, "demo-2", now=NOW):
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_scenario_times_follow_now_and_its_offset(panel: Panel) -> None:
    later = datetime(2027, 1, 5, 8, 0, tzinfo=UTC)
    resources = scenario_patient("quiescent", "demo-3", now=later)
    times = [o["effectiveDateTime"] for o in _of_type(resources, "Observation")]
    assert all(t.endswith("+00:00") for t in times)
    assert max(datetime.fromisoformat(t) for t in times) < later
    assert _timeline("quiescent", panel, later).series["il6"].latest.time < later


def test_unknown_scenario_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        scenario_patient("septic", "demo-4", now=NOW)


def test_scenario_needs_a_timezone_aware_now() -> None:
    with pytest.raises(ValueError, match="timezone"):
        scenario_patient("quiescent", "demo-5", now=datetime(2026, 1, 1, 12, 0))
