"""The packaged default model is reproducible from one command."""

from __future__ import annotations

import numpy as np
import pytest

from model.build_default import COHORT_SEED, COHORT_SIZE, build_default_model
from model.pipeline import class_coefficients, load_model, transformed_names
from model.scorer import DEFAULT_MODEL_PATH


@pytest.mark.slow
def test_rebuilding_the_default_model_gives_the_shipped_coefficients(tmp_path):
    shipped = load_model(DEFAULT_MODEL_PATH)
    rebuilt = build_default_model(tmp_path / "default.skops", n=COHORT_SIZE, seed=COHORT_SEED)
    assert transformed_names(rebuilt.estimator, rebuilt.analytes) == transformed_names(
        shipped.estimator, shipped.analytes
    )
    for name in shipped.metadata["class_names"]:
        np.testing.assert_allclose(
            class_coefficients(rebuilt.estimator, name),
            class_coefficients(shipped.estimator, name),
            rtol=1e-9,
            atol=1e-12,
            err_msg="shipped default model is out of date: run `python -m model.build_default`",
        )
    # the threshold is a predicted probability: the same last-digit float tolerance as above
    assert rebuilt.threshold == pytest.approx(shipped.threshold, rel=1e-9, abs=1e-12)


def test_shipped_default_model_says_it_is_synthetic():
    metadata = load_model(DEFAULT_MODEL_PATH).metadata
    assert metadata["synthetic_training_data"] is True
    assert metadata["training_cohort"]["synthetic"] is True
    assert f"seed={COHORT_SEED}" in metadata["training_cohort"]["generator"]
