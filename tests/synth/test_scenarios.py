"""Demo scenario patients: the intended values, read back through the live mapping path."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient

from fhir_mappings.observations import extract
from fhir_mappings.panel import Panel, load_panel
from model.assessment import Timeline
from model.synth import SCENARIO_KINDS, SYNTHETIC_TAGS, scenario_patient
from model.timeline import build_recent_timeline

NOW = datetime(2026, 3, 10, 14, 30, tzinfo=timezone(timedelta(hours=-4)))
WINDOW = timedelta(hours=48)
TIER_ONE = set(load_panel().of_tier(1))
SEND_OUTS = set(load_panel().of_tier(2))


def _timeline(kind: str, panel: Panel, now: datetime = NOW) -> Timeline:
    resources = scenario_patient(kind, f"demo-{kind}", now=now)
    observations = [r for r in resources if r["resourceType"] == "Observation"]
    extraction = extract(observations, panel, patient_id=f"demo-{kind}")
    assert not extraction.exclusions
    return build_recent_timeline(extraction, now=now, window=WINDOW)


def _latest(timeline: Timeline, analyte: str) -> float:
    return timeline.series[analyte].latest.value


def test_hyperinflammatory_scenario_has_high_markers_in_the_last_48_hours(panel: Panel) -> None:
    timeline = _timeline("hyperinflammatory", panel)
    assert _latest(timeline, "il6") > 100.0
    assert _latest(timeline, "ferritin") >= 2000.0
    assert _latest(timeline, "crp") >= 50.0
    assert _latest(timeline, "cxcl9") > 647.0
    assert all(s.baseline.time >= NOW - WINDOW for s in timeline.series.values())


def test_quiescent_scenario_has_every_tier_one_and_ifng_axis_marker_normal(panel: Panel) -> None:
    timeline = _timeline("quiescent", panel)
    assert set(timeline.series) >= TIER_ONE | SEND_OUTS
    upper = {"il6": 5.0, "ifng": 5.0, "il10": 18.0, "sil2r": 1033.0, "cxcl9": 647.0}
    upper |= {"ferritin": 300.0, "crp": 10.0, "lactate": 2.2}
    for analyte, limit in upper.items():
        assert all(m.value <= limit for m in timeline.series[analyte].values), analyte
    assert all(m.value >= 1.0 for m in timeline.series["lymphocytes"].values)
    assert all(m.value >= 150.0 for m in timeline.series["platelets"].values)


def test_missing_panel_scenario_has_only_crp_and_platelets(panel: Panel) -> None:
    timeline = _timeline("missing-panel", panel)
    assert set(timeline.series) == {"crp", "platelets"}
    assert not timeline.older


def test_resolving_scenario_falls_to_normal_inside_the_window(panel: Panel) -> None:
    timeline = _timeline("resolving", panel)
    assert _latest(timeline, "il6") <= 5.0
    assert _latest(timeline, "ferritin") < 500.0
    assert _latest(timeline, "crp") < 10.0
    assert _latest(timeline, "cxcl9") <= 647.0
    assert all(m.value < 500.0 for m in timeline.series["ferritin"].values)


def test_resolving_scenario_was_hyperinflammatory_three_days_ago(panel: Panel) -> None:
    long_view = _timeline_over("resolving", panel, timedelta(hours=96))
    ferritin = [m.value for m in long_view.series["ferritin"].values]
    assert ferritin[0] >= 2000.0
    assert ferritin == sorted(ferritin, reverse=True)
    assert long_view.series["ferritin"].baseline.time == NOW - timedelta(hours=72)


def _timeline_over(kind: str, panel: Panel, window: timedelta) -> Timeline:
    resources = scenario_patient(kind, f"demo-{kind}", now=NOW)
    observations = [r for r in resources if r["resourceType"] == "Observation"]
    return build_recent_timeline(extract(observations, panel), now=NOW, window=window)


@pytest.mark.parametrize("kind", SCENARIO_KINDS)
def test_scenario_patient_is_a_synthetic_child_in_an_open_picu_encounter(kind: str) -> None:
    resources = scenario_patient(kind, "demo-1", now=NOW)
    patient, encounter = resources[0], resources[1]
    born = date.fromisoformat(patient["birthDate"])
    age_years = (NOW.date() - born).days / 365.25
    assert 2 <= age_years <= 12
    assert patient["name"][0]["family"] == "SYNTHETIC"
    assert encounter["status"] == "in-progress"
    assert encounter["serviceType"]["coding"][0]["code"] == "PEDICU"
    assert all(r["meta"]["tag"] == list(SYNTHETIC_TAGS) for r in resources)
    observations = resources[2:]
    assert {r["resourceType"] for r in observations} == {"Observation"}
    assert {o["encounter"]["reference"] for o in observations} == {f"Encounter/{encounter['id']}"}


@pytest.mark.parametrize("kind", SCENARIO_KINDS)
def test_scenario_resources_are_valid_fhir_r4(kind: str) -> None:
    patient, encounter, *observations = scenario_patient(kind, "demo-2", now=NOW)
    Patient.model_validate(patient)
    Encounter.model_validate(encounter)
    for observation in observations:
        Observation.model_validate(observation)


def test_scenario_times_follow_now_and_its_offset(panel: Panel) -> None:
    later = datetime(2027, 1, 5, 8, 0, tzinfo=UTC)
    resources = scenario_patient("quiescent", "demo-3", now=later)
    times = [o["effectiveDateTime"] for o in resources[2:]]
    assert all(t.endswith("+00:00") for t in times)
    assert max(datetime.fromisoformat(t) for t in times) < later
    assert set(_timeline("quiescent", panel, later).series) >= TIER_ONE | SEND_OUTS


def test_unknown_scenario_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        scenario_patient("septic", "demo-4", now=NOW)


def test_scenario_needs_a_timezone_aware_now() -> None:
    with pytest.raises(ValueError, match="timezone"):
        scenario_patient("quiescent", "demo-5", now=datetime(2026, 1, 1, 12, 0))
