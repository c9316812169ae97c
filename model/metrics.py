"""Evaluation metrics: discrimination, calibration, agreement and threshold figures.

Each metric takes plain arrays (truth, score) and returns a float, raising ValueError where it is
undefined (one class only, an empty denominator); `with_interval` adds a percentile bootstrap 95%
interval over patients and turns undefined values into None.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
from scipy.special import expit, logit
from sklearn import config_context
from sklearn.exceptions import ConvergenceWarning, UndefinedMetricWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    brier_score_loss,
    cohen_kappa_score,
    roc_auc_score,
)

CALIBRATION_BINS = 10
Metric = Callable[[np.ndarray, np.ndarray], float]


def bootstrap_indices(n: int, count: int, seed: int | Sequence[int]) -> np.ndarray:
    """`count` resamples (with replacement) of `n` patients, reproducible from `seed`."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(count, n)) if n else np.empty((count, 0), dtype=int)


def with_interval(metric: Metric, truth: np.ndarray, score: np.ndarray, boot: np.ndarray) -> dict:
    """Point estimate and percentile bootstrap 95% interval; None where undefined."""
    point = _safe(metric, truth, score)
    if point is None:
        return {"estimate": None, "ci95": None}
    with config_context(assume_finite=True, skip_parameter_validation=True):
        # Resamples of inputs already checked by the point estimate need no re-checking.
        draws = [_safe(metric, truth[i], score[i]) for i in boot]
    finite = np.array([d for d in draws if d is not None], dtype=float)
    if len(finite) < max(10, len(boot) // 2):
        return {"estimate": round(point, 4), "ci95": None}
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
    """Area under the ROC curve (ties counted half); ValueError for one class."""
    _require_both_classes(truth)
    return float(roc_auc_score(truth, score))


def auprc(truth: np.ndarray, score: np.ndarray) -> float:
    """Average precision (step-wise precision over recall); ValueError without events."""
    if not truth.any():
        raise ValueError("no events")
    return float(average_precision_score(truth, score))


def _require_both_classes(truth: np.ndarray) -> None:
    """Raise ValueError unless `truth` holds both outcomes, as `_safe` expects."""
    if truth.all() or not truth.any():
        raise ValueError("one class only")


def calibration_slope(truth: np.ndarray, probability: np.ndarray) -> float:
    """Slope of the unpenalised logistic recalibration of the outcome on logit(probability)."""
    _require_both_classes(truth)
    if _separated(truth.astype(bool), probability):
        raise ValueError("outcome perfectly separated by probability: the slope is unbounded")
    recalibration = LogisticRegression(C=np.inf, solver="newton-cholesky", tol=1e-8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            recalibration.fit(_logit(probability)[:, None], truth)
        except ConvergenceWarning as unconverged:
            raise ValueError("recalibration did not converge") from unconverged
    return float(recalibration.coef_[0, 0])


def _separated(truth: np.ndarray, probability: np.ndarray) -> bool:
    """Whether one threshold splits events from non-events, leaving no finite logistic fit."""
    events, others = probability[truth], probability[~truth]
    return bool(others.max() <= events.min() or events.max() <= others.min())


def calibration_intercept(truth: np.ndarray, probability: np.ndarray) -> float:
    """Calibration-in-the-large: intercept with logit(probability) as offset (Newton steps)."""
    _require_both_classes(truth)
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
    return float(brier_score_loss(truth, probability, pos_label=True))


def balanced_accuracy(truth: np.ndarray, guess: np.ndarray) -> float:
    """Mean recall over the classes present in `truth`."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true")
        return float(balanced_accuracy_score(truth, guess))


def cohen_kappa(truth: np.ndarray, guess: np.ndarray) -> float:
    """Agreement beyond chance between two labellings; ValueError where it is undefined."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.filterwarnings("ignore", "A single label was found")
        value = float(cohen_kappa_score(truth, guess))
    if not np.isfinite(value):
        raise ValueError("agreement by chance is complete")
    return value


def calibration_curve(truth: np.ndarray, probability: np.ndarray) -> list[dict[str, float]]:
    """Observed outcome rate against mean probability in quantile bins."""
    # sklearn.calibration.calibration_curve does not return the per-bin counts the report keeps.
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
