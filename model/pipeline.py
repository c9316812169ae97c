"""The scikit-learn endotype classifier, its coefficients, and its skops file format.

Pipeline: log1p → median imputation with missingness indicators → standard scaling →
L2-penalised multinomial logistic regression, wrapped in `CalibratedClassifierCV` (temperature
scaling fitted on cross-validated predictions; prediction uses the one pipeline fitted on all
data, so its coefficients explain its output). Models are stored with skops and an explicit list
of trusted types, never pickle, next to a JSON metadata file that records the sha256 of the
model file and the scikit-learn version; a mismatch of either refuses the load.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import skops.io as sio
from sklearn.calibration import CalibratedClassifierCV
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from model.model_file import (
    REQUIRED_METADATA,
    SERVING_DIGEST_KEY,
    SERVING_FORM_KEY,
    DescribedByMetadata,
    LinearForm,
    ModelFileError,
    ServingForm,
    metadata_path,
    probe_rows,
    read_metadata,
    serving_digest,
    sha256_of,
)

__all__ = [
    "REQUIRED_METADATA",
    "EndotypeModel",
    "LinearForm",
    "ModelFileError",
    "build_classifier",
    "class_coefficients",
    "linear_form",
    "load_model",
    "metadata_path",
    "save_model",
    "serving_form",
    "sha256_of",
    "standardised_inputs",
    "transformed_names",
]

# every type a model file may contain beyond skops' defaults; anything else refuses the load
TRUSTED_TYPES: tuple[str, ...] = (
    "numpy.dtype",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._TemperatureScaling",
    "sklearn.model_selection._split.StratifiedKFold",
)
CALIBRATION_FOLDS = 5


@dataclass(frozen=True)
class EndotypeModel(DescribedByMetadata):
    """A fitted calibrated classifier and the metadata that describes it."""

    estimator: CalibratedClassifierCV
    metadata: Mapping[str, Any]


def build_classifier(*, C: float = 1.0, random_state: int = 0) -> CalibratedClassifierCV:
    """An unfitted calibrated pipeline; `random_state` fixes the calibration folds."""
    pipeline = Pipeline(
        [
            ("log", FunctionTransformer(np.log1p, feature_names_out="one-to-one")),
            (
                "impute",
                SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
            ),
            ("scale", StandardScaler()),
            ("logreg", LogisticRegression(C=C, l1_ratio=0.0, max_iter=2000)),
        ]
    )
    folds = StratifiedKFold(n_splits=CALIBRATION_FOLDS, shuffle=True, random_state=random_state)
    return CalibratedClassifierCV(pipeline, method="temperature", cv=folds, ensemble=False)


def base_pipeline(estimator: CalibratedClassifierCV) -> Pipeline:
    """The pipeline fitted on all training data, whose output the calibrator rescales."""
    return estimator.calibrated_classifiers_[0].estimator


def transformed_names(estimator: CalibratedClassifierCV, analytes: Sequence[str]) -> list[str]:
    """Names of the logistic regression's inputs (analytes, then missingness indicators)."""
    preprocess = base_pipeline(estimator)[:-1]
    return [str(name) for name in preprocess.get_feature_names_out(list(analytes))]


def class_coefficients(estimator: CalibratedClassifierCV, class_name: str) -> np.ndarray:
    """The logistic regression's coefficients for one class, over the transformed inputs."""
    logreg = base_pipeline(estimator)[-1]
    position = [str(name) for name in estimator.classes_].index(class_name)
    # the calibrator fits its base estimator on label-encoded targets (0..k-1)
    encoded = [str(name) for name in logreg.classes_]
    index = encoded.index(class_name) if class_name in encoded else encoded.index(str(position))
    return np.asarray(logreg.coef_[index], dtype=float)


def standardised_inputs(estimator: CalibratedClassifierCV, rows: np.ndarray) -> np.ndarray:
    """Rows after log, imputation and scaling: what the coefficients multiply."""
    return base_pipeline(estimator)[:-1].transform(rows)


def save_model(model: EndotypeModel, path: Path) -> EndotypeModel:
    """Write the skops file and its metadata (with content hash and, for the linear pipeline, its
    serving form); return the model as saved."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sio.dump(model.estimator, path)
    metadata = dict(model.metadata)
    metadata["sklearn_version"] = sklearn.__version__
    metadata["content_hash"] = sha256_of(path)
    metadata["model_file"] = path.name
    served = serving_form(model.estimator, tuple(metadata["feature_analytes"]))
    metadata.pop(SERVING_FORM_KEY, None)
    metadata.pop(SERVING_DIGEST_KEY, None)
    if served is not None:
        stored = served.to_json()
        metadata[SERVING_FORM_KEY] = stored
        metadata[SERVING_DIGEST_KEY] = serving_digest(
            stored, metadata["content_hash"], metadata["feature_analytes"]
        )
    metadata_path(path).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    return EndotypeModel(estimator=model.estimator, metadata=metadata)


def load_model(path: Path) -> EndotypeModel:
    """Load a model file with its metadata; refuse altered files and other scikit-learn versions."""
    metadata = read_metadata(path, sklearn.__version__)
    estimator = sio.load(path, trusted=list(TRUSTED_TYPES))
    if not isinstance(estimator, CalibratedClassifierCV):
        raise ModelFileError(f"{path} does not hold a calibrated endotype classifier")
    _check_consistent(estimator, metadata)
    return EndotypeModel(estimator=estimator, metadata=metadata)


def _check_consistent(estimator: CalibratedClassifierCV, metadata: Mapping[str, Any]) -> None:
    classes = [str(name) for name in estimator.classes_]
    if metadata["high_risk_class"] not in classes:
        raise ModelFileError(f"high-risk class {metadata['high_risk_class']!r} not in {classes}")
    if estimator.n_features_in_ != len(metadata["feature_analytes"]):
        raise ModelFileError("feature list in the metadata does not match the model's inputs")


def linear_form(estimator: CalibratedClassifierCV, n_features: int) -> LinearForm | None:
    """The estimator's arrays, or None unless they reproduce `predict_proba` on probe rows."""
    pipeline = base_pipeline(estimator)
    logreg = pipeline["logreg"]
    if estimator.method != "temperature" or logreg.coef_.shape[0] < 3:
        return None
    imputer, scaler = pipeline["impute"], pipeline["scale"]
    form = LinearForm(
        medians=np.asarray(imputer.statistics_, dtype=float),
        indicator_columns=np.asarray(imputer.indicator_.features_, dtype=int),
        means=np.asarray(scaler.mean_, dtype=float),
        scales=np.asarray(scaler.scale_, dtype=float),
        coef=np.asarray(logreg.coef_, dtype=float),
        intercept=np.asarray(logreg.intercept_, dtype=float),
        beta=float(estimator.calibrated_classifiers_[0].calibrators[0].beta_),
    )
    probes = probe_rows(n_features)
    expected = estimator.predict_proba(probes)
    matches = np.allclose(form.probabilities(probes), expected, rtol=0.0, atol=1e-12)
    return form if matches else None


def serving_form(estimator: CalibratedClassifierCV, analytes: Sequence[str]) -> ServingForm | None:
    """What the scorer needs of `estimator` as plain values, when its linear form is exact.

    The coefficient rows are checked against `class_coefficients`, so the stored form explains
    the model's output as the estimator itself would.
    """
    form = linear_form(estimator, len(analytes))
    if form is None:
        return None
    classes = tuple(str(name) for name in estimator.classes_)
    served = ServingForm(classes, tuple(transformed_names(estimator, analytes)), form)
    for name in classes:
        if not np.array_equal(served.coefficients(name), class_coefficients(estimator, name)):
            return None
    return served
