"""Per-sample states of the IL-6/IFN-γ axis, persistence over the samples, per-analyte trends."""

from __future__ import annotations

from datetime import timedelta

import pytest

from model.limits import Limits, RuleSettings
from model.persistence import persistence_of, sample_states
from model.rules_v2 import load_rules_v2
from model.states import PersistenceState, SampleLevel
from model.timeframe import Phase
from tests.scoring.factories import frame_at, result, timeline_of

RULE_SET, _ = load_rules_v2()
LIMITS = Limits(RULE_SET, RuleSettings())
GAP = timedelta(hours=24)
HIGH_IL6, LOW_IL6 = 1500, 3  # ≥ 500 (100 × ULN 5) / within ULN
HIGH_CXCL9, LOW_CXCL9 = 30000, 300  # > 16,100 / within 647


def states(*measurements, anchor=100):
    return sample_states(timeline_of(*measurements, frame=frame_at(anchor)), RULE_SET, LIMITS)


def persistence(*measurements, anchor=100):
    timeline = timeline_of(*measurements, frame=frame_at(anchor))
    return persistence_of(sample_states(timeline, RULE_SET, LIMITS), timeline, GAP)


def sample(hours_ago, il6=None, cxcl9=None, ifng=None):
    """One sampling time's axis results."""
    values = {"il6": il6, "cxcl9": cxcl9, "ifng": ifng}
    return tuple(result(a, v, hours_ago=hours_ago) for a, v in values.items() if v is not None)


# --- the level at one sampling time ---------------------------------------------------------


@pytest.mark.parametrize(
    ("il6", "cxcl9", "ifng", "level"),
    [
        (HIGH_IL6, HIGH_CXCL9, None, SampleLevel.HIGH),
        (HIGH_IL6, None, 200, SampleLevel.HIGH),
        (HIGH_IL6, HIGH_CXCL9, 3, SampleLevel.HIGH),  # normal IFN-γ, CXCL9 marked: axis marked
        (HIGH_IL6, LOW_CXCL9, 3, SampleLevel.PARTIAL),
        (LOW_IL6, HIGH_CXCL9, None, SampleLevel.PARTIAL),
        (LOW_IL6, LOW_CXCL9, None, SampleLevel.NOT_HIGH),
        (LOW_IL6, None, None, SampleLevel.NOT_HIGH),  # one axis known not marked
        (None, None, 3, SampleLevel.NOT_HIGH),  # IFN-γ normal alone: axis not marked
        (HIGH_IL6, None, None, SampleLevel.UNKNOWN),  # the other axis unmeasured
        (None, HIGH_CXCL9, None, SampleLevel.UNKNOWN),
    ],
)
def test_level_of_one_sample_from_its_two_axes(il6, cxcl9, ifng, level):
    (only,) = states(*sample(2, il6=il6, cxcl9=cxcl9, ifng=ifng))
    assert only.level is level


def test_undecidable_comparator_leaves_its_axis_unknown():
    (only,) = states(result("il6", 400, comparator=">"), result("cxcl9", HIGH_CXCL9))
    assert only.axes[0].marked is None and only.level is SampleLevel.UNKNOWN
    (below,) = states(result("il6", 5, comparator="<"), result("cxcl9", HIGH_CXCL9))
    assert below.level is SampleLevel.PARTIAL


def test_each_axis_result_pairs_with_later_samples_for_up_to_24_hours():
    cxcl9 = result("cxcl9", HIGH_CXCL9, hours_ago=30)
    paired, unpaired = result("il6", HIGH_IL6, hours_ago=7), result("il6", HIGH_IL6, hours_ago=5)
    levels = [s.level for s in states(cxcl9, paired, unpaired)]
    assert levels == [SampleLevel.UNKNOWN, SampleLevel.HIGH, SampleLevel.UNKNOWN]


def test_a_later_result_never_pairs_with_an_earlier_sample():
    early_il6, late_cxcl9 = result("il6", HIGH_IL6, hours_ago=10), result("cxcl9", HIGH_CXCL9)
    first, second = states(early_il6, late_cxcl9)
    assert first.level is SampleLevel.UNKNOWN and second.level is SampleLevel.HIGH


def test_samples_carry_their_phase_from_the_look_back_on():
    timeline_states = states(*sample(120, HIGH_IL6, HIGH_CXCL9), *sample(60, LOW_IL6, LOW_CXCL9))
    assert [s.phase for s in timeline_states] == [Phase.PRE_ANCHOR, Phase.EARLY]


# --- persistence -----------------------------------------------------------------------------


def test_persistent_needs_a_high_sample_at_least_24_hours_before_the_high_current_one():
    found = persistence(*sample(30, HIGH_IL6, HIGH_CXCL9), *sample(6, HIGH_IL6, HIGH_CXCL9))
    assert found.state is PersistenceState.PERSISTENT
    assert [s.time for s in found.earlier_high] == [found.samples[0].time]


def test_high_samples_under_24_hours_apart_are_one_sample():
    found = persistence(*sample(20, HIGH_IL6, HIGH_CXCL9), *sample(2, HIGH_IL6, HIGH_CXCL9))
    assert found.state is PersistenceState.SINGLE_SAMPLE


def test_new_when_an_earlier_sample_was_not_high():
    found = persistence(*sample(30, LOW_IL6, LOW_CXCL9), *sample(2, HIGH_IL6, HIGH_CXCL9))
    assert found.state is PersistenceState.NEW
    partial_before = persistence(*sample(8, HIGH_IL6, LOW_CXCL9), *sample(2, HIGH_IL6, HIGH_CXCL9))
    assert partial_before.state is PersistenceState.NEW


def test_resolving_when_high_before_and_not_high_or_partial_now():
    found = persistence(*sample(72, HIGH_IL6, HIGH_CXCL9), *sample(2, LOW_IL6, LOW_CXCL9))
    assert found.state is PersistenceState.RESOLVING
    partial = persistence(*sample(72, HIGH_IL6, HIGH_CXCL9), *sample(2, HIGH_IL6, LOW_CXCL9))
    assert partial.state is PersistenceState.RESOLVING


def test_a_high_sample_in_the_look_back_counts_for_persistence():
    found = persistence(*sample(130, HIGH_IL6, HIGH_CXCL9), *sample(2, HIGH_IL6, HIGH_CXCL9))
    assert found.samples[0].phase is Phase.PRE_ANCHOR
    assert found.state is PersistenceState.PERSISTENT


def test_never_high_needs_two_distinct_samples():
    two = persistence(*sample(40, LOW_IL6, LOW_CXCL9), *sample(2, LOW_IL6, LOW_CXCL9))
    assert two.state is PersistenceState.NEVER_HIGH
    close = persistence(*sample(10, LOW_IL6, LOW_CXCL9), *sample(2, LOW_IL6, LOW_CXCL9))
    assert close.state is PersistenceState.SINGLE_SAMPLE


def test_unknown_without_an_assessable_sample_since_the_anchor():
    assert persistence().state is PersistenceState.UNKNOWN
    only_before = persistence(*sample(110, HIGH_IL6, HIGH_CXCL9))
    assert only_before.state is PersistenceState.UNKNOWN
    unpaired = persistence(*sample(2, il6=HIGH_IL6))
    assert unpaired.state is PersistenceState.UNKNOWN


def test_samples_after_the_current_one_do_not_change_its_persistence():
    found = persistence(
        *sample(60, HIGH_IL6, HIGH_CXCL9), *sample(30, HIGH_IL6, HIGH_CXCL9), *sample(1, il6=900)
    )
    assert found.state is PersistenceState.PERSISTENT
    assert found.samples[-1].level is SampleLevel.UNKNOWN


# --- trends ----------------------------------------------------------------------------------


def test_trend_has_baseline_peak_latest_and_direction():
    values = (
        result("ferritin", 900, hours_ago=110),  # before the anchor: never the baseline
        result("ferritin", 1000, hours_ago=90),
        result("ferritin", 3000, hours_ago=43),
        result("ferritin", 2500, hours_ago=2),
    )
    trend = persistence(*values).trends["ferritin"]
    assert (trend.first.value, trend.baseline.value) == (900, 1000)
    assert (trend.peak.value, trend.latest.value, trend.direction) == (3000, 2500, "rising")


@pytest.mark.parametrize(
    ("first", "latest", "direction"),
    [(100, 80, "falling"), (100, 110, "stable"), (100, 90, "stable"), (0, 5, "rising")],
)
def test_trend_direction_needs_a_change_over_15_percent(first, latest, direction):
    values = (result("crp", first, hours_ago=40), result("crp", latest, hours_ago=2))
    assert persistence(*values).trends["crp"].direction == direction


def test_single_result_has_a_single_trend():
    assert persistence(result("crp", 30)).trends["crp"].direction == "single"
