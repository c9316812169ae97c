"""Model files: skops with trusted types only, hash and scikit-learn version checked on load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import skops.io as sio
from sklearn.ensemble import RandomForestClassifier

from model.pipeline import (
    ModelFileError,
    base_pipeline,
    class_coefficients,
    load_model,
    metadata_path,
    save_model,
    sha256_of,
    standardised_inputs,
    transformed_names,
)


@pytest.fixture
def saved_model(small_model, tmp_path):
    return save_model(small_model, tmp_path / "site.skops"), tmp_path / "site.skops"


def test_saved_model_reloads_with_identical_probabilities(saved_model, small_model):
    _, path = saved_model
    rows = np.array([[50.0, np.nan, np.nan, 900.0, 60.0, 30.0, np.nan, 0.8, 150.0, 2.0]])
    loaded = load_model(path)
    assert np.array_equal(
        loaded.estimator.predict_proba(rows), small_model.estimator.predict_proba(rows)
    )


def test_metadata_records_content_hash_and_sklearn_version(saved_model):
    model, path = saved_model
    recorded = json.loads(metadata_path(path).read_text())
    assert recorded["content_hash"] == sha256_of(path)
    assert recorded["sklearn_version"] == model.metadata["sklearn_version"]


def test_altered_model_file_is_refused(saved_model):
    _, path = saved_model
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(ModelFileError, match="hash"):
        load_model(path)


def test_model_from_other_sklearn_version_is_refused(saved_model):
    _, path = saved_model
    meta_file = metadata_path(path)
    recorded = json.loads(meta_file.read_text())
    recorded["sklearn_version"] = "0.24.2"
    meta_file.write_text(json.dumps(recorded))
    with pytest.raises(ModelFileError, match="0.24.2"):
        load_model(path)


def test_model_file_with_untrusted_type_is_refused(saved_model):
    _, path = saved_model
    forest = RandomForestClassifier(n_estimators=2, random_state=0).fit([[0], [1]], [0, 1])
    sio.dump(forest, path)
    meta_file = metadata_path(path)
    recorded = json.loads(meta_file.read_text())
    recorded["content_hash"] = sha256_of(path)
    meta_file.write_text(json.dumps(recorded))
    with pytest.raises(sio.exceptions.UntrustedTypesFoundException):
        load_model(path)


def test_missing_metadata_is_refused(saved_model):
    _, path = saved_model
    metadata_path(path).unlink()
    with pytest.raises(ModelFileError, match="not found"):
        load_model(path)


def test_coefficient_terms_add_up_to_the_pipeline_decision_value(small_model):
    rows = np.array([[900.0, 20.0, 5000.0, 3000.0, 120.0, 200.0, 9000.0, 0.4, 60.0, 4.0]])
    high = small_model.high_risk_class
    terms = class_coefficients(small_model.estimator, high) * standardised_inputs(
        small_model.estimator, rows
    )
    pipeline = base_pipeline(small_model.estimator)
    logreg = pipeline[-1]
    index = [str(c) for c in small_model.estimator.classes_].index(high)
    expected = pipeline.decision_function(rows)[0, index]
    assert terms.sum() + logreg.intercept_[index] == pytest.approx(expected)


def test_transformed_names_start_with_the_analytes(small_model):
    names = transformed_names(small_model.estimator, small_model.analytes)
    assert names[: len(small_model.analytes)] == list(small_model.analytes)
    assert all(name.startswith("missingindicator_") for name in names[len(small_model.analytes) :])


def test_linear_form_reproduces_predict_proba_on_cohort_rows(small_model, small_cohort):
    from model.cohort import cohort_timelines
    from model.features import feature_matrix
    from model.pipeline import linear_form

    rows = feature_matrix(
        cohort_timelines(small_cohort, progress=False)[:200], small_model.analytes
    )
    form = linear_form(small_model.estimator, len(small_model.analytes))
    assert form is not None
    np.testing.assert_allclose(
        form.probabilities(rows), small_model.estimator.predict_proba(rows), atol=1e-12
    )
    np.testing.assert_allclose(
        form.standardised(rows), standardised_inputs(small_model.estimator, rows), atol=1e-12
    )


def test_linear_form_is_not_used_for_a_two_class_model():
    from model.pipeline import build_classifier, linear_form

    rng = np.random.default_rng(0)
    rows = np.exp(rng.normal(size=(200, 3)))
    labels = np.where(rows[:, 0] > 1.0, "hyperinflammatory-il6-ifng", "quiescent")
    estimator = build_classifier().fit(rows, labels)
    assert linear_form(estimator, 3) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"high_risk_class": "group-c"}, "high-risk class"),
        ({"feature_analytes": ["il6", "crp"]}, "feature list"),
        ({"threshold": 1.5}, "threshold"),
    ],
)
def test_metadata_inconsistent_with_the_model_is_refused(saved_model, change, message):
    _, path = saved_model
    meta_file = metadata_path(path)
    meta_file.write_text(json.dumps({**json.loads(meta_file.read_text()), **change}))
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


def test_metadata_without_a_threshold_is_refused(saved_model):
    _, path = saved_model
    meta_file = metadata_path(path)
    recorded = json.loads(meta_file.read_text())
    del recorded["threshold"]
    meta_file.write_text(json.dumps(recorded))
    with pytest.raises(ModelFileError, match="threshold"):
        load_model(path)
