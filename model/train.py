"""Fit the endotype classifier on a cohort, choose its decision threshold, and describe it.

Steps: onset features for every patient (the service's own path) → keep patients with all
required tier-1 markers → labels (reference endotypes where the site has them, otherwise derived
by `model.derive`) → stratified 75/25 split → penalty strength by 5-fold log loss on the
training part → calibrated pipeline fitted on the training part → threshold on the validation
part (maximum Youden index for the high-risk class) → metadata.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import sklearn
from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score, roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
from tqdm import tqdm

from model.assessment import Endotype
from model.cohort import Cohort, PatientOutcome, cohort_timelines
from model.derive import derive_endotypes
from model.features import FEATURE_ANALYTES, feature_matrix
from model.pipeline import EndotypeModel, build_classifier
from model.rules import packaged_rule_set

# the rule set's required tier-1 markers: without them no scorer gives a pathway
REQUIRED_ANALYTES: tuple[str, ...] = packaged_rule_set().required
PENALTY_GRID: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
VALIDATION_SHARE = 0.25
HIGH_RISK_CLASS = Endotype.HYPERINFLAMMATORY.value
THRESHOLD_CRITERION = (
    "maximum Youden index (sensitivity + specificity - 1) for the high-risk class on the "
    "held-out validation split"
)
AGE_BANDS: tuple[tuple[str, float, float], ...] = (
    ("<1 y", 0.0, 12.0),
    ("1-5 y", 12.0, 72.0),
    ("6-12 y", 72.0, 156.0),
    ("13-17 y", 156.0, 216.0),
    (">=18 y", 216.0, float("inf")),
)


@dataclass(frozen=True)
class TrainingData:
    """Model inputs for the patients eligible for training, with their outcomes and labels."""

    features: np.ndarray
    outcomes: tuple[PatientOutcome, ...]
    labels: np.ndarray
    label_source: str  # "reference" or "derived"
    derivation: dict[str, Any] | None
    n_cohort: int
    n_without_required: int
    n_without_label: int


def age_band(age_months: float) -> str:
    """The reporting age band of an age in months."""
    return next(name for name, low, high in AGE_BANDS if low <= age_months < high)


def eligible_rows(features: np.ndarray, analytes: Sequence[str]) -> np.ndarray:
    """Boolean mask of patients with every required analyte observed."""
    required = [list(analytes).index(a) for a in REQUIRED_ANALYTES]
    return np.all(np.isfinite(features[:, required]), axis=1)


def prepare_training_data(
    cohort: Cohort, *, random_state: int = 0, progress: bool = True
) -> TrainingData:
    """Features, eligibility and labels for a cohort (reference labels first, else derived)."""
    features = feature_matrix(cohort_timelines(cohort, progress=progress), FEATURE_ANALYTES)
    eligible = eligible_rows(features, FEATURE_ANALYTES)
    outcomes = tuple(row for row, keep in zip(cohort.outcomes, eligible, strict=True) if keep)
    features = features[eligible]
    if cohort.has_reference_labels:
        labelled = np.array([row.reference_endotype is not None for row in outcomes])
        return TrainingData(
            features=features[labelled],
            outcomes=tuple(r for r, keep in zip(outcomes, labelled, strict=True) if keep),
            labels=np.array([r.reference_endotype for r in outcomes if r.reference_endotype]),
            label_source="reference",
            derivation=None,
            n_cohort=len(cohort.outcomes),
            n_without_required=int(np.sum(~eligible)),
            n_without_label=int(np.sum(~labelled)),
        )
    course = np.array([row.complicated_course for row in outcomes], dtype=float)
    derivation = derive_endotypes(features, FEATURE_ANALYTES, course, random_state=random_state)
    return TrainingData(
        features=features,
        outcomes=outcomes,
        labels=derivation.labels.astype(str),
        label_source="derived",
        derivation=derivation.describe(),
        n_cohort=len(cohort.outcomes),
        n_without_required=int(np.sum(~eligible)),
        n_without_label=0,
    )


def choose_penalty(features: np.ndarray, labels: np.ndarray, random_state: int) -> float:
    """The inverse penalty C with the best 5-fold cross-validated log loss."""
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=random_state)
    scores = {
        c: cross_val_score(
            build_classifier(C=c, random_state=random_state).estimator,
            features,
            labels,
            cv=folds,
            scoring="neg_log_loss",
        ).mean()
        for c in PENALTY_GRID
    }
    return max(PENALTY_GRID, key=lambda c: (scores[c], -c))


def youden_threshold(is_high_risk: np.ndarray, probability: np.ndarray) -> float:
    """The probability cut-off that maximises sensitivity + specificity - 1."""
    if is_high_risk.all() or not is_high_risk.any():
        raise ValueError("the validation split needs both high-risk and other patients")
    false_pos, true_pos, cutoffs = roc_curve(is_high_risk, probability)
    best = int(np.argmax(true_pos - false_pos))
    return float(min(cutoffs[best], 1.0))


def train_model(
    cohort: Cohort,
    *,
    model_id: str,
    version: str,
    description: str,
    random_state: int = 0,
    progress: bool = True,
) -> EndotypeModel:
    """Train, calibrate and threshold a model on a cohort; the result is ready for `save_model`."""
    data = prepare_training_data(cohort, random_state=random_state, progress=progress)
    if HIGH_RISK_CLASS not in set(data.labels):
        raise ValueError("no patient carries the high-risk endotype; cannot train")
    split = train_test_split(
        np.arange(len(data.labels)),
        test_size=VALIDATION_SHARE,
        stratify=data.labels,
        random_state=random_state,
    )
    fit_rows, check_rows = split
    steps = tqdm(total=3, desc="train", unit="step", disable=not progress)
    penalty = choose_penalty(data.features[fit_rows], data.labels[fit_rows], random_state)
    steps.update()
    estimator = build_classifier(C=penalty, random_state=random_state)
    estimator.fit(data.features[fit_rows], data.labels[fit_rows])
    steps.update()
    validation = _validate(estimator, data, check_rows)
    steps.update()
    steps.close()
    metadata = _metadata(
        data, cohort, validation, model_id, version, description, penalty, random_state
    )
    metadata["n_training"], metadata["n_validation"] = len(fit_rows), len(check_rows)
    return EndotypeModel(estimator=estimator, metadata=metadata)


def _validate(estimator: Any, data: TrainingData, rows: np.ndarray) -> dict[str, Any]:
    probabilities = estimator.predict_proba(data.features[rows])
    classes = [str(c) for c in estimator.classes_]
    high = probabilities[:, classes.index(HIGH_RISK_CLASS)]
    truth = data.labels[rows]
    is_high = truth == HIGH_RISK_CLASS
    threshold = youden_threshold(is_high, high)
    predicted = np.array(classes)[np.argmax(probabilities, axis=1)]
    flagged = high >= threshold
    outcomes = [data.outcomes[i] for i in rows]
    return {
        "threshold": threshold,
        "n": int(len(rows)),
        "balanced_accuracy": round(float(balanced_accuracy_score(truth, predicted)), 4),
        "cohen_kappa": round(float(cohen_kappa_score(truth, predicted)), 4),
        "auroc_high_risk_class": round(float(roc_auc_score(is_high, high)), 4),
        "sensitivity_at_threshold": round(float(np.mean(flagged[is_high])), 4),
        "specificity_at_threshold": round(float(np.mean(~flagged[~is_high])), 4),
        "auroc_picu_death": _auroc([o.picu_death for o in outcomes], high),
        "auroc_complicated_course": _auroc([o.complicated_course for o in outcomes], high),
        "auroc_high_risk_class_by_subgroup": _by_subgroup(outcomes, is_high, high),
    }


def subgroup_of(row: PatientOutcome) -> dict[str, str]:
    """The reporting subgroups a patient belongs to, by factor."""
    return {
        "age band": age_band(row.age_months),
        "sex": row.sex,
        "organ dysfunction": "sepsis" if row.sepsis else "non-sepsis",
    }


def _by_subgroup(
    outcomes: Sequence[PatientOutcome], is_high: np.ndarray, high: np.ndarray
) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[int]] = {}
    for index, row in enumerate(outcomes):
        for factor, level in subgroup_of(row).items():
            groups.setdefault(f"{factor}: {level}", []).append(index)
    return {
        name: {"n": len(rows), "auroc": _auroc(is_high[rows].tolist(), high[rows])}
        for name, rows in sorted(groups.items())
    }


def _auroc(outcome: Sequence[bool], score: np.ndarray) -> float | None:
    truth = np.array(outcome, dtype=bool)
    if truth.all() or not truth.any():
        return None
    return round(float(roc_auc_score(truth, score)), 4)


def _metadata(
    data: TrainingData,
    cohort: Cohort,
    validation: dict[str, Any],
    model_id: str,
    version: str,
    description: str,
    penalty: float,
    random_state: int,
) -> dict[str, Any]:
    return {
        "model_id": model_id,
        "version": version,
        "description": description,
        "created": datetime.now(UTC).date().isoformat(),
        "feature_analytes": list(FEATURE_ANALYTES),
        "required_analytes": list(REQUIRED_ANALYTES),
        "feature_definition": (
            "latest counted result per analyte in the 48 h after onset (the first hour with a "
            "Phoenix score of 2 or more, else the outcomes file's onset_time)"
        ),
        "class_names": sorted(set(data.labels.tolist())),
        "high_risk_class": HIGH_RISK_CLASS,
        "threshold": validation.pop("threshold"),
        "threshold_criterion": THRESHOLD_CRITERION,
        "label_source": data.label_source,
        "derivation": data.derivation,
        "estimator": "log1p > median impute + missingness indicators > standard scaling > "
        f"L2 multinomial logistic regression (C={penalty}) > temperature scaling (5-fold)",
        "penalty_c": penalty,
        "random_state": random_state,
        "synthetic_training_data": cohort.all_synthetic,
        "training_cohort": _cohort_description(data, cohort),
        "internal_validation": validation,
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
    }


def _cohort_description(data: TrainingData, cohort: Cohort) -> dict[str, Any]:
    outcomes = data.outcomes
    onsets = sorted(row.onset_time for row in cohort.outcomes)
    return {
        "n_patients_in_cohort": data.n_cohort,
        "n_excluded_missing_required_markers": data.n_without_required,
        "n_excluded_without_reference_label": data.n_without_label,
        "n_included": len(outcomes),
        "synthetic": cohort.all_synthetic,
        "onset_first": onsets[0].isoformat() if onsets else None,
        "onset_last": onsets[-1].isoformat() if onsets else None,
        "anchors": cohort.anchor_counts,
        "sex": dict(sorted(Counter(row.sex for row in outcomes).items())),
        "age_band": dict(sorted(Counter(age_band(row.age_months) for row in outcomes).items())),
        "sepsis_share": _share(row.sepsis for row in outcomes),
        "picu_death_share": _share(row.picu_death for row in outcomes),
        "complicated_course_share": _share(row.complicated_course for row in outcomes),
        "class_counts": dict(sorted(Counter(data.labels.tolist()).items())),
    }


def _share(flags: Any) -> float | None:
    values = list(flags)
    return round(sum(values) / len(values), 4) if values else None
