"""Rule scorer v1 (selectable with rules.version = 1): thresholds, comparators, decision, trend."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import pytest

from fhir_mappings.panel import load_panel
from model.assessment import Endotype, Pathway, Scorer
from model.rules import RULES_PATH, Criterion, compare, evaluate, load_rule_scorer
from tests.scoring.factories import panel_values, result, timeline_of


@pytest.fixture(scope="module")
def scorer():
    return load_rule_scorer()


def rule(scorer, rule_id):
    return next(r for r in scorer.rule_set.rules if r.id == rule_id)


def evidence(assessment, evidence_id):
    return next(e for e in assessment.evidence if e.id == evidence_id)


# --- every single-marker rule at, just below and just above its published threshold --------

SINGLE_RULES = [
    # rule id, analyte, threshold from the brief, operator
    ("ferritin-500", "ferritin", 500, ">="),
    ("crp-40", "crp", 40, ">="),
    ("ferritin-mals", "ferritin", 4420, ">"),
    ("cxcl9-uln", "cxcl9", 647, ">"),
    ("ifng-uln", "ifng", 5, ">"),
    ("il6-uln", "il6", 5, ">"),
    ("lymphocytes-low", "lymphocytes", 1.0, "<"),
    ("platelets-low", "platelets", 100, "<"),
]
EXPECTED = {  # operator -> (at threshold, just below, just above)
    ">=": (True, False, True),
    ">": (False, False, True),
    "<": (False, True, False),
}


@pytest.mark.parametrize(("rule_id", "analyte", "threshold", "operator"), SINGLE_RULES)
def test_single_marker_rule_at_just_below_and_just_above_threshold(
    scorer, rule_id, analyte, threshold, operator
):
    checked = rule(scorer, rule_id)
    step = threshold * 0.001
    values = (threshold, threshold - step, threshold + step)
    outcomes = tuple(evaluate(checked, {analyte: result(analyte, v)}) for v in values)
    assert outcomes == EXPECTED[operator]


@pytest.mark.parametrize(
    ("crp", "ferritin", "expected"),
    [
        (40.8, 1980, True),
        (40.7, 1980, False),
        (40.8, 1979, False),
        (41, 2000, True),
        (12, 5000, False),
    ],
)
def test_crp_ferritin_high_risk_cell_needs_both_at_or_above_cut_offs(
    scorer, crp, ferritin, expected
):
    latest = {"crp": result("crp", crp), "ferritin": result("ferritin", ferritin)}
    assert evaluate(rule(scorer, "crp-ferritin-high-risk"), latest) is expected


def test_high_risk_cell_with_one_input_missing_is_undecided_unless_the_other_fails(scorer):
    cell = rule(scorer, "crp-ferritin-high-risk")
    assert evaluate(cell, {"crp": result("crp", 60)}) is None
    assert evaluate(cell, {"ferritin": result("ferritin", 900)}) is False


def test_rule_with_its_marker_missing_is_undecided(scorer):
    assert evaluate(rule(scorer, "cxcl9-uln"), {}) is None


# --- comparators ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule_id", "analyte", "comparator", "value", "expected"),
    [
        ("il6-uln", "il6", "<", 5, False),  # "<5" is within the ULN
        ("il6-uln", "il6", "<", 3, False),
        ("il6-uln", "il6", "<", 50, None),
        ("il6-uln", "il6", "<=", 5, False),
        ("ferritin-500", "ferritin", "<", 500, False),  # "<" never satisfies ">="
        ("ferritin-500", "ferritin", "<", 600, None),
        ("ferritin-500", "ferritin", "<=", 500, None),
        ("ferritin-500", "ferritin", ">=", 500, True),
        ("ferritin-500", "ferritin", ">", 400, None),
        ("ferritin-mals", "ferritin", ">", 4420, True),  # ">" at the threshold satisfies ">"
        ("ferritin-mals", "ferritin", ">", 5000, True),
        ("ferritin-mals", "ferritin", ">=", 4420, None),
        ("ferritin-mals", "ferritin", ">=", 4421, True),
        ("ferritin-mals", "ferritin", ">", 4000, None),
        ("crp-40", "crp", ">", 40, True),
        ("lymphocytes-low", "lymphocytes", "<", 0.5, True),
        ("lymphocytes-low", "lymphocytes", "<", 1.0, True),
        ("lymphocytes-low", "lymphocytes", "<", 2.0, None),
        ("lymphocytes-low", "lymphocytes", ">", 1.0, False),
        ("lymphocytes-low", "lymphocytes", ">", 0.5, None),
        ("platelets-low", "platelets", ">=", 100, False),
        ("cxcl9-uln", "cxcl9", "ad", 900, None),  # FHIR "sufficient to achieve": undecidable
    ],
)
def test_comparator_is_honoured(scorer, rule_id, analyte, comparator, value, expected):
    latest = {analyte: result(analyte, value, comparator=comparator)}
    assert evaluate(rule(scorer, rule_id), latest) is expected


def test_less_than_value_satisfies_at_most_threshold():
    at_most_five = Criterion(analyte="il6", operator="<=", threshold=5, unit="pg/mL")
    assert compare(result("il6", 5, comparator="<"), at_most_five) is True
    assert compare(result("il6", 5, comparator="<="), at_most_five) is True
    assert compare(result("il6", 5, comparator=">"), at_most_five) is False
    assert compare(result("il6", 6, comparator="<"), at_most_five) is None


def test_result_in_another_unit_is_never_compared():
    criterion = Criterion(analyte="crp", operator=">=", threshold=40, unit="mg/L")
    assert compare(result("crp", 5, unit="mg/dL"), criterion) is None


def test_nan_value_is_undecided():
    criterion = Criterion(analyte="crp", operator=">=", threshold=40, unit="mg/L")
    assert compare(result("crp", float("nan")), criterion) is None


# --- the decision ---------------------------------------------------------------------------


def test_crp_ferritin_cell_alone_gives_hyperinflammatory_biomarker_guided(scorer):
    assessment = scorer.assess(timeline_of(*panel_values(il6=80, ferritin=2500, crp=60)))
    assert assessment.pathway is Pathway.BIOMARKER_GUIDED
    assert assessment.endotype is Endotype.HYPERINFLAMMATORY
    assert evidence(assessment, "crp-ferritin-high-risk").met is True
    assert any("CRP/ferritin high-risk cell" in reason for reason in assessment.reasons)


def test_mals_alone_without_ifng_axis_gives_hyperinflammatory(scorer):
    assessment = scorer.assess(timeline_of(*panel_values(il6=80, ferritin=5000, crp=12)))
    assert assessment.pathway is Pathway.BIOMARKER_GUIDED
    assert evidence(assessment, "ferritin-mals").met is True
    assert any("MALS" in reason for reason in assessment.reasons)


@pytest.mark.parametrize(
    "values",
    [
        {"il6": 40, "ferritin": 600, "crp": 10, "cxcl9": 900},
        {"il6": 40, "ferritin": 200, "crp": 45, "ifng": 12},
    ],
)
def test_entry_criterion_with_elevated_ifng_axis_gives_hyperinflammatory(scorer, values):
    assessment = scorer.assess(timeline_of(*panel_values(**values)))
    assert assessment.pathway is Pathway.BIOMARKER_GUIDED
    assert assessment.endotype is Endotype.HYPERINFLAMMATORY
    assert assessment.missing  # ifng or cxcl9, lymphocytes, platelets still listed


def test_positive_finding_is_reported_with_required_markers_missing_and_lists_them(scorer):
    assessment = scorer.assess(timeline_of(*panel_values(ferritin=800, cxcl9=1200)))
    assert assessment.pathway is Pathway.BIOMARKER_GUIDED
    assert assessment.missing[:2] == ("il6", "crp")
    assert any(r.startswith("Still missing:") and "IL-6" in r for r in assessment.reasons)


def test_required_marker_missing_gives_insufficient_data_naming_it(scorer):
    assessment = scorer.assess(timeline_of(*panel_values(ferritin=300, crp=10, cxcl9=100)))
    assert assessment.pathway is Pathway.INSUFFICIENT_DATA
    assert assessment.endotype is Endotype.UNDETERMINED
    assert "il6" in assessment.missing
    assert any("no result in the last 48 h: IL-6" in reason for reason in assessment.reasons)


def test_required_marker_only_stale_gives_insufficient_data(scorer):
    timeline = timeline_of(
        result("il6", 3, hours_ago=70), *panel_values(ferritin=100, crp=2, cxcl9=100, ifng=1)
    )
    assessment = scorer.assess(timeline)
    assert assessment.pathway is Pathway.INSUFFICIENT_DATA
    assert "il6" in assessment.missing
    assert any("older than 48 h: IL-6" in reason for reason in assessment.reasons)


def test_preliminary_required_marker_is_not_scored(scorer):
    timeline = timeline_of(
        result("il6", 3, status="preliminary"), *panel_values(ferritin=100, crp=2, cxcl9=100)
    )
    assessment = scorer.assess(timeline)
    assert assessment.pathway is Pathway.INSUFFICIENT_DATA
    assert "il6" in assessment.missing


def test_entry_criterion_without_ifng_axis_gives_insufficient_data(scorer):
    assessment = scorer.assess(timeline_of(*panel_values(il6=20, ferritin=900, crp=10)))
    assert assessment.pathway is Pathway.INSUFFICIENT_DATA
    assert assessment.endotype is Endotype.UNDETERMINED
    assert any(
        "IFN-γ axis" in reason and "not available" in reason for reason in assessment.reasons
    )
    assert {"cxcl9", "ifng"} <= set(assessment.missing)


def test_entry_criterion_with_undecidable_ifng_axis_gives_insufficient_data(scorer):
    timeline = timeline_of(
        *panel_values(il6=20, ferritin=900, crp=10), result("cxcl9", 1000, comparator="<")
    )
    assessment = scorer.assess(timeline)
    assert assessment.pathway is Pathway.INSUFFICIENT_DATA
    assert any("cannot be compared" in reason for reason in assessment.reasons)


def test_undecidable_axis_marker_blocks_normal_even_with_the_other_normal(scorer):
    timeline = timeline_of(
        *panel_values(il6=20, ferritin=900, crp=10, cxcl9=300),
        result("ifng", 10, comparator="<"),
    )
    assert scorer.assess(timeline).pathway is Pathway.INSUFFICIENT_DATA


def test_entry_criterion_with_normal_ifng_axis_gives_intermediate_standard(scorer):
    assessment = scorer.assess(timeline_of(*panel_values(il6=20, ferritin=900, crp=10, cxcl9=300)))
    assert assessment.pathway is Pathway.STANDARD
    assert assessment.endotype is Endotype.INTERMEDIATE


def test_no_entry_criterion_gives_quiescent_standard(scorer):
    assessment = scorer.assess(timeline_of(*panel_values(il6=3, ferritin=120, crp=8)))
    assert assessment.pathway is Pathway.STANDARD
    assert assessment.endotype is Endotype.QUIESCENT
    assert any(reason.startswith("Not met:") for reason in assessment.reasons)


def test_elevated_cxcl9_without_entry_criterion_stays_quiescent_and_says_so(scorer):
    assessment = scorer.assess(timeline_of(*panel_values(il6=3, ferritin=120, crp=8, cxcl9=900)))
    assert assessment.endotype is Endotype.QUIESCENT
    assert any("CXCL9" in reason and "context" in reason for reason in assessment.reasons)


def test_entry_rule_that_cannot_be_decided_gives_insufficient_data(scorer):
    timeline = timeline_of(
        *panel_values(il6=3, crp=8, cxcl9=100), result("ferritin", 400, comparator=">")
    )
    assessment = scorer.assess(timeline)
    assert assessment.pathway is Pathway.INSUFFICIENT_DATA
    assert any("Cannot be decided" in reason for reason in assessment.reasons)


def test_below_detection_limit_inflammation_markers_give_quiescent(scorer):
    timeline = timeline_of(
        result("il6", 5, comparator="<"),
        result("ferritin", 20, comparator="<"),
        result("crp", 5, comparator="<"),
    )
    assert scorer.assess(timeline).endotype is Endotype.QUIESCENT


def test_context_rules_never_change_the_pathway(scorer):
    base = panel_values(il6=20, ferritin=900, crp=10, cxcl9=300)
    plain = scorer.assess(timeline_of(*base))
    with_context = scorer.assess(timeline_of(*base, *panel_values(lymphocytes=0.3, platelets=40)))
    assert evidence(with_context, "lymphocytes-low").met is True
    assert evidence(with_context, "platelets-low").met is True
    assert (with_context.pathway, with_context.endotype) == (plain.pathway, plain.endotype)


def test_rules_read_the_latest_counted_result(scorer):
    timeline = timeline_of(
        result("ferritin", 5000, hours_ago=40), *panel_values(il6=3, ferritin=100, crp=8)
    )
    assessment = scorer.assess(timeline)
    assert evidence(assessment, "ferritin-mals").met is False
    assert assessment.pathway is Pathway.STANDARD


def test_used_missing_and_required_describe_the_inputs(scorer):
    base = panel_values(il6=20, ferritin=900, crp=10, cxcl9=300, lactate=1.1)
    assessment = scorer.assess(timeline_of(*base))
    assert set(assessment.used) == {"il6", "ferritin", "crp", "cxcl9"}
    assert assessment.missing == ("ifng", "lymphocytes", "platelets")
    assert assessment.required == ("il6", "ferritin", "crp")


def test_every_evidence_line_carries_a_citation_and_https_url(scorer):
    assessment = scorer.assess(timeline_of(*panel_values(il6=20, ferritin=900, crp=10)))
    assert len(assessment.evidence) == len(scorer.rule_set.rules) + 1
    for line in assessment.evidence:
        assert line.citation and line.citation_url.startswith("https://"), line.id


def test_limitations_state_validation_provenance_and_prognostic_scope(scorer):
    text = " ".join(scorer.assess(timeline_of()).limitations).lower()
    assert "not validated at this institution" in text
    assert "published cohorts, several adult" in text
    assert "not shown to identify who benefits from any therapy" in text


def test_reported_il6_rule_is_marked_reported_only(scorer):
    assert "reported only" in rule(scorer, "il6-uln").note
    assert "adult threshold" in rule(scorer, "ferritin-mals").note


# --- the ferritin trend ---------------------------------------------------------------------

LONG = timedelta(hours=96)


def test_ferritin_trend_with_single_result_is_undecided(scorer):
    assessment = scorer.assess(timeline_of(*panel_values(ferritin=900)))
    assert evidence(assessment, "ferritin-kinetics").met is None


@pytest.mark.parametrize(("latest", "expected"), [(900, True), (860, True), (850, False)])
def test_ferritin_fall_under_15_percent_by_day_3_meets_kinetic_note(scorer, latest, expected):
    timeline = timeline_of(
        result("ferritin", 1000, hours_ago=60), result("ferritin", latest), window=LONG
    )
    line = evidence(scorer.assess(timeline), "ferritin-kinetics")
    assert line.met is expected
    assert f"1000 → {latest} ng/mL" in line.description


def test_ferritin_trend_over_less_than_two_days_is_undecided(scorer):
    timeline = timeline_of(result("ferritin", 1000, hours_ago=30), result("ferritin", 1000))
    assert evidence(scorer.assess(timeline), "ferritin-kinetics").met is None


def test_ferritin_trend_never_decides_the_pathway(scorer):
    others = panel_values(il6=20, crp=10, cxcl9=300)
    rising = timeline_of(
        result("ferritin", 600, hours_ago=60), result("ferritin", 900), *others, window=LONG
    )
    falling = timeline_of(
        result("ferritin", 2000, hours_ago=60), result("ferritin", 900), *others, window=LONG
    )
    one, two = scorer.assess(rising), scorer.assess(falling)
    assert evidence(one, "ferritin-kinetics").met is not evidence(two, "ferritin-kinetics").met
    assert (one.pathway, one.endotype) == (two.pathway, two.endotype)


# --- the scorer and its rule file -----------------------------------------------------------


def test_scorer_info_identifies_rules_and_hashes_the_file(scorer):
    info = scorer.info
    assert (info.id, info.version, info.kind) == ("picu-endotype-rules", "1.0.1", "rules")
    assert info.content_hash == hashlib.sha256(RULES_PATH.read_bytes()).hexdigest()
    assert info.synthetic_training_data is False
    assert isinstance(scorer, Scorer)


def test_assessment_carries_the_scorer_info(scorer):
    assert scorer.assess(timeline_of()).scorer == scorer.info


def _edited_rules(tmp_path: Path, old: str, new: str, count: int = -1) -> Path:
    """A copy of the packaged rule file with `old` replaced by `new`."""
    text = RULES_PATH.read_text(encoding="utf-8")
    assert old in text
    edited = tmp_path / "rules.toml"
    edited.write_text(text.replace(old, new, count), encoding="utf-8")
    return edited


def test_edited_rule_file_has_a_different_hash_and_threshold(tmp_path: Path):
    custom = load_rule_scorer(_edited_rules(tmp_path, "threshold = 500,", "threshold = 600,"))
    assert custom.info.content_hash != load_rule_scorer().info.content_hash
    assert evaluate(rule(custom, "ferritin-500"), {"ferritin": result("ferritin", 550)}) is False


@pytest.mark.parametrize(
    ("old", "new", "refusal"),
    [
        ('role = "ifng-axis"', 'role = "context"', "ifng-axis"),  # no IFN-γ-axis rule left
        ("https://doi.org", "http://doi.org", "citation_url"),  # citations must be https
        ('threshold = 40, unit = "mg/L"', 'threshold = 4, unit = "mg/dL"', "crp in mg/dL"),
        ('analyte = "platelets"', 'analyte = "tnf"', "'tnf' is not a panel analyte"),
    ],
)
def test_a_rule_file_breaking_its_contract_is_refused(
    tmp_path: Path, old: str, new: str, refusal: str
) -> None:
    with pytest.raises(ValueError, match=refusal):
        load_rule_scorer(_edited_rules(tmp_path, old, new))


def test_rule_units_are_the_panel_canonical_units(scorer):
    panel = load_panel()
    for checked in scorer.rule_set.rules:
        for criterion in checked.criteria:
            assert criterion.unit == panel.analytes[criterion.analyte].unit, checked.id
    assert scorer.rule_set.trend.unit == panel.analytes[scorer.rule_set.trend.analyte].unit


def test_reasons_name_analytes_by_their_panel_label(scorer):
    assessment = scorer.assess(timeline_of(*panel_values(ferritin=900, crp=10)))
    assert any(load_panel().analytes["il6"].label in reason for reason in assessment.reasons)
    assert "Required, no result in the last 48 h: IL-6." in assessment.reasons
