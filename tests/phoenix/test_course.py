"""Carry-forward windows, the hourly course, onset and out-of-scope children."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from fhir_mappings.phoenix_inputs import PhoenixCatalog, PhoenixPatient
from model.phoenix import (
    OutOfScope,
    hourly_grid,
    out_of_scope,
    phoenix_course,
    phoenix_points,
)

from .conftest import NOW, child, reading

# Carry-forward windows in hours, as the Phoenix EHR implementation notes give them.
WINDOWS = {
    "spo2": 6,
    "fio2": 6,
    "pao2": 6,
    "map_arterial": 6,
    "sbp_arterial": 6,
    "dbp_arterial": 6,
    "map_cuff": 6,
    "sbp_cuff": 6,
    "dbp_cuff": 6,
    "lactate": 6,
    "platelets": 24,
    "inr": 24,
    "d_dimer": 24,
    "fibrinogen": 24,
    "gcs": 12,
    "gcs_eye": 12,
    "gcs_motor": 12,
    "gcs_verbal": 12,
    "pupil_right": 6,
    "pupil_left": 6,
    "glucose": 12,
    "anc": 24,
    "alc": 24,
    "creatinine": 24,
    "bilirubin": 24,
    "alt": 24,
    "imv": 6,
    "other_respiratory_support": 6,
    "vasoactive": 12,
}
SECOND = 1 / 3600


def test_catalog_windows_are_those_of_the_implementation_notes(catalog: PhoenixCatalog) -> None:
    measured = {key for key, item in catalog.inputs.items() if item.read_as != "evidence"}
    for key in measured | {"imv", "other_respiratory_support", "vasoactive"}:
        assert catalog.carry_forward(key) == timedelta(hours=WINDOWS[key]), key


# One scoring case per input: the readings that score when present, and the subscore they move.
CASES = {
    "lactate": (lambda h: [reading("lactate", 12.0, hours_before=h)], "cardiovascular", 2),
    "platelets": (lambda h: [reading("platelets", 50.0, hours_before=h)], "coagulation", 1),
    "inr": (lambda h: [reading("inr", 2.0, hours_before=h)], "coagulation", 1),
    "d_dimer": (lambda h: [reading("d_dimer", 5.0, hours_before=h)], "coagulation", 1),
    "fibrinogen": (lambda h: [reading("fibrinogen", 50.0, hours_before=h)], "coagulation", 1),
    "gcs": (lambda h: [reading("gcs", 6, hours_before=h)], "neurologic", 1),
    "map_arterial": (
        lambda h: [reading("map_arterial", 20.0, hours_before=h)],
        "cardiovascular",
        2,
    ),
    "map_cuff": (lambda h: [reading("map_cuff", 20.0, hours_before=h)], "cardiovascular", 2),
    "arterial pair": (
        lambda h: [
            reading("sbp_arterial", 30.0, hours_before=h),
            reading("dbp_arterial", 15.0, hours_before=h),
        ],
        "cardiovascular",
        2,
    ),
    "cuff pair": (
        lambda h: [
            reading("sbp_cuff", 30.0, hours_before=h),
            reading("dbp_cuff", 15.0, hours_before=h),
        ],
        "cardiovascular",
        2,
    ),
    "gcs components": (
        lambda h: [reading(k, 1, hours_before=h) for k in ("gcs_eye", "gcs_motor", "gcs_verbal")],
        "neurologic",
        1,
    ),
    "pupils": (
        lambda h: [
            reading("pupil_right", 1.0, hours_before=h),
            reading("pupil_left", 1.0, hours_before=h),
        ],
        "neurologic",
        2,
    ),
    "vasoactive": (
        lambda h: [reading("vasoactive", hours_before=h, agent="epinephrine")],
        "cardiovascular",
        1,
    ),
    "imv": (
        lambda h: [
            reading("imv", hours_before=h),
            reading("pao2", 20.0, hours_before=0),  # P/F 95 on room air: no support without IMV
            reading("fio2", 0.21, hours_before=0),
        ],
        "respiratory",
        3,
    ),
    "other_respiratory_support": (
        lambda h: [
            reading("other_respiratory_support", hours_before=h),
            reading("pao2", 60.0, hours_before=0),
            reading("fio2", 0.21, hours_before=0),
        ],
        "respiratory",
        1,
    ),
    "pao2": (
        lambda h: [
            reading("pao2", 40.0, hours_before=h),
            reading("fio2", 0.5, hours_before=h),
            reading("imv", hours_before=0),
        ],
        "respiratory",
        3,
    ),
    "spo2": (
        lambda h: [
            reading("spo2", 70.0, hours_before=h),
            reading("fio2", 0.5, hours_before=h),
            reading("imv", hours_before=0),
        ],
        "respiratory",
        3,
    ),
    "fio2": (
        lambda h: [
            reading("fio2", 0.5, hours_before=h),
            reading("pao2", 40.0, hours_before=0),
            reading("imv", hours_before=0),
        ],
        "respiratory",
        3,
    ),
}
WINDOW_OF = {
    "arterial pair": "sbp_arterial",
    "cuff pair": "sbp_cuff",
    "gcs components": "gcs_eye",
    "pupils": "pupil_right",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_carry_forward_just_inside_and_just_past_each_window(case, toddler, catalog) -> None:
    build, subscore, points = CASES[case]
    hours = WINDOWS[WINDOW_OF.get(case, case)]
    (inside,) = phoenix_points(build(hours), toddler, [NOW], catalog=catalog)
    (past,) = phoenix_points(build(hours + SECOND), toddler, [NOW], catalog=catalog)
    assert getattr(inside, subscore) == points
    assert getattr(past, subscore) == 0


@pytest.mark.parametrize("key", ["glucose", "anc", "alc", "creatinine", "bilirubin", "alt"])
def test_phoenix8_inputs_carry_forward_within_their_window(key, toddler, catalog) -> None:
    hours = WINDOWS[key]
    values = {
        "glucose": 30.0,
        "anc": 0.1,
        "alc": 0.1,
        "creatinine": 3.0,
        "bilirubin": 9.0,
        "alt": 500.0,
    }
    for age, expected in ((hours, 1), (hours + SECOND, 0)):
        (point,) = phoenix_points(
            [reading(key, values[key], hours_before=age)],
            toddler,
            [NOW],
            catalog=catalog,
            phoenix8=True,
        )
        assert point.phoenix8_total == expected, (key, age)
        assert (key in point.missing) == (expected == 0)


def test_an_interval_counts_until_its_end_not_for_a_window_after(toddler, catalog) -> None:
    stopped = reading(
        "vasoactive", hours_before=3, end=NOW - timedelta(minutes=1), agent="dopamine"
    )
    running = reading("vasoactive", hours_before=30, ongoing=True, agent="milrinone")
    (point,) = phoenix_points([stopped, running], toddler, [NOW], catalog=catalog)
    assert point.inputs["vasoactives"] == 1.0  # milrinone, running for 30 h; dopamine stopped


def test_a_newer_value_replaces_an_older_one(toddler, catalog) -> None:
    readings = [reading("lactate", 12.0, hours_before=2), reading("lactate", 1.0, hours_before=1)]
    (point,) = phoenix_points(readings, toddler, [NOW], catalog=catalog)
    assert point.inputs["lactate"] == 1.0


# --- the hourly grid and the course -----------------------------------------------------------


def test_grid_is_every_whole_hour_then_now() -> None:
    start = datetime(2026, 3, 1, 6, 20, tzinfo=UTC)
    end = datetime(2026, 3, 1, 9, 45, tzinfo=UTC)
    assert [t.strftime("%H:%M") for t in hourly_grid(start, end)] == [
        "07:00",
        "08:00",
        "09:00",
        "09:45",
    ]
    on_the_hour = hourly_grid(start.replace(minute=0), end.replace(minute=0))
    assert [t.hour for t in on_the_hour] == [6, 7, 8, 9]
    assert hourly_grid(end, end) == (end,)


def test_onset_is_the_first_point_with_a_score_of_two(toddler, catalog) -> None:
    start = NOW - timedelta(hours=10)
    readings = [
        reading("platelets", 50.0, hours_before=8.5),  # 1 point from 00:30
        reading("lactate", 6.0, hours_before=5.5),  # a second point from 03:30
        reading("lactate", 1.0, hours_before=2.0),  # back to 1 point at 07:00
    ]
    course = phoenix_course(readings, toddler, start=start, end=NOW, catalog=catalog)
    totals = [(p.time.hour, p.total) for p in course.points]
    assert totals == [
        (23, 0),
        (0, 0),
        (1, 1),
        (2, 1),
        (3, 1),
        (4, 2),
        (5, 2),
        (6, 2),
        (7, 1),
        (8, 1),
        (9, 1),
    ]
    assert course.onset is not None and course.onset.time == NOW - timedelta(hours=5)
    assert course.latest is not None and course.latest.time == NOW and course.latest.total == 1
    assert course.out_of_scope is None


def test_no_onset_when_the_score_stays_below_two(toddler, catalog) -> None:
    course = phoenix_course(
        [reading("platelets", 50.0, hours_before=2)],
        toddler,
        start=NOW - timedelta(hours=4),
        end=NOW,
        catalog=catalog,
    )
    assert course.onset is None and max(p.total for p in course.points) == 1


def test_readings_before_the_encounter_carry_into_its_first_hours(toddler, catalog) -> None:
    readings = [reading("lactate", 12.0, hours_before=10.5)]  # in effect until 4.5 h ago
    course = phoenix_course(
        readings, toddler, start=NOW - timedelta(hours=5), end=NOW, catalog=catalog
    )
    assert [p.total for p in course.points] == [2, 0, 0, 0, 0, 0]
    assert course.onset == course.points[0]


def test_course_needs_aware_ordered_times(toddler, catalog) -> None:
    with pytest.raises(ValueError):
        phoenix_course([], toddler, start=NOW, end=NOW - timedelta(hours=1), catalog=catalog)
    with pytest.raises(ValueError):
        phoenix_course([], toddler, start=NOW.replace(tzinfo=None), end=NOW, catalog=catalog)


def test_course_reports_the_package_and_its_windows(toddler, catalog) -> None:
    course = phoenix_course([], toddler, start=NOW - timedelta(hours=1), end=NOW, catalog=catalog)
    assert course.package.startswith("phoenix-sepsis 1.1.3")
    assert course.carry_forward_hours["platelets"] == 24.0
    assert course.carry_forward_hours["vasoactive"] == 12.0


# --- out of scope -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patient", "reason"),
    [
        (PhoenixPatient(birth_date=None), OutOfScope.AGE_UNKNOWN),
        (child(216), OutOfScope.AGE_216_MONTHS_OR_MORE),
        (child(0.2, birth_hospitalisation=True), OutOfScope.BIRTH_HOSPITALISATION),
        (child(0.5, gestational_age_weeks=34.0), OutOfScope.GESTATIONAL_AGE_UNDER_37_WEEKS),
    ],
)
def test_out_of_scope_children_get_a_reason_not_a_score(patient, reason, catalog) -> None:
    readings = [reading("lactate", 12.0), reading("platelets", 20.0)]
    course = phoenix_course(
        readings, patient, start=NOW - timedelta(hours=3), end=NOW, catalog=catalog
    )
    assert course.out_of_scope is reason
    assert course.points == () and course.onset is None and course.latest is None


@pytest.mark.parametrize(
    ("patient", "reason"),
    [
        (child(215.9), None),
        (child(2, gestational_age_weeks=34.0), None),  # 34 weeks + 8.6 weeks: past term
        (child(0.5, gestational_age_weeks=38.0), None),
    ],
)
def test_in_scope_children_near_the_limits(patient, reason) -> None:
    assert out_of_scope(patient, NOW) is reason


def test_scope_is_judged_at_the_encounter_start() -> None:
    birth = date(2008, 3, 10)  # 18 years old on 2026-03-10
    admitted_at_17 = PhoenixPatient(
        birth_date=birth, encounter_start=datetime(2026, 3, 1, tzinfo=UTC)
    )
    assert out_of_scope(admitted_at_17, admitted_at_17.encounter_start) is None
    course = phoenix_course(
        [],
        admitted_at_17,
        start=datetime(2026, 3, 11, tzinfo=UTC),
        end=datetime(2026, 3, 11, 2, tzinfo=UTC),
    )
    assert course.out_of_scope is None
