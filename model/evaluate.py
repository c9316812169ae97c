"""Evaluate a model on a cohort: agreement, prognostic value, subgroups, threshold, decision curve.

`evaluate_model` returns a JSON-ready dict (the report's JSON twin); `model.report.render_report`
turns it into one self-contained HTML page with inline SVG plots; the metrics are in
`model.metrics`. Intervals are percentile bootstrap 95% intervals over patients. The model's
probability is of the high-risk endotype, not of an
outcome: calibration against an outcome shows how far that probability is from outcome risk.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve
from tqdm import tqdm

from model.cohort import Cohort, PatientOutcome, cohort_timelines
from model.derive import derive_endotypes
from model.features import feature_matrix
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
from model.pipeline import EndotypeModel
from model.train import eligible_rows, subgroup_of

OUTCOMES: tuple[str, ...] = ("picu_death", "complicated_course", "sepsis")
INSUFFICIENT = "insufficient-data"
DECISION_THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.02, 0.81, 0.02))


def evaluate_model(
    model: EndotypeModel,
    cohort: Cohort,
    *,
    n_bootstrap: int = 200,
    random_state: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Every figure of the evaluation report, computed on one cohort."""
    features = feature_matrix(cohort_timelines(cohort, progress=progress), model.analytes)
    eligible = eligible_rows(features, model.analytes)
    scored = [row for row, keep in zip(cohort.outcomes, eligible, strict=True) if keep]
    probabilities = model.estimator.predict_proba(features[eligible])
    classes = [str(c) for c in model.estimator.classes_]
    high = probabilities[:, classes.index(model.high_risk_class)]
    predicted = _predicted_endotypes(probabilities, classes, high, model)
    boot = bootstrap_indices(len(scored), n_bootstrap, random_state)
    steps = tqdm(total=5, desc="evaluate", disable=not progress)
    report: dict[str, Any] = {"model": _model_identity(model), "cohort": _cohort_summary(cohort)}
    report["cohort"]["n_scored"] = len(scored)
    report["cohort"]["n_insufficient_data"] = int(np.sum(~eligible))
    report["agreement"] = _agreement(cohort, scored, features[eligible], predicted, model, boot)
    steps.update()
    report["prognostic"] = {o: _prognostic(_flags(scored, o), high, boot) for o in OUTCOMES}
    steps.update()
    report["outcomes_by_endotype"] = _outcomes_by_endotype(cohort.outcomes, eligible, predicted)
    report["subgroups"] = _subgroups(scored, high, boot)
    steps.update()
    report["threshold"] = _threshold_table(scored, high, model.threshold, boot)
    steps.update()
    report["decision_curve"] = _decision_curve(_flags(scored, "complicated_course"), high)
    steps.update()
    steps.close()
    return report


def _predicted_endotypes(
    probabilities: np.ndarray, classes: list[str], high: np.ndarray, model: EndotypeModel
) -> np.ndarray:
    """The scorer's rule: high-risk at or above the threshold, else the likeliest other class."""
    others = np.array(probabilities, copy=True)
    others[:, classes.index(model.high_risk_class)] = -1.0
    fallback = np.array(classes, dtype=object)[np.argmax(others, axis=1)]
    return np.where(high >= model.threshold, model.high_risk_class, fallback)


def _resized(boot: np.ndarray, n: int, key: int) -> np.ndarray:
    """Fresh resamples of a subset of size `n`, seeded from the parent resamples."""
    seed = int(boot[0, 0]) if boot.size else 0
    return bootstrap_indices(n, len(boot), [seed, key, n])


def _flags(rows: Sequence[PatientOutcome], outcome: str) -> np.ndarray:
    return np.array([getattr(row, outcome) for row in rows], dtype=bool)


def _model_identity(model: EndotypeModel) -> dict[str, Any]:
    keys = ("model_id", "version", "content_hash", "threshold", "high_risk_class")
    identity = {key: model.metadata.get(key) for key in keys}
    identity["synthetic_training_data"] = bool(model.metadata.get("synthetic_training_data"))
    return identity


def _cohort_summary(cohort: Cohort) -> dict[str, Any]:
    return {
        "n_patients": len(cohort.outcomes),
        "synthetic": cohort.all_synthetic,
        "reference_labels": cohort.has_reference_labels,
        "anchors": cohort.anchor_counts,
    }


# --- prognostic value of the high-risk probability ----------------------------------------


def _prognostic(truth: np.ndarray, high: np.ndarray, boot: np.ndarray) -> dict[str, Any]:
    result: dict[str, Any] = {"n": int(len(truth)), "events": int(truth.sum())}
    for name, metric in (
        ("auroc", auroc),
        ("auprc", auprc),
        ("brier", brier),
        ("calibration_slope", calibration_slope),
        ("calibration_intercept", calibration_intercept),
    ):
        result[name] = with_interval(metric, truth, high, boot)
    result["calibration_curve"] = calibration_curve(truth, high)
    result["roc_curve"] = _curve(roc_curve, truth, high)
    result["pr_curve"] = _curve(_pr_points, truth, high)
    return result


def _pr_points(truth: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, Any]:
    precision, recall, cutoffs = precision_recall_curve(truth, score)
    return recall, precision, cutoffs


def _curve(function: Callable, truth: np.ndarray, score: np.ndarray) -> list[list[float]]:
    if truth.all() or not truth.any():
        return []
    xs, ys, _ = function(truth, score)
    keep = np.unique(np.linspace(0, len(xs) - 1, min(len(xs), 200)).astype(int))
    return [[round(float(xs[i]), 4), round(float(ys[i]), 4)] for i in keep]


# --- agreement, outcomes by endotype, subgroups ------------------------------------------------


def _agreement(
    cohort: Cohort,
    scored: Sequence[PatientOutcome],
    features: np.ndarray,
    predicted: np.ndarray,
    model: EndotypeModel,
    boot: np.ndarray,
) -> dict[str, Any]:
    reference, source = _reference_labels(cohort, scored, features, model)
    labelled = np.array([label is not None for label in reference])
    truth = np.array([label for label in reference if label is not None], dtype=object)
    guess = predicted[labelled]
    if len(truth) == 0:
        return {"source": source, "n": 0}
    classes = sorted(set(truth) | set(guess))
    truth_codes, guess_codes = _shared_codes(truth, guess)
    kappa = with_interval(cohen_kappa, truth_codes, guess_codes, _resized(boot, len(truth), 0))
    return {
        "source": source,
        "n": int(len(truth)),
        "classes": classes,
        "confusion_matrix": confusion_matrix(truth, guess, labels=classes).tolist(),
        "accuracy": round(float(np.mean(truth == guess)), 4),
        "balanced_accuracy": round(balanced_accuracy(truth, guess), 4),
        "cohen_kappa": kappa,
    }


def _shared_codes(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both labellings as integer codes over their joint labels, encoded once for resampling."""
    _, codes = np.unique(np.concatenate([first, second]).astype(str), return_inverse=True)
    return codes[: len(first)], codes[len(first) :]


def _reference_labels(
    cohort: Cohort, scored: Sequence[PatientOutcome], features: np.ndarray, model: EndotypeModel
) -> tuple[list[str | None], str]:
    if cohort.has_reference_labels:
        return [row.reference_endotype for row in scored], "reference endotypes"
    course = _flags(scored, "complicated_course").astype(float)
    derivation = derive_endotypes(features, model.analytes, course)
    return [str(label) for label in derivation.labels], "endotypes derived on this cohort"


def _outcomes_by_endotype(
    rows: Sequence[PatientOutcome], eligible: np.ndarray, predicted: np.ndarray
) -> list[dict[str, Any]]:
    labels = np.full(len(rows), INSUFFICIENT, dtype=object)
    labels[eligible] = predicted
    table = []
    for label in sorted(set(labels.tolist())):
        group = [row for row, own in zip(rows, labels, strict=True) if own == label]
        table.append(
            {
                "endotype": label,
                "n": len(group),
                **{f"{o}_rate": round(float(np.mean(_flags(group, o))), 4) for o in OUTCOMES},
            }
        )
    return table


def _subgroups(rows: Sequence[PatientOutcome], high: np.ndarray, boot: np.ndarray) -> list[dict]:
    memberships = [subgroup_of(row) for row in rows]
    factors = ("age band", "sex", "organ dysfunction")
    keys = {factor: [member[factor] for member in memberships] for factor in factors}
    table = []
    for factor, values in keys.items():
        values_array = np.array(values, dtype=object)
        for level in sorted(set(values)):
            inside = np.flatnonzero(values_array == level)
            sub_boot = _resized(boot, len(inside), len(table) + 1)
            subset = [rows[i] for i in inside]
            table.append(_subgroup_row(factor, level, subset, high[inside], sub_boot))
    return table


def _subgroup_row(
    factor: str, level: str, rows: list[PatientOutcome], high: np.ndarray, boot: np.ndarray
) -> dict[str, Any]:
    course, death = _flags(rows, "complicated_course"), _flags(rows, "picu_death")
    return {
        "factor": factor,
        "level": level,
        "n": len(rows),
        "complicated_course_events": int(course.sum()),
        "auroc_complicated_course": with_interval(auroc, course, high, boot),
        "auroc_picu_death": with_interval(auroc, death, high, boot),
        "brier_complicated_course": with_interval(brier, course, high, boot),
    }


# --- threshold and decision curve --------------------------------------------------------------


def _threshold_table(
    rows: Sequence[PatientOutcome], high: np.ndarray, threshold: float, boot: np.ndarray
) -> dict[str, Any]:
    flagged = high >= threshold
    table: dict[str, Any] = {"threshold": threshold, "flagged_share": _rate(flagged)}
    for outcome in OUTCOMES:
        truth = _flags(rows, outcome)
        table[outcome] = {
            name: with_interval(lambda t, f, m=metric: m(t, f), truth, flagged, boot)
            for name, metric in (
                ("sensitivity", sensitivity),
                ("specificity", specificity),
                ("ppv", ppv),
                ("npv", npv),
            )
        }
    return table


def _rate(flags: np.ndarray) -> float | None:
    return round(float(np.mean(flags)), 4) if len(flags) else None


def _decision_curve(truth: np.ndarray, high: np.ndarray) -> dict[str, Any]:
    if len(truth) == 0:
        return {"outcome": "complicated_course", "points": []}
    everyone = np.ones_like(truth)
    points = [
        {
            "threshold": t,
            "model": round(net_benefit(truth, high >= t, t), 4),
            "treat_all": round(net_benefit(truth, everyone, t), 4),
            "treat_none": 0.0,
        }
        for t in DECISION_THRESHOLDS
    ]
    return {"outcome": "complicated_course", "points": points}


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    """A few lines for the terminal."""
    lines = [f"scored {report['cohort']['n_scored']} of {report['cohort']['n_patients']} patients"]
    lines.append(anchor_line(report["cohort"].get("anchors", {})))
    agreement = report["agreement"]
    if agreement.get("n"):
        kappa = agreement["cohen_kappa"]["estimate"]
        lines.append(f"agreement with {agreement['source']}: kappa {kappa}")
    for outcome, figures in report["prognostic"].items():
        lines.append(f"{outcome}: AUROC {figures['auroc']['estimate']} {figures['auroc']['ci95']}")
    return lines


def anchor_line(anchors: Mapping[str, int]) -> str:
    """'anchored at: Phoenix onset 480, outcomes onset_time 20'."""
    return "anchored at: " + ", ".join(f"{source} {count}" for source, count in anchors.items())
