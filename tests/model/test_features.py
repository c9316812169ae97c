"""Feature rows come from the timeline's latest counted results, nothing else."""

from __future__ import annotations

import numpy as np

from fhir_mappings.panel import load_panel
from model.features import FEATURE_ANALYTES, feature_matrix, feature_row, missing_analytes
from model.pipeline import load_model
from model.scorer import DEFAULT_MODEL_PATH


def test_feature_row_takes_latest_value_of_each_analyte(make_timeline):
    timeline = make_timeline({"ferritin": [300.0, 900.0], "crp": [80.0, 20.0]})
    row = feature_row(timeline, ("ferritin", "crp"))
    assert row.tolist() == [900.0, 20.0]


def test_feature_row_marks_absent_analyte_as_nan(make_timeline):
    row = feature_row(make_timeline({"il6": 40.0}), ("il6", "cxcl9"))
    assert row[0] == 40.0
    assert np.isnan(row[1])


def test_stale_result_is_not_a_feature(make_timeline):
    timeline = make_timeline({"il6": 40.0}, stale={"ferritin": 2000.0})
    assert np.isnan(feature_row(timeline, ("ferritin",))[0])
    assert missing_analytes(timeline, ("il6", "ferritin")) == ("ferritin",)


def test_feature_matrix_rows_follow_timeline_order(make_timeline):
    first, second = make_timeline({"il6": 1.0}), make_timeline({"il6": 2.0})
    matrix = feature_matrix([first, second], FEATURE_ANALYTES)
    assert matrix.shape == (2, len(FEATURE_ANALYTES))
    assert matrix[:, FEATURE_ANALYTES.index("il6")].tolist() == [1.0, 2.0]


def test_feature_matrix_of_no_timelines_has_feature_width():
    assert feature_matrix([], ("il6", "crp")).shape == (0, 2)


def test_feature_list_is_the_panel_model_inputs_and_the_default_model_columns() -> None:
    assert load_panel().model_features == FEATURE_ANALYTES
    assert load_model(DEFAULT_MODEL_PATH).analytes == FEATURE_ANALYTES
