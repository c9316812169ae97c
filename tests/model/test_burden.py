"""Alert burden: children counted per assessment time, scorer, pathway and persistence state."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from cds_service.cli import main
from fhir_mappings.panel import load_panel
from model.burden import alert_burden, burden_json, encounter_ends, render_burden
from model.cohort import Cohort, PatientOutcome
from model.rules import load_rule_scorer
from model.rules_scorer import load_rules_v2_scorer
from model.scorer import load_model_scorer
from tests.cds_service.fhir_data import observation

ONSET = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


def outcome(patient_id: str) -> PatientOutcome:
    return PatientOutcome(patient_id, ONSET, "female", 60, True, False, False, None)


def draw(patient_id: str, hours_after_onset: float, **values: float) -> list[dict]:
    time = ONSET + timedelta(hours=hours_after_onset)
    return [
        observation(patient_id, analyte, value, time, index=int(hours_after_onset))
        for analyte, value in values.items()
    ]


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    """Three children: extreme and persisting, quiet, and one who leaves the PICU at 30 h."""
    high = {"il6": 1500, "ifng": 200, "cxcl9": 30000, "ferritin": 3000, "crp": 90}
    quiet = {"il6": 3, "ifng": 2, "cxcl9": 200, "ferritin": 80, "crp": 3}
    observations = {
        "high": [*draw("high", 6, **high), *draw("high", 40, **high)],
        "quiet": [*draw("quiet", 6, **quiet), *draw("quiet", 40, **quiet)],
        "left": draw("left", 6, **quiet),
    }
    outcomes = tuple(outcome(pid) for pid in observations)
    return Cohort(outcomes, observations, 3, 3)


@pytest.fixture(scope="module")
def scorers():
    return {
        "rules-v2": load_rules_v2_scorer(),
        "rules-v1": load_rule_scorer(),
        "model": load_model_scorer(),
    }


def discharge(patient_id: str, hours_after_onset: float) -> dict:
    end = (ONSET + timedelta(hours=hours_after_onset)).isoformat()
    return {
        "resourceType": "Encounter",
        "subject": {"reference": f"Patient/{patient_id}"},
        "period": {"end": end},
    }


def test_each_child_is_counted_at_each_time_while_still_in_the_picu(cohort, scorers):
    ends = encounter_ends([discharge("left", 30)])
    burden = alert_burden(cohort, scorers, load_panel(), at_hours=(24, 48), ends=ends)
    assert burden.assessed == {24: 3, 48: 2}
    figures = burden_json(burden)
    at_48 = figures["times"][1]["scorers"]["rules-v2"]
    assert at_48["pathways"] == {
        "biomarker-guided": 0.5,
        "standard": 0.5,
        "insufficient-data": 0.0,
    }
    assert at_48["persistence"]["persistent"] == 0.5
    assert at_48["persistence"]["never-high"] == 0.5
    assert figures["times"][1]["scorers"]["rules-v1"]["persistence"] is None
    assert figures["ever_biomarker_guided"]["rules-v2"] == round(1 / 3, 4)


def test_the_text_report_has_one_table_per_time_and_the_ever_flagged_shares(cohort, scorers):
    burden = alert_burden(cohort, scorers, load_panel(), at_hours=(24,))
    lines = render_burden(burden)
    assert lines[0] == "Alert burden over 3 children (shares of those assessed)"
    assert "At onset + 24 h (3 children still in the PICU):" in lines
    row = next(line for line in lines if line.strip().startswith("rules-v2"))
    assert row.split()[1:4] == ["33.3%", "66.7%", "0.0%"]  # high; quiet and "left" standard


@pytest.mark.slow
def test_the_burden_command_reads_a_cohort_and_writes_json(small_cohort_dir, tmp_path, capsys):
    out = tmp_path / "burden.json"
    code = main(
        [
            "burden",
            "--cohort",
            str(small_cohort_dir),
            "--outcomes",
            str(small_cohort_dir / "outcomes.csv"),
            "--at-hours",
            "48",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "At onset + 48 h" in printed and "rules-v1" in printed
    figures = json.loads(out.read_text())
    shares = figures["times"][0]["scorers"]["rules-v2"]["pathways"]
    assert sum(shares.values()) == pytest.approx(1.0)


def test_the_burden_command_refuses_bad_hours(capsys):
    with pytest.raises(SystemExit):
        main(["burden", "--cohort", ".", "--outcomes", "x.csv", "--at-hours", "0,-3"])
