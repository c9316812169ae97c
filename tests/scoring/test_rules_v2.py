"""Rules v2: the rule file, every branch of the shared decision, findings, and the five children
both scorers must agree on."""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path

import pydantic
import pytest

from model.assessment import DecisionKind, Endotype, Pathway, Scorer
from model.rule_settings import RuleSettings
from model.rules import RULES_PATH
from model.rules_scorer import load_rules_v2_scorer
from model.rules_v2 import RULES_V2_PATH, RuleSetV2, load_rules_v2
from model.scorer import load_model_scorer
from model.states import PersistenceState
from tests.scoring.children import FIVE_CHILDREN, draw
from tests.scoring.factories import frame_at, result, timeline_of


@pytest.fixture(scope="module")
def rules():
    return load_rules_v2_scorer()


@pytest.fixture(scope="module")
def model():
    return load_model_scorer()


def assess(scorer, *measurements, anchor=30, **frame):
    return scorer.assess(timeline_of(*measurements, frame=frame_at(anchor, **frame)))


def finding(assessment, finding_id):
    return next(f for f in assessment.findings if f.id == finding_id)


# --- the rule file ---------------------------------------------------------------------------


def test_rule_file_loads_with_its_hash_and_is_a_scorer(rules):
    assert isinstance(rules, Scorer)
    assert rules.info.version.startswith("2.")
    assert rules.info.content_hash == hashlib.sha256(RULES_V2_PATH.read_bytes()).hexdigest()


def test_every_marked_cut_off_names_a_primary_source_or_is_a_multiple():
    rule_set, _ = load_rules_v2()
    for analyte, marker in rule_set.markers.items():
        marked = marker.marked
        if marked.value is not None:
            assert marked.source.doi or marked.source.pmid, analyte
            assert marked.population and marked.assay, analyte
        else:
            assert marked.multiple and "not derived from outcome data" in marked.basis
        upper = marker.upper_limit
        assert upper.population and upper.specimen and upper.assay, analyte


def test_no_rule_file_cites_an_unconfirmed_staging_page():
    for path in (RULES_PATH, RULES_V2_PATH):
        assert "staging.scite.ai" not in path.read_text(encoding="utf-8"), path.name


def rule_data() -> dict:
    return tomllib.loads(RULES_V2_PATH.read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "break_it",
    [
        lambda d: d["markers"].pop("cxcl9"),
        lambda d: d["markers"]["ifng"]["marked"]["source"].pop("doi"),
        lambda d: d["markers"]["ifng"]["marked"].update(multiple=10),
        lambda d: d["findings"][0].update(unexpected=True),
        lambda d: d.update(version="1.5.0"),
        lambda d: d["findings"].append(dict(d["findings"][0])),
    ],
)
def test_inconsistent_rule_files_are_refused(break_it):
    data = rule_data()
    break_it(data)
    with pytest.raises(pydantic.ValidationError):
        RuleSetV2.model_validate(data)


def test_a_site_copy_of_the_rule_file_loads_with_its_own_hash(tmp_path: Path):
    copy = tmp_path / "rules.toml"
    copy.write_text(RULES_V2_PATH.read_text(encoding="utf-8").replace('"2.0.0"', '"2.0.1-site"'))
    scorer = load_rules_v2_scorer(RuleSettings(), copy)
    assert scorer.info.version == "2.0.1-site"
    assert scorer.info.content_hash == hashlib.sha256(copy.read_bytes()).hexdigest()


# --- the decision ----------------------------------------------------------------------------


def test_both_axes_marked_is_biomarker_guided_whatever_ferritin_and_crp(rules):
    found = assess(rules, *draw(2, il6=1500, ifng=200, ferritin=90, crp=2))
    assert (found.pathway, found.endotype, found.kind) == (
        Pathway.BIOMARKER_GUIDED,
        Endotype.HYPERINFLAMMATORY,
        DecisionKind.HIGH,
    )


def test_one_axis_marked_is_discordant_never_standard(rules):
    found = assess(rules, *draw(2, il6=1500, ifng=3, cxcl9=300, ferritin=300, crp=30))
    assert (found.pathway, found.endotype, found.kind) == (
        Pathway.INSUFFICIENT_DATA,
        Endotype.UNDETERMINED,
        DecisionKind.DISCORDANT,
    )
    assert found.reasons[0] == "Discordant: IL-6 markedly raised, IFN-γ axis not"
    reverse = assess(rules, *draw(2, il6=20, cxcl9=30000, ferritin=300, crp=30))
    assert reverse.reasons[0] == "Discordant: IFN-γ axis markedly raised, IL-6 not"


@pytest.mark.parametrize(
    ("ferritin", "crp", "endotype"),
    [(80, 3, Endotype.QUIESCENT), (900, 3, Endotype.INTERMEDIATE), (80, 45, Endotype.INTERMEDIATE)],
)
def test_not_high_with_every_input_is_standard(rules, ferritin, crp, endotype):
    found = assess(rules, *draw(2, il6=20, ifng=3, cxcl9=300, ferritin=ferritin, crp=crp))
    assert (found.pathway, found.endotype, found.kind) == (
        Pathway.STANDARD,
        endotype,
        DecisionKind.NOT_HIGH,
    )


def test_normal_ifng_with_cxcl9_unmeasured_decides_but_lists_cxcl9_missing(rules):
    found = assess(rules, *draw(2, il6=3, ifng=2, ferritin=80, crp=3))
    assert found.pathway is Pathway.STANDARD
    assert found.missing == ("cxcl9",)


@pytest.mark.parametrize(
    ("values", "unmet"),
    [
        ({"il6": 3, "ferritin": 80, "crp": 3}, ("IFN-γ or CXCL9",)),
        ({"ifng": 2, "cxcl9": 200, "ferritin": 80, "crp": 3}, ("IL-6",)),
        ({"il6": 3, "ifng": 2, "cxcl9": 200, "ferritin": 80}, ("CRP",)),
    ],
)
def test_not_high_with_an_input_missing_is_insufficient_naming_it(rules, values, unmet):
    found = assess(rules, *draw(2, **values))
    assert (found.pathway, found.kind, found.unmet) == (
        Pathway.INSUFFICIENT_DATA,
        DecisionKind.MISSING_INPUTS,
        unmet,
    )


def test_results_only_from_before_the_anchor_never_make_a_current_state(rules):
    found = assess(rules, *draw(40, il6=1500, cxcl9=30000, ferritin=300, crp=30), anchor=20)
    assert (found.pathway, found.kind) == (Pathway.INSUFFICIENT_DATA, DecisionKind.PRE_ANCHOR_ONLY)
    assert found.persistence.state is PersistenceState.UNKNOWN


def test_a_current_sample_older_than_current_max_age_is_stale(rules):
    results = (*draw(80, il6=3, ifng=2, cxcl9=200), *draw(2, ferritin=80, crp=3))
    found = assess(rules, *results, anchor=100)
    assert (found.pathway, found.kind) == (Pathway.INSUFFICIENT_DATA, DecisionKind.STALE)


def test_a_newer_extreme_value_without_its_partner_is_never_answered_with_standard(rules):
    results = (*draw(40, il6=3, ifng=2, cxcl9=200, ferritin=80, crp=3), *draw(2, il6=5000))
    found = assess(rules, *results, anchor=50)
    assert (found.pathway, found.kind) == (Pathway.INSUFFICIENT_DATA, DecisionKind.UNPAIRED_MARKED)
    assert found.unmet == ("IFN-γ or CXCL9",)


def test_nothing_measured_is_insufficient_naming_both_axes(rules):
    found = assess(rules)
    assert (found.kind, found.unmet) == (DecisionKind.NO_SAMPLE, ("IL-6", "IFN-γ or CXCL9"))
    assert found.missing == ("il6", "ifng", "cxcl9", "ferritin", "crp")


# --- findings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("finding_id", "values", "met"),
    [
        ("hyperferritinaemia", {"ferritin": 500}, False),  # "> 500" as in Fan 2023
        ("hyperferritinaemia", {"ferritin": 501}, True),
        ("mals-ferritin", {"ferritin": 4420}, False),
        ("mals-ferritin", {"ferritin": 4421}, True),
        ("crp-high", {"crp": 40}, True),
        ("crp-high", {"crp": 39.9}, False),
        ("crp-ferritin-high-risk", {"crp": 40.8, "ferritin": 1980}, True),
        ("crp-ferritin-high-risk", {"crp": 40.7, "ferritin": 5000}, False),
        ("crp-ferritin-high-risk", {"crp": 60}, None),
        ("lymphopenia", {"lymphocytes": 0.9}, True),
        ("lymphopenia", {"lymphocytes": 1.0}, False),
        ("thrombocytopenia", {"platelets": 99}, True),
        ("thrombocytopenia", {"platelets": 100}, False),
    ],
)
def test_each_finding_at_its_threshold(rules, finding_id, values, met):
    assert finding(assess(rules, *draw(2, **values)), finding_id).met is met


def test_ferritin_and_crp_findings_never_carry_the_il6_ifng_label(rules):
    found = assess(rules, *draw(2, ferritin=5000, crp=41))
    assert finding(found, "mals-ferritin").met and finding(found, "crp-high").met
    assert found.endotype is Endotype.UNDETERMINED
    assert found.pathway is Pathway.INSUFFICIENT_DATA


def test_findings_read_only_current_values(rules):
    found = assess(rules, result("ferritin", 5000, hours_ago=80), anchor=100)
    assert finding(found, "hyperferritinaemia").met is None


@pytest.mark.parametrize(
    ("first", "latest", "hours", "met"),
    [
        (1000, 3000, 47, True),  # the example: rising over 47 h
        (1000, 900, 24, True),  # 10% fall over exactly 24 h
        (1000, 800, 30, False),  # 20% fall
        (1000, 3000, 23, None),  # too short a span
        (400, 390, 30, None),  # ferritin not raised: the kinetic note does not apply
    ],
)
def test_ferritin_fall_is_evaluable_over_any_span_of_at_least_24_hours(
    rules, first, latest, hours, met
):
    values = (
        result("ferritin", first, hours_ago=hours + 1),
        result("ferritin", latest, hours_ago=1),
    )
    assert finding(assess(rules, *values, anchor=60), "ferritin-fall").met is met


def test_axis_findings_report_the_current_sample(rules):
    found = assess(rules, *draw(2, il6=1500, ifng=3, ferritin=80, crp=3))
    assert (finding(found, "il6-marked").met, finding(found, "ifng-axis-marked").met) == (
        True,
        False,
    )


# --- one answer from both scorers ------------------------------------------------------------

EXPECTED = {
    "study-phenotype": (Pathway.BIOMARKER_GUIDED, PersistenceState.SINGLE_SAMPLE),
    "quiescent": (Pathway.STANDARD, PersistenceState.NEVER_HIGH),
    "ferritin-only": (Pathway.INSUFFICIENT_DATA, PersistenceState.UNKNOWN),
    "persistent": (Pathway.BIOMARKER_GUIDED, PersistenceState.PERSISTENT),
    "resolving": (Pathway.STANDARD, PersistenceState.RESOLVING),
}


@pytest.mark.parametrize("child", sorted(FIVE_CHILDREN))
def test_rules_and_model_agree_on_the_five_children(rules, model, child):
    frame, results = FIVE_CHILDREN[child]()
    timeline = timeline_of(*results, frame=frame)
    by_rules, by_model = rules.assess(timeline), model.assess(timeline)
    assert (by_rules.pathway, by_rules.persistence.state) == EXPECTED[child]
    assert (by_model.pathway, by_model.persistence.state) == EXPECTED[child]
    hyperinflammatory = EXPECTED[child][0] is Pathway.BIOMARKER_GUIDED
    for found in (by_rules, by_model):
        assert (found.endotype is Endotype.HYPERINFLAMMATORY) is hyperinflammatory


def test_the_ferritin_only_child_shows_its_findings_under_both_scorers(rules, model):
    frame, results = FIVE_CHILDREN["ferritin-only"]()
    timeline = timeline_of(*results, frame=frame)
    for found in (rules.assess(timeline), model.assess(timeline)):
        assert finding(found, "hyperferritinaemia").met and finding(found, "mals-ferritin").met
        assert found.endotype is Endotype.UNDETERMINED


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda d: d["findings"][0]["criteria"][0].update(analyte="il18"), "not a panel analyte"),
        (lambda d: d["markers"]["il6"].update(unit="ng/L"), "not in pg/mL"),
        (lambda d: d["ferritin_fall"].update(unit="ug/L"), "not in ng/mL"),
    ],
)
def test_a_rule_file_outside_the_panels_vocabulary_is_refused(break_it, message):
    from fhir_mappings.panel import load_panel

    data = rule_data()
    break_it(data)
    with pytest.raises(ValueError, match=message):
        RuleSetV2.model_validate(data).check_vocabulary(load_panel())


def test_rules_v2_name_analytes_by_their_panel_labels(rules):
    from fhir_mappings.panel import load_panel

    assert rules.rule_set.labels == load_panel().labels
