"""Evaluation: metric functions against scikit-learn, the report's content, and the CLIs."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    cohen_kappa_score,
    roc_auc_score,
)

from model import evaluate_cli, train_cli
from model.evaluate import (
    OUTCOMES,
    auprc,
    auroc,
    balanced_accuracy,
    bootstrap_indices,
    calibration_intercept,
    calibration_slope,
    cohen_kappa,
    evaluate_model,
    net_benefit,
    npv,
    ppv,
    render_report,
    sensitivity,
    specificity,
    with_interval,
)
from model.pipeline import load_model


@pytest.fixture(scope="module")
def scores():
    rng = np.random.default_rng(4)
    truth = rng.random(400) < 0.3
    score = np.round(np.clip(rng.normal(0.3 + 0.3 * truth, 0.15), 0.01, 0.99), 2)
    return truth, score


def test_auroc_and_auprc_match_scikit_learn_with_ties(scores):
    truth, score = scores
    assert auroc(truth, score) == pytest.approx(roc_auc_score(truth, score))
    assert auprc(truth, score) == pytest.approx(average_precision_score(truth, score))


def test_balanced_accuracy_matches_scikit_learn_and_ignores_unseen_predictions():
    truth = np.array(["a", "a", "a", "b", "b"])
    guess = np.array(["a", "a", "b", "b", "b"])
    assert balanced_accuracy(truth, guess) == pytest.approx(balanced_accuracy_score(truth, guess))
    assert balanced_accuracy(truth, np.array(["a", "a", "c", "b", "c"])) == pytest.approx(
        (2 / 3 + 1 / 2) / 2
    )


def test_cohen_kappa_matches_scikit_learn():
    rng = np.random.default_rng(2)
    first = rng.choice(["a", "b", "c"], 300)
    second = np.where(rng.random(300) < 0.6, first, rng.choice(["a", "b", "c"], 300))
    assert cohen_kappa(first, second) == pytest.approx(cohen_kappa_score(first, second))


def test_perfectly_calibrated_probabilities_have_slope_one_intercept_zero():
    rng = np.random.default_rng(9)
    probability = rng.uniform(0.05, 0.95, 20000)
    truth = rng.random(20000) < probability
    assert calibration_slope(truth, probability) == pytest.approx(1.0, abs=0.08)
    assert calibration_intercept(truth, probability) == pytest.approx(0.0, abs=0.05)


def test_overconfident_probabilities_have_slope_below_one():
    rng = np.random.default_rng(9)
    probability = rng.uniform(0.05, 0.95, 20000)
    truth = rng.random(20000) < probability
    sharpened = 1 / (1 + np.exp(-3 * np.log(probability / (1 - probability))))
    assert calibration_slope(truth, sharpened) < 0.5


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


def test_bootstrap_interval_brackets_the_estimate(scores):
    truth, score = scores
    result = with_interval(auroc, truth, score, bootstrap_indices(len(truth), 100, 0))
    low, high = result["ci95"]
    assert low < result["estimate"] < high


def test_interval_is_absent_when_metric_is_undefined():
    truth = np.zeros(50, dtype=bool)
    result = with_interval(auroc, truth, np.linspace(0, 1, 50), bootstrap_indices(50, 30, 0))
    assert result == {"estimate": None, "ci95": None}


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


def test_html_report_has_figures_and_synthetic_warning(report):
    html = render_report(report)
    assert html.count("<svg") == 4
    assert "SYNTHETIC" in html
    assert "Decision curve" in html


def _run(module, argv):
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.run(parser.parse_args(argv))


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
