"""The serving form: a model scored without scikit-learn, exactly as its estimator scores it."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fhir_mappings.panel import load_panel
from model.assessment import Assessment
from model.features import feature_row
from model.model_file import (
    SERVING_DIGEST_KEY,
    SERVING_FORM_KEY,
    ServedModel,
    load_served_model,
    serving_digest,
)
from model.pipeline import (
    EndotypeModel,
    ModelFileError,
    build_classifier,
    load_model,
    metadata_path,
    save_model,
    standardised_inputs,
)
from model.rules_scorer import load_rules_v2_scorer
from model.scorer import DEFAULT_MODEL_PATH, ModelScorer, load_model_scorer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def saved_path(small_model: EndotypeModel, tmp_path: Path) -> Path:
    path = tmp_path / "site.skops"
    save_model(small_model, path)
    return path


def rows_with_gaps(n_features: int, n_rows: int = 5000) -> np.ndarray:
    """Lognormal rows, each with its own share of missing analytes, some all or all but one."""
    rng = np.random.default_rng(7)
    rows = np.exp(rng.normal(2.0, 2.5, size=(n_rows, n_features)))
    share_missing = rng.random((n_rows, 1))
    rows[rng.random(rows.shape) < share_missing] = np.nan
    rows[:50] = np.nan
    for column in range(n_features):
        rows[50 + column, :] = np.nan
        rows[50 + column, column] = 10.0 ** (column % 4)
    rows[100:110] = 0.0
    return rows


def edit_metadata(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    meta_file = metadata_path(path)
    recorded = json.loads(meta_file.read_text())
    change(recorded)
    meta_file.write_text(json.dumps(recorded))


def redigest(recorded: dict[str, Any]) -> None:
    """Recompute the form's digest, as a careless edit of the metadata might."""
    recorded[SERVING_DIGEST_KEY] = serving_digest(
        recorded[SERVING_FORM_KEY], recorded["content_hash"], recorded["feature_analytes"]
    )


def assert_served_like_estimator(served: ServedModel, estimator: Any) -> None:
    rows = rows_with_gaps(len(served.analytes))
    form = served.serving.form
    expected = estimator.predict_proba(rows)
    np.testing.assert_allclose(form.probabilities(rows), expected, rtol=0.0, atol=1e-12)
    assert list(served.serving.classes) == [str(name) for name in estimator.classes_]
    assert (form.probabilities(rows).argmax(axis=1) == expected.argmax(axis=1)).all()
    np.testing.assert_allclose(
        form.standardised(rows), standardised_inputs(estimator, rows), rtol=0.0, atol=1e-12
    )


def without_probabilities(assessment: Assessment) -> Assessment:
    return dataclasses.replace(assessment, probability=None, class_probabilities=None)


def test_saved_serving_form_scores_like_predict_proba_on_rows_with_gaps(saved_path, small_model):
    served = load_served_model(saved_path)
    assert served is not None
    assert_served_like_estimator(served, small_model.estimator)


def test_default_models_serving_form_scores_like_its_estimator():
    served = load_served_model(DEFAULT_MODEL_PATH)
    assert served is not None
    assert_served_like_estimator(served, load_model(DEFAULT_MODEL_PATH).estimator)


def test_served_scorer_gives_the_assessment_of_the_fully_loaded_model(saved_path, make_timeline):
    labels = {key: analyte.display for key, analyte in load_panel().analytes.items()}
    served = load_model_scorer(saved_path)
    loaded = ModelScorer(load_model(saved_path), load_rules_v2_scorer(), labels)
    assert isinstance(served.model, ServedModel)
    assert served.info == loaded.info
    values = {"il6": 900.0, "ifng": 60.0, "cxcl9": 20000.0, "ferritin": 5000.0, "crp": 150.0}
    extra = {"il10": 300.0, "sil2r": 9000.0, "lymphocytes": 0.4, "platelets": 60.0, "lactate": 4}
    for timeline in (
        make_timeline({**values, **extra}),
        make_timeline(values),
        make_timeline({"il6": 4.0, "ifng": 2.0, "ferritin": 80.0, "crp": 5.0, "lactate": 1.0}),
    ):
        assessment, expected_assessment = served.assess(timeline), loaded.assess(timeline)
        # the same decision, reasons and contributions; probabilities to the last digits
        assert without_probabilities(assessment) == without_probabilities(expected_assessment)
        row = feature_row(timeline, served.model.analytes)[np.newaxis, :]
        expected = loaded.model.estimator.predict_proba(row)[0]
        classes = [str(name) for name in loaded.model.estimator.classes_]
        for name, probability in zip(classes, expected, strict=True):
            assert assessment.class_probabilities[name] == pytest.approx(probability, abs=1e-12)


def test_the_served_default_model_is_loaded_without_scikit_learn_or_skops():
    probe = (
        "import sys; from model.scorer import load_model_scorer; s = load_model_scorer(); "
        "print(type(s.model).__name__, 'sklearn' in sys.modules, 'skops' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["ServedModel", "False", "False"]


def test_metadata_without_a_serving_form_falls_back_to_the_full_load(saved_path, make_timeline):
    served_assessment = load_model_scorer(saved_path).assess(make_timeline({"il6": 900.0}))

    def strip(recorded: dict[str, Any]) -> None:
        del recorded[SERVING_FORM_KEY], recorded[SERVING_DIGEST_KEY]

    edit_metadata(saved_path, strip)
    assert load_served_model(saved_path) is None
    scorer = load_model_scorer(saved_path)
    assert isinstance(scorer.model, EndotypeModel)
    assessment = scorer.assess(make_timeline({"il6": 900.0}))
    assert without_probabilities(assessment) == without_probabilities(served_assessment)
    assert assessment.probability == pytest.approx(served_assessment.probability, abs=1e-12)


def test_a_model_whose_form_is_not_exact_is_saved_without_one(tmp_path):
    rng = np.random.default_rng(0)
    rows = np.exp(rng.normal(size=(200, 3)))
    labels = np.where(rows[:, 0] > 1.0, "hyperinflammatory-il6-ifng", "quiescent")
    metadata = {
        "model_id": "two-class",
        "version": "0.0.1",
        "feature_analytes": ["il6", "ifng", "crp"],
        "high_risk_class": "hyperinflammatory-il6-ifng",
        "threshold": 0.5,
        "threshold_criterion": "test",
    }
    path = tmp_path / "two.skops"
    saved = save_model(EndotypeModel(build_classifier().fit(rows, labels), metadata), path)
    assert SERVING_FORM_KEY not in saved.metadata
    assert load_served_model(path) is None
    assert load_model(path).metadata["model_id"] == "two-class"


def _nudge_coefficient(form: dict[str, Any]) -> None:
    form["coef"][0][0] += 1e-9


def _change_beta(form: dict[str, Any]) -> None:
    form["beta"] = 2 * form["beta"]


def _swap_classes(form: dict[str, Any]) -> None:
    form["classes"] = form["classes"][::-1]


def _change_median(form: dict[str, Any]) -> None:
    form["medians"][3] = 0.0


@pytest.mark.parametrize("alter", [_nudge_coefficient, _change_beta, _swap_classes, _change_median])
def test_a_serving_form_altered_after_saving_is_refused(saved_path, alter):
    edit_metadata(saved_path, lambda recorded: alter(recorded[SERVING_FORM_KEY]))
    with pytest.raises(ModelFileError, match="digest"):
        load_served_model(saved_path)
    with pytest.raises(ModelFileError, match="digest"):
        load_model_scorer(saved_path)


def test_a_serving_form_without_its_digest_is_refused(saved_path):
    edit_metadata(saved_path, lambda recorded: recorded.pop(SERVING_DIGEST_KEY))
    with pytest.raises(ModelFileError, match="digest"):
        load_model_scorer(saved_path)


def test_a_serving_form_copied_from_another_model_file_is_refused(saved_path, small_model):
    other = saved_path.with_name("other.skops")
    save_model(small_model, other)  # the same estimator, another file and content hash
    copied = json.loads(metadata_path(saved_path).read_text())

    def take_form(recorded: dict[str, Any]) -> None:
        recorded[SERVING_FORM_KEY] = copied[SERVING_FORM_KEY]
        recorded[SERVING_DIGEST_KEY] = copied[SERVING_DIGEST_KEY]

    assert copied["content_hash"] != json.loads(metadata_path(other).read_text())["content_hash"]
    edit_metadata(other, take_form)
    with pytest.raises(ModelFileError, match="digest"):
        load_served_model(other)


def test_an_altered_skops_file_is_refused_before_its_serving_form_is_used(saved_path):
    saved_path.write_bytes(saved_path.read_bytes() + b"\0")
    with pytest.raises(ModelFileError, match="hash"):
        load_model_scorer(saved_path)


def test_a_serving_form_saved_for_other_analytes_is_refused(saved_path):
    def reorder(recorded: dict[str, Any]) -> None:
        recorded["feature_analytes"] = recorded["feature_analytes"][::-1]
        redigest(recorded)

    edit_metadata(saved_path, reorder)
    with pytest.raises(ModelFileError, match="other inputs"):
        load_served_model(saved_path)


def test_a_serving_form_with_arrays_of_the_wrong_shape_is_refused(saved_path):
    def drop_a_column(recorded: dict[str, Any]) -> None:
        for row in recorded[SERVING_FORM_KEY]["coef"]:
            row.pop()
        redigest(recorded)

    edit_metadata(saved_path, drop_a_column)
    with pytest.raises(ModelFileError, match="does not fit"):
        load_served_model(saved_path)


def test_a_serving_form_without_the_high_risk_class_is_refused(saved_path):
    def rename(recorded: dict[str, Any]) -> None:
        recorded["high_risk_class"] = "group-c"
        redigest(recorded)

    edit_metadata(saved_path, rename)
    with pytest.raises(ModelFileError, match="high-risk class"):
        load_served_model(saved_path)
