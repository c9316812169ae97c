"""Evaluation: metric functions on hand-computed examples, the report's content, and the CLIs."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from scipy.special import expit, logit

from model import evaluate_cli, train_cli
from model.evaluate import OUTCOMES, evaluate_model
from model.metrics import (
    auprc,
    auroc,
    balanced_accuracy,
    bootstrap_indices,
    brier,
    calibration_curve,
    calibration_intercept,
    calibration_slope,
    cohen_kappa,
    net_benefit,
    npv,
    ppv,
    sensitivity,
    specificity,
    with_interval,
)
from model.pipeline import load_model
from model.report import render_report

pytestmark = pytest.mark.slow  # a model evaluated on a synthetic cohort


@pytest.fixture(scope="module")
def scores():
    rng = np.random.default_rng(4)
    truth = rng.random(400) < 0.3
    score = np.round(np.clip(rng.normal(0.3 + 0.3 * truth, 0.15), 0.01, 0.99), 2)
    return truth, score


def test_auroc_counts_a_tied_pair_as_half():
    truth = np.array([False, True, False, True])
    score = np.array([0.2, 0.2, 0.1, 0.9])
    # Positive pairs: 0.2 vs 0.2 tie (0.5), 0.2 vs 0.1 (1), 0.9 vs both (2): 3.5 of 4.
    assert auroc(truth, score) == pytest.approx(3.5 / 4)


def test_auroc_of_a_reversed_ranking_is_zero():
    truth = np.array([True, True, False, False])
    assert auroc(truth, np.array([0.1, 0.2, 0.3, 0.4])) == pytest.approx(0.0)


def test_auprc_steps_precision_over_recall_with_tied_scores():
    truth = np.array([True, False, True])
    score = np.array([0.9, 0.5, 0.5])
    # Recall 0.5 at precision 1, then recall 1 at precision 2/3 (the tie is one threshold).
    assert auprc(truth, score) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_auprc_is_one_when_every_patient_has_the_event():
    assert auprc(np.ones(4, dtype=bool), np.array([0.1, 0.4, 0.2, 0.9])) == pytest.approx(1.0)


def test_brier_is_the_mean_squared_error_and_defined_for_one_class():
    assert brier(np.array([True, False]), np.array([0.8, 0.4])) == pytest.approx(0.1)
    assert brier(np.zeros(2, dtype=bool), np.array([0.2, 0.4])) == pytest.approx(0.1)


@pytest.mark.filterwarnings("error")
def test_balanced_accuracy_averages_recall_over_reference_classes_only():
    truth = np.array(["a", "a", "a", "b", "b"])
    assert balanced_accuracy(truth, np.array(["a", "a", "b", "b", "b"])) == pytest.approx(
        (2 / 3 + 1) / 2
    )
    # A predicted class the reference never uses adds no recall term and no warning.
    assert balanced_accuracy(truth, np.array(["a", "a", "c", "b", "c"])) == pytest.approx(
        (2 / 3 + 1 / 2) / 2
    )


def test_cohen_kappa_on_a_hand_computed_table():
    first = np.array(["a", "a", "b", "b"], dtype=object)
    second = np.array(["a", "b", "b", "b"], dtype=object)
    # Observed 3/4; chance 0.5 * 0.25 + 0.5 * 0.75 = 0.5; kappa (0.75 - 0.5) / 0.5.
    assert cohen_kappa(first, second) == pytest.approx(0.5)
    assert cohen_kappa(first, first) == pytest.approx(1.0)


@pytest.mark.filterwarnings("error")
def test_cohen_kappa_is_undefined_when_both_labellings_are_one_class():
    same = np.array(["a"] * 5, dtype=object)
    with pytest.raises(ValueError):
        cohen_kappa(same, same)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize(
    "metric", [auroc, calibration_slope, calibration_intercept], ids=lambda m: m.__name__
)
def test_metrics_needing_both_outcomes_refuse_a_one_class_sample(metric):
    probability = np.linspace(0.1, 0.9, 6)
    for truth in (np.zeros(6, dtype=bool), np.ones(6, dtype=bool)):
        with pytest.raises(ValueError):
            metric(truth, probability)


def test_auprc_refuses_a_sample_without_events():
    with pytest.raises(ValueError):
        auprc(np.zeros(6, dtype=bool), np.linspace(0.1, 0.9, 6))


@pytest.fixture(scope="module")
def calibrated():
    rng = np.random.default_rng(9)
    probability = rng.uniform(0.05, 0.95, 20000)
    return rng.random(20000) < probability, probability


def test_perfectly_calibrated_probabilities_have_slope_one_intercept_zero(calibrated):
    truth, probability = calibrated
    assert calibration_slope(truth, probability) == pytest.approx(1.0, abs=0.08)
    assert calibration_intercept(truth, probability) == pytest.approx(0.0, abs=0.05)


def test_overconfident_probabilities_have_slope_below_one(calibrated):
    truth, probability = calibrated
    sharpened = expit(3 * logit(probability))
    assert calibration_slope(truth, sharpened) == pytest.approx(1 / 3, abs=0.04)


def test_underconfident_probabilities_have_slope_above_one(calibrated):
    truth, probability = calibrated
    softened = expit(logit(probability) / 2)
    assert calibration_slope(truth, softened) == pytest.approx(2.0, abs=0.15)


def test_probabilities_shifted_up_on_the_logit_scale_have_a_negative_intercept(calibrated):
    truth, probability = calibrated
    shifted = expit(logit(probability) + 1.0)
    assert calibration_intercept(truth, shifted) == pytest.approx(-1.0, abs=0.06)


@pytest.mark.filterwarnings("error")
def test_calibration_slope_is_undefined_when_probability_separates_the_outcome():
    probability = np.linspace(0.05, 0.95, 10)
    with pytest.raises(ValueError):
        calibration_slope(probability > 0.5, probability)
    with pytest.raises(ValueError):
        calibration_slope(probability < 0.5, probability)


def test_calibration_curve_keeps_the_count_of_each_quantile_bin():
    probability = np.repeat([0.1, 0.3, 0.5, 0.7, 0.9], 4)
    truth = np.array([True, False, False, False] * 5)
    points = calibration_curve(truth, probability)
    assert [p["predicted"] for p in points] == [0.1, 0.3, 0.5, 0.7, 0.9]
    assert [p["observed"] for p in points] == [0.25] * 5
    assert [p["n"] for p in points] == [4] * 5


def test_threshold_metrics_on_a_known_table():
    truth = np.array([True, True, True, False, False, False, False, False])
    flagged = np.array([True, True, False, True, False, False, False, False])
    assert sensitivity(truth, flagged) == pytest.approx(2 / 3)
    assert specificity(truth, flagged) == pytest.approx(4 / 5)
    assert ppv(truth, flagged) == pytest.approx(2 / 3)
    assert npv(truth, flagged) == pytest.approx(4 / 5)


def test_net_benefit_of_treating_everyone_follows_the_formula():
    truth = np.array([True] * 3 + [False] * 7)
    assert net_benefit(truth, np.ones(10, dtype=bool), 0.2) == pytest.approx(0.3 - 0.7 * 0.25)


@pytest.mark.parametrize(
    "metric",
    [auroc, auprc, brier, calibration_slope, calibration_intercept],
    ids=lambda m: m.__name__,
)
def test_bootstrap_interval_brackets_the_estimate(scores, metric):
    truth, score = scores
    result = with_interval(metric, truth, score, bootstrap_indices(len(truth), 100, 0))
    low, high = result["ci95"]
    assert low < result["estimate"] < high


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize(
    "metric", [auroc, auprc, calibration_slope, calibration_intercept], ids=lambda m: m.__name__
)
def test_interval_is_absent_when_metric_is_undefined(metric):
    truth = np.zeros(50, dtype=bool)
    result = with_interval(metric, truth, np.linspace(0, 1, 50), bootstrap_indices(50, 30, 0))
    assert result == {"estimate": None, "ci95": None}


@pytest.mark.filterwarnings("error")
def test_interval_is_absent_when_most_resamples_hold_one_class():
    truth = np.array([True, False, False, True, False, True, False])
    score = np.array([0.9, 0.8, 0.1, 0.3, 0.5, 0.45, 0.4])
    negatives_only = np.tile([1, 2, 4, 6, 1, 2, 4], (30, 1))
    boot = np.vstack([negatives_only, np.tile(np.arange(7), (10, 1))])
    result = with_interval(auroc, truth, score, boot)
    # Pairs won: 0.9 beats 4 negatives, 0.3 beats 1, 0.45 beats 2: 7 of 12, rounded.
    assert result == {"estimate": 0.5833, "ci95": None}


def test_interval_ignores_single_class_resamples_of_a_small_sample():
    truth = np.array([True, True, False, False, False, True, False, False])
    score = np.array([0.8, 0.6, 0.3, 0.5, 0.2, 0.4, 0.7, 0.1])
    result = with_interval(auroc, truth, score, bootstrap_indices(8, 200, 3))
    assert result["estimate"] == pytest.approx(auroc(truth, score), abs=1e-4)
    low, high = result["ci95"]
    assert 0.0 <= low <= result["estimate"] <= high <= 1.0


@pytest.fixture(scope="module")
def report(small_cohort, tmp_path_factory):
    from model.scorer import DEFAULT_MODEL_PATH

    return evaluate_model(
        load_model(DEFAULT_MODEL_PATH), small_cohort, n_bootstrap=40, progress=False
    )


def test_report_covers_every_outcome_subgroup_and_the_threshold(report, small_cohort):
    assert set(report["prognostic"]) == set(OUTCOMES)
    factors = {row["factor"] for row in report["subgroups"]}
    assert factors == {"age band", "sex", "organ dysfunction"}
    assert {
        row["level"] for row in report["subgroups"] if row["factor"] == "organ dysfunction"
    } == {
        "sepsis",
        "non-sepsis",
    }
    assert set(report["threshold"]["picu_death"]) == {"sensitivity", "specificity", "ppv", "npv"}
    counted = sum(row["n"] for row in report["outcomes_by_endotype"])
    assert counted == len(small_cohort.outcomes)
    assert report["cohort"]["n_scored"] + report["cohort"]["n_insufficient_data"] == counted


def test_report_agreement_uses_reference_labels_when_present(report):
    agreement = report["agreement"]
    assert agreement["source"] == "reference endotypes"
    assert sum(map(sum, agreement["confusion_matrix"])) == agreement["n"]


def test_report_kappa_and_balanced_accuracy_follow_from_its_confusion_matrix(report):
    agreement = report["agreement"]
    table = np.array(agreement["confusion_matrix"], dtype=float)
    n = table.sum()
    chance = np.sum(table.sum(axis=0) * table.sum(axis=1)) / n**2
    kappa = (np.trace(table) / n - chance) / (1 - chance)
    assert agreement["cohen_kappa"]["estimate"] == pytest.approx(kappa, abs=1e-4)
    reference_rows = table.sum(axis=1) > 0
    recalls = np.diag(table)[reference_rows] / table.sum(axis=1)[reference_rows]
    assert agreement["balanced_accuracy"] == pytest.approx(recalls.mean(), abs=1e-4)
    low, high = agreement["cohen_kappa"]["ci95"]
    assert low <= agreement["cohen_kappa"]["estimate"] <= high


def test_html_report_has_figures_and_synthetic_warning(report):
    html = render_report(report)
    assert html.count("<svg") == 4
    assert "SYNTHETIC" in html
    assert "Decision curve" in html


def _run(module, argv):
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.run(parser.parse_args(argv))


@pytest.mark.slow
def test_train_then_evaluate_from_the_command_line(small_cohort_dir, tmp_path, capsys):
    model_path, report_path = tmp_path / "site.skops", tmp_path / "out" / "report.html"
    cohort = [
        "--cohort",
        str(small_cohort_dir),
        "--outcomes",
        str(small_cohort_dir / "outcomes.csv"),
    ]
    assert (
        _run(train_cli, [*cohort, "--out", str(model_path), "--quiet", "--developer", "Site X"])
        == 0
    )
    assert load_model(model_path).metadata["developer"] == "Site X"
    argv = [*cohort, "--model", str(model_path), "--report", str(report_path), "--bootstrap", "20"]
    assert _run(evaluate_cli, [*argv, "--quiet"]) == 0
    assert report_path.read_text().startswith("<!doctype html>")
    twin = json.loads(report_path.with_suffix(".json").read_text())
    assert twin["model"]["content_hash"] == load_model(model_path).metadata["content_hash"]
    assert "agreement with reference endotypes" in capsys.readouterr().out


def test_train_cli_reports_a_bad_outcomes_file_without_a_trace(small_cohort_dir, tmp_path, capsys):
    bad = tmp_path / "outcomes.csv"
    bad.write_text("patient_id\nx\n")
    argv = [
        "--cohort",
        str(small_cohort_dir),
        "--outcomes",
        str(bad),
        "--out",
        str(tmp_path / "m.skops"),
    ]
    assert _run(train_cli, [*argv, "--quiet"]) == 2
    assert "missing columns" in capsys.readouterr().err


def test_evaluate_cli_refuses_an_altered_model(small_cohort_dir, tmp_path, capsys):
    from model.scorer import DEFAULT_MODEL_PATH

    altered = tmp_path / "altered.skops"
    altered.write_bytes(DEFAULT_MODEL_PATH.read_bytes() + b"\0")
    altered.with_suffix(".json").write_text(DEFAULT_MODEL_PATH.with_suffix(".json").read_text())
    argv = [
        "--cohort",
        str(small_cohort_dir),
        "--outcomes",
        str(small_cohort_dir / "outcomes.csv"),
        "--model",
        str(altered),
        "--report",
        str(tmp_path / "r.html"),
    ]
    assert _run(evaluate_cli, argv) == 2
    assert "hash" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


@pytest.mark.slow
def test_unlabelled_cohort_is_compared_with_endotypes_derived_on_it(small_cohort):
    from dataclasses import replace

    from model.cohort import Cohort
    from model.scorer import DEFAULT_MODEL_PATH

    unlabelled = Cohort(
        outcomes=tuple(replace(row, reference_endotype=None) for row in small_cohort.outcomes),
        observations=small_cohort.observations,
        n_patient_resources=small_cohort.n_patient_resources,
        n_synthetic_patients=small_cohort.n_synthetic_patients,
    )
    model = load_model(DEFAULT_MODEL_PATH)
    report = evaluate_model(model, unlabelled, n_bootstrap=20, progress=False)
    assert report["agreement"]["source"] == "endotypes derived on this cohort"
    assert report["agreement"]["n"] == report["cohort"]["n_scored"]


def test_train_cli_refuses_a_model_path_without_skops_suffix(small_cohort_dir, tmp_path, capsys):
    argv = [
        "--cohort",
        str(small_cohort_dir),
        "--outcomes",
        str(small_cohort_dir / "outcomes.csv"),
        "--out",
        str(tmp_path / "model.pkl"),
    ]
    assert _run(train_cli, argv) == 2
    assert ".skops" in capsys.readouterr().err
    assert not (tmp_path / "model.pkl").exists()
