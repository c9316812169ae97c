"""Evaluate a model on a cohort: agreement, prognostic value, subgroups, threshold, decision curve.

`evaluate_model` returns a JSON-ready dict (the report's JSON twin); `render_report` turns it
into one self-contained HTML page with inline SVG plots. Intervals are percentile bootstrap 95%
intervals over patients. The model's probability is of the high-risk endotype, not of an
outcome: calibration against an outcome shows how far that probability is from outcome risk.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    cohen_kappa_score,
    confusion_matrix,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)
from tqdm import tqdm

from model.cohort import Cohort, PatientOutcome, cohort_timelines
from model.derive import derive_endotypes
from model.features import feature_matrix
from model.pipeline import EndotypeModel
from model.train import age_band, eligible_rows

OUTCOMES: tuple[str, ...] = ("picu_death", "complicated_course", "sepsis")
INSUFFICIENT = "insufficient-data"
CALIBRATION_BINS = 10
DECISION_THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.02, 0.81, 0.02))
Metric = Callable[[np.ndarray, np.ndarray], float]


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


def bootstrap_indices(n: int, count: int, seed: int | Sequence[int]) -> np.ndarray:
    """`count` resamples (with replacement) of `n` patients, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(count, n)) if n else np.empty((count, 0), dtype=int)


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
    }


# --- metrics with bootstrap intervals ----------------------------------------------------------


def with_interval(metric: Metric, truth: np.ndarray, score: np.ndarray, boot: np.ndarray) -> dict:
    """Point estimate and percentile bootstrap 95% interval; None where undefined."""
    point = _safe(metric, truth, score)
    draws = [_safe(metric, truth[i], score[i]) for i in boot]
    finite = np.array([d for d in draws if d is not None], dtype=float)
    if point is None or len(finite) < max(10, len(boot) // 2):
        return {"estimate": point, "ci95": None}
    low, high = np.percentile(finite, [2.5, 97.5])
    return {"estimate": round(point, 4), "ci95": [round(float(low), 4), round(float(high), 4)]}


def _safe(metric: Metric, truth: np.ndarray, score: np.ndarray) -> float | None:
    if len(truth) == 0:
        return None
    try:
        value = float(metric(truth, score))
    except ValueError:
        return None
    return value if np.isfinite(value) else None


def auroc(truth: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve; ValueError when only one class is present."""
    if truth.all() or not truth.any():
        raise ValueError("one class only")
    return roc_auc_score(truth, score)


def auprc(truth: np.ndarray, score: np.ndarray) -> float:
    """Average precision; ValueError without events."""
    if not truth.any():
        raise ValueError("no events")
    return average_precision_score(truth, score)


def calibration_slope(truth: np.ndarray, probability: np.ndarray) -> float:
    """Slope of the logistic recalibration of the outcome on logit(probability)."""
    if truth.all() or not truth.any():
        raise ValueError("one class only")
    fitted = LogisticRegression(C=np.inf).fit(_logit(probability)[:, None], truth)
    return float(fitted.coef_[0, 0])


def calibration_intercept(truth: np.ndarray, probability: np.ndarray) -> float:
    """Calibration-in-the-large: intercept with logit(probability) as offset (Newton steps)."""
    if truth.all() or not truth.any():
        raise ValueError("one class only")
    offset, intercept = _logit(probability), 0.0
    for _ in range(50):
        mean = expit(intercept + offset)
        step = np.sum(truth - mean) / max(np.sum(mean * (1 - mean)), 1e-12)
        intercept += step
        if abs(step) < 1e-10:
            break
    return intercept


def _logit(probability: np.ndarray) -> np.ndarray:
    return logit(np.clip(probability, 1e-6, 1 - 1e-6))


def brier(truth: np.ndarray, probability: np.ndarray) -> float:
    """Mean squared difference between probability and outcome."""
    return brier_score_loss(truth, probability)


def calibration_curve(truth: np.ndarray, probability: np.ndarray) -> list[dict[str, float]]:
    """Observed outcome rate against mean probability in quantile bins."""
    if len(truth) == 0:
        return []
    edges = np.unique(np.quantile(probability, np.linspace(0, 1, CALIBRATION_BINS + 1)))
    bins = np.clip(np.searchsorted(edges, probability, side="right") - 1, 0, len(edges) - 2)
    points = []
    for b in np.unique(bins):
        inside = bins == b
        points.append(
            {
                "predicted": round(float(probability[inside].mean()), 4),
                "observed": round(float(truth[inside].mean()), 4),
                "n": int(inside.sum()),
            }
        )
    return points


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
    kappa = with_interval(cohen_kappa_score, truth, guess, _resized(boot, len(truth), 0))
    return {
        "source": source,
        "n": int(len(truth)),
        "classes": classes,
        "confusion_matrix": confusion_matrix(truth, guess, labels=classes).tolist(),
        "accuracy": round(float(np.mean(truth == guess)), 4),
        "balanced_accuracy": round(float(balanced_accuracy_score(truth, guess)), 4),
        "cohen_kappa": kappa,
    }


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
    keys = {
        "age band": [age_band(row.age_months) for row in rows],
        "sex": [row.sex for row in rows],
        "organ dysfunction": ["sepsis" if row.sepsis else "non-sepsis" for row in rows],
    }
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


def _ratio(numerator: int, denominator: int) -> float:
    if denominator == 0:
        raise ValueError("empty denominator")
    return numerator / denominator


def sensitivity(truth: np.ndarray, flagged: np.ndarray) -> float:
    """Share of patients with the outcome who are flagged."""
    return _ratio(int(np.sum(flagged & truth)), int(np.sum(truth)))


def specificity(truth: np.ndarray, flagged: np.ndarray) -> float:
    """Share of patients without the outcome who are not flagged."""
    return _ratio(int(np.sum(~flagged & ~truth)), int(np.sum(~truth)))


def ppv(truth: np.ndarray, flagged: np.ndarray) -> float:
    """Share of flagged patients with the outcome."""
    return _ratio(int(np.sum(flagged & truth)), int(np.sum(flagged)))


def npv(truth: np.ndarray, flagged: np.ndarray) -> float:
    """Share of unflagged patients without the outcome."""
    return _ratio(int(np.sum(~flagged & ~truth)), int(np.sum(~flagged)))


def net_benefit(truth: np.ndarray, flagged: np.ndarray, threshold: float) -> float:
    """Net benefit of acting on `flagged` at threshold probability `threshold`."""
    n = len(truth)
    true_pos = np.sum(flagged & truth) / n
    false_pos = np.sum(flagged & ~truth) / n
    return float(true_pos - false_pos * threshold / (1 - threshold))


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
    agreement = report["agreement"]
    if agreement.get("n"):
        kappa = agreement["cohen_kappa"]["estimate"]
        lines.append(f"agreement with {agreement['source']}: kappa {kappa}")
    for outcome, figures in report["prognostic"].items():
        lines.append(f"{outcome}: AUROC {figures['auroc']['estimate']} {figures['auroc']['ci95']}")
    return lines
