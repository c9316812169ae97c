"""Upper-limit precedence and "markedly raised" thresholds per result, with their basis."""

from __future__ import annotations

import pytest

from model.limits import Limits, RuleSettings
from model.rules_v2 import load_rules_v2
from model.states import LimitSource, MarkedBasis
from tests.scoring.factories import result

RULE_SET, _ = load_rules_v2()
IFNG_CODE = "http://loinc.org|27415-9"


def limits(**settings) -> Limits:
    return Limits(RULE_SET, RuleSettings(**settings))


SITE = {"analyte": "ifng", "value": 10.4, "unit": "pg/mL", "source": "site lab, Li-hep plasma"}


# --- upper limit precedence -------------------------------------------------------------------


def test_the_results_own_reference_range_comes_first():
    judged = limits(upper_limits=[SITE]).judge(result("ifng", 40, reference_high=124))
    assert (judged.upper_limit.value, judged.upper_limit.source) == (124, LimitSource.LABORATORY)
    assert judged.above_normal is False


def test_a_site_limit_for_the_results_code_beats_one_for_the_analyte():
    coded = SITE | {"code": IFNG_CODE, "value": 9.0, "source": "coded"}
    judged = limits(upper_limits=[SITE, coded]).judge(result("ifng", 40))
    assert (judged.upper_limit.value, judged.upper_limit.text) == (9.0, "coded")
    assert judged.upper_limit.source is LimitSource.SITE


def test_a_site_limit_for_another_code_does_not_apply():
    other = SITE | {"code": "http://example.org/lab|IFNG-X"}
    judged = limits(upper_limits=[other]).judge(result("ifng", 40))
    assert judged.upper_limit.source is LimitSource.PUBLISHED


def test_the_published_default_names_its_source_and_specimen():
    judged = limits().judge(result("cxcl9", 900))
    upper = judged.upper_limit
    assert (upper.value, upper.source) == (647, LimitSource.PUBLISHED)
    assert "EDTA plasma" in upper.text and "CCHMC" in upper.text
    assert judged.above_normal is True


def test_site_limits_are_converted_to_the_canonical_unit():
    in_ng_per_l = SITE | {"value": 10.4, "unit": "ng/L"}
    converted = limits(upper_limits=[in_ng_per_l]).judge(result("ifng", 12)).upper_limit
    assert converted.value == pytest.approx(10.4)
    per_ml = SITE | {"analyte": "cxcl9", "value": 0.647, "unit": "ng/mL"}
    assert limits(upper_limits=[per_ml]).judge(
        result("cxcl9", 10)
    ).upper_limit.value == pytest.approx(647)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"upper_limits": [SITE | {"analyte": "ferritin"}]}, "not an axis analyte"),
        ({"upper_limits": [SITE | {"unit": "U/mL"}]}, "ifng"),
        ({"marked_uln_multiple": {"crp": 10}}, "not an axis analyte"),
        ({"marked_uln_multiple": {"il6": 1}}, "greater than 1"),
    ],
)
def test_unusable_site_settings_are_refused_at_start(settings, message):
    with pytest.raises(ValueError, match=message):
        limits(**settings)


# --- markedly raised ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("analyte", "value", "marked"),
    [
        ("ifng", 100, False),  # "> 100 pg/mL" (Xu 2012)
        ("ifng", 100.1, True),
        ("cxcl9", 16100, False),  # "> 16,100 pg/mL" (adult HLH)
        ("cxcl9", 16101, True),
        ("il6", 499.9, False),  # "≥ 100 × ULN 5"
        ("il6", 500, True),
    ],
)
def test_marked_thresholds_at_and_around_their_cut_offs(analyte, value, marked):
    assert limits().judge(result(analyte, value)).marked is marked


def test_cited_cut_off_carries_its_primary_source():
    threshold = limits().judge(result("ifng", 200)).threshold
    assert threshold.basis is MarkedBasis.CITED
    assert (threshold.value, threshold.operator, threshold.short) == (100, ">", "Xu 2012")
    assert threshold.citation_url == "https://doi.org/10.1016/j.jpeds.2011.11.046"


def test_il6_multiple_follows_the_results_own_upper_limit():
    judged = limits().judge(result("il6", 650, reference_high=7))
    assert judged.threshold.basis is MarkedBasis.SERVICE_MULTIPLE
    assert (judged.threshold.value, judged.threshold.multiple) == (700, 100)
    assert judged.marked is False
    assert limits().judge(result("il6", 700, reference_high=7)).marked is True


def test_a_site_multiple_replaces_the_cited_cut_off_for_that_analyte():
    judged = limits(marked_uln_multiple={"ifng": 20}).judge(result("ifng", 60, reference_high=7))
    threshold = judged.threshold
    assert (threshold.basis, threshold.value, threshold.operator) == (
        MarkedBasis.SITE_MULTIPLE,
        140,
        "≥",
    )
    assert judged.marked is False
    other = limits(marked_uln_multiple={"ifng": 20}).judge(result("cxcl9", 20000))
    assert other.threshold.basis is MarkedBasis.CITED


def test_a_value_within_the_laboratorys_own_limit_is_never_markedly_raised():
    judged = limits().judge(result("ifng", 110, reference_high=124))
    assert judged.above_normal is False and judged.marked is False


@pytest.mark.parametrize(
    ("comparator", "value", "marked"),
    [("<", 5, False), (">", 500, True), (">", 400, None), ("<=", 600, None)],
)
def test_comparators_are_intervals_never_guesses(comparator, value, marked):
    assert limits().judge(result("il6", value, comparator=comparator)).marked is marked
