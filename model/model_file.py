"""A model file's metadata and its serving form: what scoring needs, without scikit-learn.

A model is stored as a skops file with a JSON metadata file beside it (`model.pipeline`). When the
fitted pipeline is the linear one this project trains, the metadata also holds its serving form:
the pipeline's arrays (imputation medians, missingness indicators, scaling, coefficients,
intercepts, temperature), checked at save time to reproduce `predict_proba` on probe rows. The
service scores with those arrays and needs neither scikit-learn nor skops, so it starts in a
second less and each worker holds no scikit-learn. The metadata is checked as for a full load:
the skops file's sha256, the scikit-learn version it was saved with, the required keys, and a
serving form consistent with the metadata. The form carries a digest over itself, the skops
file's hash and the analyte list, so a form edited by hand or copied from another model file is
refused; a metadata file without a form is loaded with scikit-learn instead.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

SERVING_FORM_KEY = "serving_form"
SERVING_DIGEST_KEY = "serving_form_sha256"
REQUIRED_METADATA: tuple[str, ...] = (
    "model_id",
    "version",
    "feature_analytes",
    "high_risk_class",
    "threshold",
    "threshold_criterion",
    "sklearn_version",
    "content_hash",
)


class ModelFileError(ValueError):
    """A model file that must not be used: missing, altered, or from another scikit-learn."""


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def metadata_path(model_path: Path) -> Path:
    """Where a model file's metadata lives: same name, `.json` suffix."""
    return model_path.with_suffix(".json")


def installed_sklearn_version() -> str | None:
    """The installed scikit-learn's version, read without importing it."""
    try:
        return version("scikit-learn")
    except PackageNotFoundError:
        return None


def read_metadata(path: Path, installed_version: str | None) -> dict[str, Any]:
    """The metadata of model file `path`, once the file matches it (hash, version, keys)."""
    meta_file = metadata_path(path)
    if not path.is_file() or not meta_file.is_file():
        raise ModelFileError(f"model file or its metadata not found: {path}, {meta_file}")
    try:
        metadata = json.loads(meta_file.read_text(encoding="utf-8"))
    except ValueError:  # not UTF-8, or not JSON
        raise ModelFileError(f"{meta_file}: not a JSON metadata file") from None
    if not isinstance(metadata, dict):
        raise ModelFileError(f"{meta_file}: not a JSON object")
    recorded = metadata.get("sklearn_version")
    if recorded != installed_version:
        raise ModelFileError(
            f"model was saved with scikit-learn {recorded}, this is {installed_version}; "
            "retrain or rebuild the model with this version"
        )
    if metadata.get("content_hash") != sha256_of(path):
        raise ModelFileError(f"model file {path.name} does not match the hash in its metadata")
    absent = [key for key in REQUIRED_METADATA if key not in metadata]
    if absent:
        raise ModelFileError(f"model metadata lacks {absent}")
    if not 0.0 < float(metadata["threshold"]) <= 1.0:
        raise ModelFileError("threshold must be a probability in (0, 1]")
    return metadata


def serving_digest(form: Mapping[str, Any], content_hash: str, analytes: Sequence[str]) -> str:
    """Hex sha256 binding a stored serving form to one skops file and its analyte order."""
    bound = {"analytes": list(analytes), "content_hash": content_hash, "form": form}
    canonical = json.dumps(bound, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class LinearForm:
    """A fitted multiclass pipeline as plain arrays: predict_proba without per-call overhead."""

    medians: np.ndarray  # imputation value per analyte, on the log1p scale
    indicator_columns: np.ndarray  # analytes that get a missingness indicator
    means: np.ndarray  # scaler means over analytes then indicators
    scales: np.ndarray
    coef: np.ndarray  # (n_classes, n_inputs), rows in `estimator.classes_` order
    intercept: np.ndarray
    beta: float  # temperature-scaling factor on the logits

    def standardised(self, rows: np.ndarray) -> np.ndarray:
        """Rows after log, imputation with indicators, and scaling."""
        logged = np.log1p(rows)
        missing = np.isnan(logged)
        filled = np.where(missing, self.medians, logged)
        indicators = missing[:, self.indicator_columns].astype(float)
        return (np.hstack([filled, indicators]) - self.means) / self.scales

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        """Calibrated class probabilities, columns in `estimator.classes_` order."""
        logits = self.beta * (self.standardised(rows) @ self.coef.T + self.intercept)
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)


def probe_rows(n_features: int) -> np.ndarray:
    """Rows a linear form must score exactly as the estimator does (some values missing)."""
    rng = np.random.default_rng(0)
    rows = np.exp(rng.normal(2.0, 2.0, size=(64, n_features)))
    rows[rng.random(rows.shape) < 0.3] = np.nan
    rows[0] = np.nan
    return rows


@dataclass(frozen=True)
class ServingForm:
    """Everything the model scorer needs from a fitted model, as plain values."""

    classes: tuple[str, ...]  # in the estimator's order
    inputs: tuple[str, ...]  # the coefficients' inputs: analytes, then missingness indicators
    form: LinearForm

    def coefficients(self, class_name: str) -> np.ndarray:
        """The coefficients of one class over the inputs."""
        return self.form.coef[self.classes.index(class_name)]

    def to_json(self) -> dict[str, Any]:
        """The form as JSON values (floats kept exactly)."""
        form = self.form
        return {
            "classes": list(self.classes),
            "inputs": list(self.inputs),
            "medians": form.medians.tolist(),
            "indicator_columns": form.indicator_columns.tolist(),
            "means": form.means.tolist(),
            "scales": form.scales.tolist(),
            "coef": form.coef.tolist(),
            "intercept": form.intercept.tolist(),
            "beta": form.beta,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any], analytes: Sequence[str]) -> ServingForm:
        """The form stored in a model's metadata; ModelFileError when it does not fit together."""
        try:
            form = LinearForm(
                medians=np.asarray(value["medians"], dtype=float),
                indicator_columns=np.asarray(value["indicator_columns"], dtype=int),
                means=np.asarray(value["means"], dtype=float),
                scales=np.asarray(value["scales"], dtype=float),
                coef=np.asarray(value["coef"], dtype=float),
                intercept=np.asarray(value["intercept"], dtype=float),
                beta=float(value["beta"]),
            )
            served = cls(tuple(map(str, value["classes"])), tuple(map(str, value["inputs"])), form)
        except (KeyError, TypeError, ValueError):
            raise ModelFileError("the model's serving form is unreadable") from None
        served._check(len(analytes))
        served._check_names(list(analytes))
        return served

    def _check(self, n_analytes: int) -> None:
        form, n_inputs = self.form, len(self.inputs)
        shapes_fit = (
            form.medians.shape == (n_analytes,)
            and form.means.shape == form.scales.shape == (n_inputs,)
            and n_inputs == n_analytes + len(form.indicator_columns)
            and form.coef.shape == (len(self.classes), n_inputs)
            and form.intercept.shape == (len(self.classes),)
            and all(0 <= column < n_analytes for column in form.indicator_columns.tolist())
        )
        if not shapes_fit:
            raise ModelFileError("the model's serving form does not fit its metadata")

    def _check_names(self, analytes: Sequence[str]) -> None:
        columns = self.form.indicator_columns.tolist()
        indicators = [f"missingindicator_{analytes[column]}" for column in columns]
        if list(self.inputs) != [*analytes, *indicators]:
            raise ModelFileError("the model's serving form names other inputs than its metadata")


class DescribedByMetadata:
    """What a model's metadata says about its inputs, class and threshold."""

    metadata: Mapping[str, Any]

    @property
    def analytes(self) -> tuple[str, ...]:
        """Input columns, in order."""
        return tuple(self.metadata["feature_analytes"])

    @property
    def high_risk_class(self) -> str:
        """The class that maps to the biomarker-guided pathway."""
        return str(self.metadata["high_risk_class"])

    @property
    def threshold(self) -> float:
        """Probability of the high-risk class at or above which the pathway is biomarker-guided."""
        return float(self.metadata["threshold"])


class ServedModel(DescribedByMetadata):
    """A model as the service scores it: its metadata and serving form (`model.pipeline.load_model`
    gives the fitted estimator of the same file)."""

    def __init__(self, path: Path, metadata: Mapping[str, Any], serving: ServingForm) -> None:
        self.path = path
        self.metadata = metadata
        self.serving = serving


def load_served_model(path: Path) -> ServedModel | None:
    """The model at `path` in its serving form, or None when its metadata holds none.

    A form whose digest does not match it, the skops file's hash and the analyte list is refused.
    """
    metadata = read_metadata(path, installed_sklearn_version())
    stored = metadata.get(SERVING_FORM_KEY)
    if stored is None:
        return None
    analytes = metadata["feature_analytes"]
    try:
        expected = serving_digest(stored, metadata["content_hash"], analytes)
    except (TypeError, ValueError):  # not JSON values, or NaN/infinity in the arrays
        raise ModelFileError("the model's serving form is unreadable") from None
    if metadata.get(SERVING_DIGEST_KEY) != expected:
        raise ModelFileError(
            "the model's serving form does not match its digest: rebuild or re-save the model"
        )
    serving = ServingForm.from_json(stored, analytes)
    if metadata["high_risk_class"] not in serving.classes:
        raise ModelFileError(
            f"high-risk class {metadata['high_risk_class']!r} not in {list(serving.classes)}"
        )
    return ServedModel(path, metadata, serving)
