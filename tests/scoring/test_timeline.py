"""build_timeline: window, baseline, latest, stale, preliminary, in-future, exclusions."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from fhir_mappings.measurement import Exclusion, ExclusionReason, Extraction
from model.timeline import CLOCK_TOLERANCE, build_timeline
from tests.scoring.factories import NOW, WINDOW, result, timeline_of


def test_counted_results_in_window_are_ordered_oldest_first_whatever_the_input_order():
    late, early, middle = (
        result("ferritin", 900, hours_ago=1),
        result("ferritin", 600, hours_ago=40),
        result("ferritin", 750, hours_ago=20),
    )
    timeline = timeline_of(late, early, middle)
    series = timeline.series["ferritin"]
    assert series.values == (early, middle, late)
    assert series.baseline is early
    assert series.latest is late


def test_result_exactly_at_window_start_is_counted_and_one_just_older_is_not():
    edge = result("crp", 50, hours_ago=48)
    older = result("crp", 80, hours_ago=48.01)
    timeline = timeline_of(edge, older)
    assert timeline.series["crp"].values == (edge,)
    assert "crp" not in timeline.stale


def test_analyte_with_only_old_results_is_stale_with_its_most_recent_result():
    oldest, old = result("il6", 12, hours_ago=100), result("il6", 30, hours_ago=60)
    timeline = timeline_of(oldest, old)
    assert "il6" not in timeline.series
    assert timeline.stale == {"il6": old}


def test_window_length_decides_staleness():
    reading = result("il6", 30, hours_ago=60)
    assert "il6" in timeline_of(reading).stale
    wide = timeline_of(reading, window=timedelta(hours=72))
    assert wide.series["il6"].latest is reading
    assert wide.stale == {}


def test_preliminary_result_in_window_is_kept_apart_and_never_in_the_series():
    preliminary = result("cxcl9", 900, status="preliminary")
    final = result("cxcl9", 500, hours_ago=30)
    timeline = timeline_of(preliminary, final)
    assert timeline.preliminary == (preliminary,)
    assert timeline.series["cxcl9"].values == (final,)


def test_preliminary_result_older_than_window_is_dropped():
    timeline = timeline_of(result("cxcl9", 900, hours_ago=72, status="preliminary"))
    assert timeline.preliminary == ()
    assert timeline.series == {}
    assert timeline.stale == {}


def test_result_after_now_plus_tolerance_becomes_in_future_exclusion():
    future = result("ferritin", 700, hours_ago=-0.5)
    timeline = timeline_of(future)
    assert timeline.series == {}
    (exclusion,) = timeline.exclusions
    assert exclusion.reason is ExclusionReason.IN_FUTURE
    assert (exclusion.analyte, exclusion.code, exclusion.time) == (
        "ferritin",
        "2276-4",
        future.time,
    )
    assert exclusion.observation_id == future.observation_id
    assert exclusion.detail


def test_result_within_clock_tolerance_after_now_is_counted():
    skewed = result("ferritin", 700, hours_ago=-(CLOCK_TOLERANCE / timedelta(hours=1)) + 0.01)
    timeline = timeline_of(skewed)
    assert timeline.series["ferritin"].latest is skewed
    assert timeline.exclusions == ()


def test_extraction_exclusions_are_carried_through_before_new_ones():
    carried = Exclusion(reason=ExclusionReason.ENTERED_IN_ERROR, detail="entered in error")
    timeline = timeline_of(result("crp", 5, hours_ago=-2), exclusions=(carried,))
    assert timeline.exclusions[0] is carried
    assert [e.reason for e in timeline.exclusions] == [
        ExclusionReason.ENTERED_IN_ERROR,
        ExclusionReason.IN_FUTURE,
    ]


def test_result_with_unknown_status_is_excluded_not_scored():
    timeline = timeline_of(result("crp", 55, status="registered"))
    assert timeline.series == {}
    assert [e.reason for e in timeline.exclusions] == [ExclusionReason.UNSUPPORTED_STATUS]


def test_amended_and_corrected_results_count():
    amended, corrected = result("il6", 8, status="amended"), result("crp", 9, status="corrected")
    timeline = timeline_of(amended, corrected)
    assert set(timeline.series) == {"il6", "crp"}


def test_timeline_records_now_and_window():
    timeline = timeline_of()
    assert (timeline.now, timeline.window) == (NOW, WINDOW)


def test_naive_now_is_refused():
    with pytest.raises(ValueError, match="timezone"):
        build_timeline(Extraction(), now=datetime(2026, 11, 25, 12), window=WINDOW)


def test_non_positive_window_is_refused():
    with pytest.raises(ValueError, match="window"):
        build_timeline(Extraction(), now=NOW, window=timedelta(0))


def test_identical_result_received_twice_is_kept_once():
    reading = result("ferritin", 900, observation_id="obs-1")
    timeline = timeline_of(reading, result("ferritin", 900, observation_id="obs-1"))
    assert timeline.series["ferritin"].values == (reading,)


def test_distinct_results_at_the_same_time_are_both_kept_in_id_order():
    second = result("crp", 50, observation_id="obs-b")
    first = result("crp", 45, observation_id="obs-a")
    assert timeline_of(second, first).series["crp"].values == (first, second)


def test_preliminary_result_dated_in_the_future_is_excluded_not_shown():
    timeline = timeline_of(result("il6", 40, hours_ago=-1, status="preliminary"))
    assert timeline.preliminary == ()
    assert [e.reason for e in timeline.exclusions] == [ExclusionReason.IN_FUTURE]
