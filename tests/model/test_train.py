"""Training: eligibility, labels (reference or derived), threshold on validation, metadata."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from model.cohort import Cohort
from model.pipeline import class_coefficients
from model.train import age_band, eligible_rows, train_model, youden_threshold


def test_model_trained_on_reference_labels_records_its_decisions(small_model, small_cohort):
    meta = small_model.metadata
    assert meta["label_source"] == "reference"
    assert meta["class_names"] == ["hyperinflammatory-il6-ifng", "intermediate", "quiescent"]
    assert 0.0 < meta["threshold"] < 1.0
    assert meta["synthetic_training_data"] is True
    cohort = meta["training_cohort"]
    assert cohort["n_patients_in_cohort"] == len(small_cohort.outcomes)
    assert cohort["n_included"] + cohort["n_excluded_missing_required_markers"] == len(
        small_cohort.outcomes
    )
    assert meta["n_training"] + meta["n_validation"] == cohort["n_included"]
    # without vital signs and support only the panel's platelets and lactate can score: a few
    # children reach 2 from them, the others are anchored at their outcomes onset_time
    assert cohort["anchors"] == small_cohort.anchor_counts
    assert 0 < cohort["anchors"]["Phoenix onset"] < 0.1 * len(small_cohort.outcomes)


def test_internal_validation_separates_the_high_risk_class(small_model):
    assert small_model.metadata["internal_validation"]["auroc_high_risk_class"] > 0.8


@pytest.mark.slow
def test_unlabelled_cohort_trains_on_derived_endotypes(small_cohort):
    unlabelled = Cohort(
        outcomes=tuple(replace(row, reference_endotype=None) for row in small_cohort.outcomes),
        observations=small_cohort.observations,
        n_patient_resources=small_cohort.n_patient_resources,
        n_synthetic_patients=small_cohort.n_synthetic_patients,
    )
    model = train_model(unlabelled, model_id="d", version="0", description="d", progress=False)
    derivation = model.metadata["derivation"]
    assert model.metadata["label_source"] == "derived"
    assert derivation["n_clusters"] in {2, 3, 4, 5}
    rates = {c["endotype"]: c["complicated_course_rate"] for c in derivation["clusters"]}
    assert rates["hyperinflammatory-il6-ifng"] == max(rates.values())


def test_training_twice_gives_identical_coefficients(small_cohort, small_model):
    again = train_model(small_cohort, model_id="t", version="0", description="t", progress=False)
    high = small_model.high_risk_class
    assert np.array_equal(
        class_coefficients(again.estimator, high), class_coefficients(small_model.estimator, high)
    )
    assert again.threshold == small_model.threshold


def test_youden_threshold_separates_perfectly_ranked_scores():
    truth = np.array([False, False, True, True])
    assert youden_threshold(truth, np.array([0.1, 0.3, 0.6, 0.9])) == 0.6


def test_youden_threshold_needs_both_classes():
    with pytest.raises(ValueError, match="both"):
        youden_threshold(np.array([True, True]), np.array([0.2, 0.4]))


def test_patients_without_every_required_marker_are_not_eligible():
    analytes = ("il6", "ferritin", "crp", "cxcl9")
    features = np.array([[1.0, 2.0, 3.0, np.nan], [1.0, np.nan, 3.0, 4.0]])
    assert eligible_rows(features, analytes).tolist() == [True, False]


@pytest.mark.parametrize(
    ("months", "band"),
    [(0, "<1 y"), (11.9, "<1 y"), (12, "1-5 y"), (100, "6-12 y"), (200, "13-17 y")],
)
def test_age_band_boundaries(months, band):
    assert age_band(months) == band


def test_internal_validation_reports_the_high_risk_auroc_by_subgroup(small_model):
    by_subgroup = small_model.metadata["internal_validation"]["auroc_high_risk_class_by_subgroup"]
    assert {"organ dysfunction: sepsis", "organ dysfunction: non-sepsis"} <= set(by_subgroup)
    assert any(name.startswith("age band: ") for name in by_subgroup)
    assert (
        sum(v["n"] for k, v in by_subgroup.items() if k.startswith("sex: "))
        == (small_model.metadata["n_validation"])
    )
