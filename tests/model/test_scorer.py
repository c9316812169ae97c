"""ModelScorer: the model on the early window, behind the Scorer interface, rules v2 after it."""

from __future__ import annotations

import dataclasses

import pytest

from fhir_mappings.panel import load_panel
from model.assessment import Endotype, Pathway, Scorer
from model.pipeline import EndotypeModel, load_model, sha256_of
from model.rules_scorer import load_rules_v2_scorer
from model.scorer import DEFAULT_MODEL_PATH, SYNTHETIC_NOTICE, ModelScorer, load_model_scorer

HIGH = {
    "il6": 900.0,
    "ifng": 60.0,
    "cxcl9": 20000.0,
    "ferritin": 5000.0,
    "crp": 150.0,
    "il10": 300.0,
    "sil2r": 10000.0,
    "lymphocytes": 0.4,
    "platelets": 60.0,
    "lactate": 4.0,
}
LOW = {
    "il6": 4.0,
    "ifng": 2.0,
    "cxcl9": 150.0,
    "ferritin": 80.0,
    "crp": 5.0,
    "il10": 3.0,
    "sil2r": 500.0,
    "lymphocytes": 2.5,
    "platelets": 280.0,
    "lactate": 1.0,
}


@pytest.fixture(scope="module")
def scorer() -> ModelScorer:
    return load_model_scorer()


def test_default_scorer_is_a_scorer_labelled_synthetic(scorer):
    assert isinstance(scorer, Scorer)
    assert scorer.info.kind == "model"
    assert scorer.info.synthetic_training_data is True
    assert scorer.info.content_hash == sha256_of(DEFAULT_MODEL_PATH)
    assert "SYNTHETIC" in scorer.info.description


@pytest.mark.parametrize("absent", ["il6", "ferritin", "crp"])
def test_without_a_required_input_the_model_is_not_available_and_the_rules_decide(
    scorer, make_timeline, absent
):
    values = {k: v for k, v in HIGH.items() if k != absent}
    timeline = make_timeline(values)
    assessment = scorer.assess(timeline)
    by_rules = load_rules_v2_scorer().assess(timeline)
    assert assessment.probability is None and assessment.class_probabilities is None
    assert (assessment.pathway, assessment.endotype) == (by_rules.pathway, by_rules.endotype)
    assert absent in assessment.missing
    display = load_panel().analytes[absent].display
    assert assessment.model_note.startswith(f"Model not available: no {display}")


def test_required_marker_only_stale_gives_insufficient_data(scorer, make_timeline):
    values = {k: v for k, v in LOW.items() if k != "crp"}
    assessment = scorer.assess(make_timeline(values, stale={"crp": 5.0}))
    assert assessment.pathway is Pathway.INSUFFICIENT_DATA
    assert "crp" in assessment.missing


def test_hyperinflammatory_profile_maps_to_biomarker_guided_pathway(scorer, make_timeline):
    assessment = scorer.assess(make_timeline(HIGH))
    assert assessment.pathway is Pathway.BIOMARKER_GUIDED
    assert assessment.endotype is Endotype.HYPERINFLAMMATORY
    assert assessment.probability >= scorer.model.threshold


def test_quiet_profile_maps_to_standard_pathway(scorer, make_timeline):
    assessment = scorer.assess(make_timeline(LOW))
    assert assessment.pathway is Pathway.STANDARD
    assert assessment.endotype is not Endotype.HYPERINFLAMMATORY
    assert assessment.probability < scorer.model.threshold


def test_class_probabilities_cover_every_class_and_sum_to_one(scorer, make_timeline):
    assessment = scorer.assess(make_timeline(LOW))
    assert set(assessment.class_probabilities) == set(scorer.model.metadata["class_names"])
    assert sum(assessment.class_probabilities.values()) == pytest.approx(1.0)
    high = assessment.class_probabilities[scorer.model.high_risk_class]
    assert assessment.probability == high


def test_evidence_carries_the_rules_v2_findings(scorer, make_timeline):
    timeline = make_timeline(HIGH)
    rule_evidence = load_rules_v2_scorer().assess(timeline).evidence
    evidence = scorer.assess(timeline).evidence
    assert evidence[: len(rule_evidence)] == rule_evidence
    model_line = evidence[-1]
    assert model_line.id == "model-high-risk-probability"
    assert model_line.met is True
    assert model_line.note == SYNTHETIC_NOTICE


def test_contributions_are_observed_markers_ranked_by_magnitude(scorer, make_timeline):
    values = {k: v for k, v in HIGH.items() if k not in {"cxcl9", "ifng"}}
    assessment = scorer.assess(make_timeline(values))
    names = [name for name, _ in assessment.contributions]
    weights = [abs(weight) for _, weight in assessment.contributions]
    assert 0 < len(names) <= 5
    assert not {"cxcl9", "ifng"} & set(names)
    assert set(names) <= set(values)
    assert weights == sorted(weights, reverse=True)


def test_used_holds_only_observed_model_markers(scorer, make_timeline):
    assessment = scorer.assess(make_timeline({"il6": 10.0, "ferritin": 100.0, "crp": 10.0}))
    assert set(assessment.used) == {"il6", "ferritin", "crp"}
    assert assessment.required == ("il6", "ifng", "cxcl9", "ferritin", "crp")


def test_site_model_on_real_data_carries_no_synthetic_notice(scorer, make_timeline):
    metadata = {**scorer.model.metadata, "synthetic_training_data": False}
    estimator = load_model(DEFAULT_MODEL_PATH).estimator
    site = ModelScorer(EndotypeModel(estimator, metadata), load_rules_v2_scorer())
    assessment = site.assess(make_timeline(HIGH))
    assert site.info.synthetic_training_data is False
    assert SYNTHETIC_NOTICE not in assessment.reasons
    assert SYNTHETIC_NOTICE not in assessment.limitations


def test_default_scorer_limitations_state_synthetic_training(scorer, make_timeline):
    assessment = scorer.assess(make_timeline(LOW))
    assert assessment.limitations[0] == SYNTHETIC_NOTICE
    assert any("Not the published study's model" in line for line in assessment.limitations)
    assert dataclasses.asdict(assessment.scorer)["kind"] == "model"


def test_scorer_probability_equals_the_estimators(scorer, make_timeline):
    import numpy as np

    from model.features import feature_row

    timeline = make_timeline({k: v for k, v in HIGH.items() if k != "sil2r"})
    row = feature_row(timeline, scorer.model.analytes)[np.newaxis, :]
    estimator = load_model(DEFAULT_MODEL_PATH).estimator
    expected = estimator.predict_proba(row)[0]
    classes = [str(c) for c in estimator.classes_]
    assessment = scorer.assess(timeline)
    for name, probability in zip(classes, expected, strict=True):
        assert assessment.class_probabilities[name] == pytest.approx(probability, abs=1e-12)


def test_markers_filled_by_missing_value_handling_are_named(scorer, make_timeline):
    values = {k: v for k, v in LOW.items() if k not in {"cxcl9", "sil2r"}}
    reasons = scorer.assess(make_timeline(values)).reasons
    filled = [line for line in reasons if "missing-value handling" in line]
    assert filled and filled[0].endswith("CXCL9, Soluble IL-2 receptor (sCD25).")


def test_complete_panel_names_no_filled_markers(scorer, make_timeline):
    reasons = scorer.assess(make_timeline(LOW)).reasons
    assert not any("missing-value handling" in line for line in reasons)


# --- the early window and the shared decision -------------------------------------------------


def onset_draw(hours_ago: float, values: dict[str, float]):
    from tests.scoring.children import draw

    return draw(hours_ago, **values)


def test_features_come_from_the_early_window_only(scorer):
    from model.features import feature_row
    from tests.scoring.factories import frame_at, timeline_of

    early = onset_draw(60, LOW)  # anchor 70 h ago: early window 70 → 22 h ago
    later = onset_draw(2, HIGH)
    timeline = timeline_of(*early, *later, frame=frame_at(70))
    row = feature_row(timeline, scorer.model.analytes)
    assert list(row) == [LOW[a] for a in scorer.model.analytes]


def test_the_models_class_stands_for_the_latest_early_sample_and_rules_judge_later_ones(scorer):
    from tests.scoring.factories import frame_at, timeline_of

    early, later = onset_draw(60, HIGH), onset_draw(2, LOW)
    assessment = scorer.assess(timeline_of(*early, *later, frame=frame_at(70)))
    judged = [(s.phase.value, s.level.value, s.judged_by) for s in assessment.persistence.samples]
    assert judged == [("early", "high", "model"), ("later", "not-high", "rules")]
    assert assessment.pathway is Pathway.STANDARD
    assert assessment.persistence.state.value == "resolving"
    assert assessment.model_note.startswith("The model scores the onset window only")


def test_when_the_model_decides_not_high_its_class_is_the_endotype(scorer):
    from tests.scoring.factories import frame_at, timeline_of

    assessment = scorer.assess(timeline_of(*onset_draw(5, LOW), frame=frame_at(20)))
    assert assessment.current.judged_by == "model"
    assert assessment.pathway is Pathway.STANDARD
    assert assessment.endotype is max(
        (Endotype.QUIESCENT, Endotype.INTERMEDIATE),
        key=lambda e: assessment.class_probabilities[e.value],
    )


def test_results_only_after_the_early_window_leave_the_model_unavailable(scorer):
    from tests.scoring.factories import frame_at, timeline_of

    assessment = scorer.assess(timeline_of(*onset_draw(2, HIGH), frame=frame_at(70)))
    assert assessment.probability is None
    assert assessment.pathway is Pathway.BIOMARKER_GUIDED  # the rules' states decide
    assert assessment.current.judged_by == "rules"
