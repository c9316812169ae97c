"""The toolkit anchors each child's window as the service does: the Phoenix onset from the cohort's
own resources, the outcomes file's onset_time only where there is none, and says which it used."""

from __future__ import annotations

import csv
import shutil
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from cds_service.cli import main
from fhir_mappings.panel import load_panel
from model.assessment import AnchorSource
from model.burden import alert_burden, render_burden
from model.cohort import Cohort, cohort_timelines, load_cohort
from model.evaluate import evaluate_model
from model.pipeline import load_model
from model.rules_scorer import load_rules_v2_scorer
from model.scorer import DEFAULT_MODEL_PATH
from tests.model.conftest import PHOENIX_COHORT_SIZE


@pytest.fixture(scope="module")
def phoenix_cohort(phoenix_cohort_dir: Path) -> Cohort:
    return load_cohort(phoenix_cohort_dir, phoenix_cohort_dir / "outcomes.csv")


def test_every_child_is_anchored_at_its_phoenix_onset(phoenix_cohort: Cohort) -> None:
    for row in phoenix_cohort.outcomes:
        anchor = phoenix_cohort.anchors[row.patient_id]
        assert anchor.source is AnchorSource.PHOENIX
        assert anchor.time == row.onset_time  # the generator put the onset there
        assert anchor.detail == "organ dysfunction (Phoenix score ≥ 2)"
    assert phoenix_cohort.anchor_counts == {
        "Phoenix onset": PHOENIX_COHORT_SIZE,
        "outcomes onset_time": 0,
    }


@pytest.mark.slow
def test_the_phoenix_onset_wins_over_a_different_onset_time_in_the_outcomes_file(
    phoenix_cohort_dir: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "cohort"
    shutil.copytree(phoenix_cohort_dir, copy)
    with (copy / "outcomes.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    recorded = datetime.fromisoformat(rows[0]["onset_time"])
    rows[0]["onset_time"] = (recorded + timedelta(hours=5)).isoformat()
    with (copy / "outcomes.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    cohort = load_cohort(copy, copy / "outcomes.csv")
    first = cohort.outcomes[0]
    timeline = cohort_timelines(replace(cohort, outcomes=(first,)), progress=False)[0]

    assert cohort.anchors[first.patient_id].time == recorded
    assert timeline.frame.anchor.time == recorded
    assert timeline.frame.now == recorded + timedelta(hours=48)


def test_a_child_without_phoenix_inputs_falls_back_to_the_outcomes_onset(
    phoenix_cohort: Cohort,
) -> None:
    first = phoenix_cohort.outcomes[0].patient_id
    panel_codes = {c.code for analyte in load_panel().analytes.values() for c in analyte.codes}
    labs_only = [  # the panel's results stay (platelets, lactate); the vital signs go
        o
        for o in phoenix_cohort.observations[first]
        if o["code"]["coding"][0]["code"] in panel_codes
    ]
    stripped = replace(
        phoenix_cohort,
        observations={**phoenix_cohort.observations, first: labs_only},
        phoenix={**phoenix_cohort.phoenix, first: []},
    )

    anchor = stripped.anchors[first]

    assert (anchor.source, anchor.detail) == (
        AnchorSource.CONDITION,
        "onset_time of the outcomes file",
    )
    assert stripped.anchor_counts == {
        "Phoenix onset": PHOENIX_COHORT_SIZE - 1,
        "outcomes onset_time": 1,
    }


def test_evaluation_and_burden_say_which_anchor_they_used(phoenix_cohort: Cohort) -> None:
    report = evaluate_model(
        load_model(DEFAULT_MODEL_PATH), phoenix_cohort, n_bootstrap=20, progress=False
    )
    burden = alert_burden(
        phoenix_cohort, {"rules-v2": load_rules_v2_scorer()}, load_panel(), at_hours=(24,)
    )

    expected = {"Phoenix onset": PHOENIX_COHORT_SIZE, "outcomes onset_time": 0}
    assert report["cohort"]["anchors"] == expected
    assert render_burden(burden)[1] == f"Anchored at: Phoenix onset {PHOENIX_COHORT_SIZE}, " + (
        "outcomes onset_time 0"
    )


@pytest.mark.slow
def test_the_evaluate_command_prints_the_anchors(
    phoenix_cohort_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(
        ["evaluate", "--cohort", str(phoenix_cohort_dir), "--outcomes",
         str(phoenix_cohort_dir / "outcomes.csv"), "--model", str(DEFAULT_MODEL_PATH),
         "--report", str(tmp_path / "report.html"), "--bootstrap", "20", "--quiet"]
    )  # fmt: skip

    assert status == 0
    printed = capsys.readouterr().out
    assert f"anchored at: Phoenix onset {PHOENIX_COHORT_SIZE}, outcomes onset_time 0" in printed
    assert "Phoenix onset" in (tmp_path / "report.html").read_text(encoding="utf-8")
