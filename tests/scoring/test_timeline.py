"""build_timeline: phases around the anchor, look-back, older results, preliminary, in-future."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fhir_mappings.measurement import Exclusion, ExclusionReason, Extraction
from model.assessment import Anchor, AnchorSource, Phase, TimeFrame
from model.timeline import CLOCK_TOLERANCE, build_recent_timeline, build_timeline
from tests.scoring.factories import NOW, WINDOW, frame_at, result, timeline_of

# anchor 60 h ago: early window 60 h → 12 h ago, later after that, look-back 7 d before the anchor
FRAME = frame_at(60)


def test_counted_results_are_ordered_oldest_first_whatever_the_input_order():
    late, early, middle = (
        result("ferritin", 900, hours_ago=1),
        result("ferritin", 600, hours_ago=40),
        result("ferritin", 750, hours_ago=20),
    )
    series = timeline_of(late, early, middle, frame=FRAME).series["ferritin"]
    assert series.values == (early, middle, late)
    assert series.first is early and series.latest is late


def test_each_result_is_tagged_with_its_phase_around_the_anchor():
    before = result("il6", 900, hours_ago=80)
    at_anchor = result("il6", 800, hours_ago=60)
    window_end = result("il6", 700, hours_ago=12)
    after = result("il6", 600, hours_ago=11.99)
    series = timeline_of(after, window_end, at_anchor, before, frame=FRAME).series["il6"]
    assert series.phases == (Phase.PRE_ANCHOR, Phase.EARLY, Phase.EARLY, Phase.LATER)
    assert series.since_anchor == (at_anchor, window_end, after)


def test_baseline_is_the_first_early_result_never_a_pre_anchor_one():
    before, early = result("il6", 900, hours_ago=70), result("il6", 300, hours_ago=50)
    series = timeline_of(before, early, frame=FRAME).series["il6"]
    assert series.baseline is early
    only_before = timeline_of(before, frame=FRAME).series["il6"]
    assert only_before.baseline is None


def test_results_only_after_the_early_window_have_no_baseline_but_are_counted():
    late = result("crp", 50, hours_ago=2)
    series = timeline_of(late, frame=FRAME).series["crp"]
    assert series.baseline is None and series.latest is late


def test_look_back_start_is_counted_and_a_result_just_older_is_kept_as_older_only():
    edge = result("crp", 50, hours_ago=60 + 7 * 24)
    too_old = result("crp", 80, hours_ago=60 + 7 * 24 + 0.01)
    timeline = timeline_of(edge, too_old, frame=FRAME)
    assert timeline.series["crp"].values == (edge,)
    assert timeline.older == {}
    assert timeline_of(too_old, frame=FRAME).older == {"crp": too_old}


def test_older_keeps_the_most_recent_of_results_older_than_the_look_back():
    oldest, old = result("il6", 12, hours_ago=400), result("il6", 30, hours_ago=300)
    timeline = timeline_of(oldest, old, frame=FRAME)
    assert "il6" not in timeline.series
    assert timeline.older == {"il6": old}


def test_preliminary_result_in_the_look_back_is_kept_apart_and_never_in_the_series():
    preliminary = result("cxcl9", 900, status="preliminary", hours_ago=100)
    final = result("cxcl9", 500, hours_ago=30)
    timeline = timeline_of(preliminary, final, frame=FRAME)
    assert timeline.preliminary == (preliminary,)
    assert timeline.series["cxcl9"].values == (final,)


def test_preliminary_result_older_than_the_look_back_is_dropped():
    timeline = timeline_of(result("cxcl9", 900, hours_ago=400, status="preliminary"), frame=FRAME)
    assert timeline.preliminary == () and timeline.series == {} and timeline.older == {}


def test_result_after_now_plus_tolerance_becomes_in_future_exclusion():
    future = result("ferritin", 700, hours_ago=-0.5)
    timeline = timeline_of(future, frame=FRAME)
    assert timeline.series == {}
    (exclusion,) = timeline.exclusions
    assert exclusion.reason is ExclusionReason.IN_FUTURE
    assert (exclusion.analyte, exclusion.code, exclusion.time) == (
        "ferritin",
        "2276-4",
        future.time,
    )
    assert exclusion.observation_id == future.observation_id
    assert exclusion.detail == "effective time is 30 min after the assessment time"


def test_result_within_clock_tolerance_after_now_is_counted():
    skewed = result("ferritin", 700, hours_ago=-(CLOCK_TOLERANCE / timedelta(hours=1)) + 0.01)
    timeline = timeline_of(skewed, frame=FRAME)
    assert timeline.series["ferritin"].latest is skewed
    assert timeline.exclusions == ()


def test_extraction_exclusions_are_carried_through_before_new_ones():
    carried = Exclusion(reason=ExclusionReason.ENTERED_IN_ERROR, detail="entered in error")
    timeline = timeline_of(result("crp", 5, hours_ago=-2), exclusions=(carried,), frame=FRAME)
    assert timeline.exclusions[0] is carried
    assert [e.reason for e in timeline.exclusions] == [
        ExclusionReason.ENTERED_IN_ERROR,
        ExclusionReason.IN_FUTURE,
    ]


def test_result_with_unknown_status_is_excluded_not_scored():
    timeline = timeline_of(result("crp", 55, status="registered"), frame=FRAME)
    assert timeline.series == {}
    assert [e.reason for e in timeline.exclusions] == [ExclusionReason.UNSUPPORTED_STATUS]


def test_amended_and_corrected_results_count():
    amended, corrected = result("il6", 8, status="amended"), result("crp", 9, status="corrected")
    assert set(timeline_of(amended, corrected, frame=FRAME).series) == {"il6", "crp"}


def test_timeline_exposes_its_frame():
    timeline = timeline_of(frame=FRAME)
    assert (timeline.now, timeline.window, timeline.anchor) == (NOW, WINDOW, FRAME.anchor)


def test_identical_result_received_twice_is_kept_once():
    reading = result("ferritin", 900, observation_id="obs-1")
    timeline = timeline_of(reading, result("ferritin", 900, observation_id="obs-1"), frame=FRAME)
    assert timeline.series["ferritin"].values == (reading,)


def test_distinct_results_at_the_same_time_are_both_kept_in_id_order():
    second = result("crp", 50, observation_id="obs-b")
    first = result("crp", 45, observation_id="obs-a")
    assert timeline_of(second, first, frame=FRAME).series["crp"].values == (first, second)


def test_preliminary_result_dated_in_the_future_is_excluded_not_shown():
    timeline = timeline_of(result("il6", 40, hours_ago=-1, status="preliminary"), frame=FRAME)
    assert timeline.preliminary == ()
    assert [e.reason for e in timeline.exclusions] == [ExclusionReason.IN_FUTURE]


def test_recent_timeline_reaches_back_exactly_one_window_with_no_look_back():
    edge, older = result("crp", 50, hours_ago=48), result("il6", 80, hours_ago=48.01)
    extraction = Extraction(measurements=(edge, older))
    timeline = build_recent_timeline(extraction, now=NOW, window=WINDOW)
    assert timeline.series["crp"].values == (edge,)
    assert timeline.older == {"il6": older}
    assert timeline.anchor.source is AnchorSource.ASSESSMENT_TIME


# --- the time frame ---------------------------------------------------------------------------


def test_frame_spans_follow_the_anchor():
    assert FRAME.early_end == NOW - timedelta(hours=12)
    assert FRAME.look_back_start == NOW - timedelta(hours=60 + 7 * 24)
    assert FRAME.since_anchor == timedelta(hours=60)
    assert not FRAME.in_early_window
    assert frame_at(10).in_early_window


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"now": datetime(2026, 11, 25, 12)}, "timezone"),
        ({"window": timedelta(0)}, "positive"),
        ({"current_max_age": timedelta(hours=-1)}, "positive"),
        ({"look_back": timedelta(hours=-1)}, "negative"),
        ({"anchor": Anchor(NOW + timedelta(minutes=1), AnchorSource.CONDITION, "")}, "after now"),
    ],
)
def test_frame_refuses_what_would_misplace_results(arguments, message):
    fields = {"now": NOW, "anchor": Anchor(NOW - WINDOW, AnchorSource.CONDITION, "")} | arguments
    with pytest.raises(ValueError, match=message):
        TimeFrame(**fields)


def test_naive_anchor_is_refused():
    with pytest.raises(ValueError, match="timezone"):
        TimeFrame(NOW, Anchor(datetime(2026, 11, 24), AnchorSource.CONDITION, ""))


def test_frame_in_another_offset_places_results_the_same():
    shifted = TimeFrame(NOW.astimezone(UTC), FRAME.anchor)
    early = result("il6", 40, hours_ago=30)
    assert (
        build_timeline(Extraction(measurements=(early,)), shifted).series["il6"].baseline is early
    )
