"""The Phoenix score at an instant: each subscore boundary, MAP age bands, derived inputs."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from fhir_mappings.phoenix_inputs import PhoenixCatalog, PhoenixPatient, PhoenixReading
from model.phoenix import MISSING_DISPLAY, PhoenixPoint, age_in_months, phoenix_points

from .conftest import NOW, child, reading


def score(
    readings: list[PhoenixReading], patient: PhoenixPatient, catalog: PhoenixCatalog
) -> PhoenixPoint:
    (point,) = phoenix_points(readings, patient, [NOW], catalog=catalog)
    return point


# --- missing inputs ---------------------------------------------------------------------------


def test_no_readings_score_zero_and_every_input_is_listed_missing(toddler, catalog) -> None:
    point = score([], toddler, catalog)
    assert point.total == 0 and point.subscores == dict.fromkeys(point.subscores, 0)
    assert point.missing == tuple(MISSING_DISPLAY)
    assert set(point.inputs) == {"imv", "other_respiratory_support", "vasoactives", "age"}


def test_an_input_present_is_not_listed_missing(toddler, catalog) -> None:
    point = score([reading("lactate", 2.0), reading("gcs", 15)], toddler, catalog)
    assert "lactate" not in point.missing and "gcs" not in point.missing
    assert "platelets" in point.missing
    assert point.inputs["lactate"] == 2.0


# --- respiratory ------------------------------------------------------------------------------


def oxygenation(
    support: str | None, pao2: float | None = None, spo2: float | None = None, fio2: float = 0.5
) -> list[PhoenixReading]:
    found = [reading("fio2", fio2, hours_before=1)]
    if pao2 is not None:
        found.append(reading("pao2", pao2, hours_before=0.5))
    if spo2 is not None:
        found.append(reading("spo2", spo2, hours_before=0.5))
    if support is not None:
        found.append(reading(support, hours_before=1, ongoing=True))
    return found


@pytest.mark.parametrize(
    ("support", "pf_ratio", "points"),
    [
        ("other_respiratory_support", 399.5, 1),
        ("other_respiratory_support", 400.0, 0),
        ("other_respiratory_support", 150.0, 1),  # without IMV, one point at most
        ("imv", 199.5, 2),
        ("imv", 200.0, 1),
        ("imv", 99.5, 3),
        ("imv", 100.0, 2),
    ],
)
def test_pf_ratio_boundaries(support, pf_ratio, points, toddler, catalog) -> None:
    point = score(oxygenation(support, pao2=pf_ratio * 0.5), toddler, catalog)
    assert point.inputs["pf_ratio"] == pytest.approx(pf_ratio)
    assert point.respiratory == points


@pytest.mark.parametrize(
    ("support", "sf_ratio", "points"),
    [
        ("other_respiratory_support", 291.0, 1),
        ("other_respiratory_support", 292.0, 0),
        ("imv", 219.0, 2),
        ("imv", 220.0, 1),
        ("imv", 147.0, 3),
        ("imv", 148.0, 2),
    ],
)
def test_sf_ratio_boundaries(support, sf_ratio, points, toddler, catalog) -> None:
    fio2 = 0.25 if sf_ratio > 200 else 0.5
    point = score(oxygenation(support, spo2=sf_ratio * fio2, fio2=fio2), toddler, catalog)
    assert point.inputs["sf_ratio"] == pytest.approx(sf_ratio)
    assert point.respiratory == points


def test_fio2_above_room_air_is_other_support(toddler, catalog) -> None:
    point = score(oxygenation(None, pao2=150.0, fio2=0.4), toddler, catalog)
    assert point.inputs["other_respiratory_support"] == 1.0
    assert point.respiratory == 1  # P/F 375 < 400 with support


def test_room_air_without_support_scores_no_respiratory_point(toddler, catalog) -> None:
    point = score(oxygenation(None, pao2=60.0, fio2=0.21), toddler, catalog)
    assert point.inputs["pf_ratio"] == pytest.approx(285.7, abs=0.1)
    assert point.inputs["other_respiratory_support"] == 0.0
    assert point.respiratory == 0


def test_spo2_above_97_gives_no_sf_ratio_and_is_not_missing(toddler, catalog) -> None:
    point = score(oxygenation("imv", spo2=98.0, fio2=0.6), toddler, catalog)
    assert "sf_ratio" not in point.inputs
    assert "oxygenation" not in point.missing
    assert point.respiratory == 0


def test_spo2_without_fio2_is_missing_oxygenation_not_room_air(toddler, catalog) -> None:
    point = score(
        [reading("spo2", 88.0), reading("imv", ongoing=True, hours_before=2)], toddler, catalog
    )
    assert "sf_ratio" not in point.inputs and "oxygenation" in point.missing
    assert point.respiratory == 0


def test_fio2_newer_than_the_pao2_gives_no_ratio(toddler, catalog) -> None:
    readings = [
        reading("pao2", 60.0, hours_before=1),
        reading("fio2", 0.4, hours_before=0.5),
        reading("imv", ongoing=True, hours_before=2),
    ]
    point = score(readings, toddler, catalog)
    assert "pf_ratio" not in point.inputs
    assert point.respiratory == 0


# --- cardiovascular ---------------------------------------------------------------------------


def infusion(agent: str, hours_before: float = 2.0) -> PhoenixReading:
    return reading("vasoactive", hours_before=hours_before, ongoing=True, agent=agent)


@pytest.mark.parametrize(
    ("agents", "points"),
    [
        ((), 0),
        (("epinephrine",), 1),
        (("epinephrine", "milrinone"), 2),
        (("epinephrine", "norepinephrine", "vasopressin"), 2),
        (("dopamine", "dopamine"), 1),  # two records of one agent are one drug
    ],
)
def test_vasoactive_points(agents, points, toddler, catalog) -> None:
    point = score([infusion(agent) for agent in agents], toddler, catalog)
    assert point.inputs["vasoactives"] == len(set(agents))
    assert point.cardiovascular == points


@pytest.mark.parametrize(("lactate", "points"), [(4.99, 0), (5.0, 1), (10.99, 1), (11.0, 2)])
def test_lactate_boundaries(lactate, points, toddler, catalog) -> None:
    assert score([reading("lactate", lactate)], toddler, catalog).cardiovascular == points


# (age in months, lowest MAP with 0 points, lowest MAP with 1 point) from the Phoenix rubric
MAP_BANDS = [(0.5, 31, 17), (6, 39, 25), (18, 44, 31), (36, 45, 32), (100, 49, 36), (180, 52, 38)]


@pytest.mark.parametrize(("age", "no_point", "one_point"), MAP_BANDS)
def test_map_age_bands(age, no_point, one_point, catalog) -> None:
    patient = child(age)
    expected = {no_point: 0, no_point - 0.5: 1, one_point: 1, one_point - 0.5: 2}
    for mean, points in expected.items():
        point = score([reading("map_arterial", mean)], patient, catalog)
        assert point.cardiovascular == points, (age, mean)


def test_map_band_edges_follow_age_in_months(catalog) -> None:
    at_twelve = child(12)  # 12-24 months: 1 point below 44
    just_under = child(11.9)  # 1-12 months: 1 point below 39
    assert score([reading("map_cuff", 40.0)], at_twelve, catalog).cardiovascular == 1
    assert score([reading("map_cuff", 40.0)], just_under, catalog).cardiovascular == 0


def test_cardiovascular_sums_drugs_lactate_and_map(toddler, catalog) -> None:
    readings = [
        infusion("epinephrine"),
        infusion("norepinephrine"),
        reading("lactate", 12.0),
        reading("map_arterial", 30.0),
    ]
    assert score(readings, toddler, catalog).cardiovascular == 6


def test_arterial_map_is_preferred_to_cuff_at_the_same_hour(toddler, catalog) -> None:
    readings = [reading("map_arterial", 40.0, hours_before=0.5), reading("map_cuff", 60.0)]
    assert score(readings, toddler, catalog).inputs["map"] == 40.0


def test_a_much_newer_cuff_map_wins_over_an_old_arterial_one(toddler, catalog) -> None:
    readings = [reading("map_arterial", 40.0, hours_before=3), reading("map_cuff", 60.0)]
    assert score(readings, toddler, catalog).inputs["map"] == 60.0


def test_map_from_sbp_and_dbp_only_when_no_map(toddler, catalog) -> None:
    pair = [reading("sbp_cuff", 90.0), reading("dbp_cuff", 30.0)]
    assert score(pair, toddler, catalog).inputs["map"] == pytest.approx(50.0)
    with_map = [*pair, reading("map_cuff", 55.0)]
    assert score(with_map, toddler, catalog).inputs["map"] == 55.0


def test_arterial_pressures_are_preferred_to_a_cuff_map(toddler, catalog) -> None:
    readings = [
        reading("sbp_arterial", 60.0),
        reading("dbp_arterial", 30.0),
        reading("map_cuff", 70.0),
    ]
    assert score(readings, toddler, catalog).inputs["map"] == pytest.approx(40.0)


def test_sbp_and_dbp_from_different_times_are_not_paired(toddler, catalog) -> None:
    readings = [reading("sbp_cuff", 90.0), reading("dbp_cuff", 30.0, hours_before=1)]
    point = score(readings, toddler, catalog)
    assert "map" not in point.inputs and "map" in point.missing


# --- coagulation ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "points"),
    [
        ("platelets", 99.9, 1),
        ("platelets", 100.0, 0),
        ("inr", 1.31, 1),
        ("inr", 1.3, 0),
        ("d_dimer", 2.01, 1),
        ("d_dimer", 2.0, 0),
        ("fibrinogen", 99.9, 1),
        ("fibrinogen", 100.0, 0),
    ],
)
def test_coagulation_boundaries(key, value, points, toddler, catalog) -> None:
    assert score([reading(key, value)], toddler, catalog).coagulation == points


def test_coagulation_is_capped_at_two(toddler, catalog) -> None:
    readings = [
        reading("platelets", 20.0),
        reading("inr", 2.0),
        reading("d_dimer", 9.0),
        reading("fibrinogen", 50.0),
    ]
    assert score(readings, toddler, catalog).coagulation == 2


# --- neurologic -------------------------------------------------------------------------------


@pytest.mark.parametrize(("gcs", "points"), [(10, 1), (11, 0), (3, 1)])
def test_gcs_boundary(gcs, points, toddler, catalog) -> None:
    assert score([reading("gcs", gcs)], toddler, catalog).neurologic == points


@pytest.mark.parametrize(
    ("right", "left", "fixed", "points"),
    [(1.0, 1.0, 1.0, 2), (1.0, 0.0, 0.0, 0), (1.0, None, None, 0), (0.0, 0.0, 0.0, 0)],
)
def test_fixed_pupils_need_both_sides(right, left, fixed, points, toddler, catalog) -> None:
    readings = [reading("pupil_right", right)]
    if left is not None:
        readings.append(reading("pupil_left", left))
    point = score(readings, toddler, catalog)
    assert point.inputs.get("fixed_pupils") == fixed
    assert ("fixed_pupils" in point.missing) == (fixed is None)
    assert point.neurologic == points


def test_neurologic_is_capped_at_two(toddler, catalog) -> None:
    readings = [reading("gcs", 4), reading("pupil_right", 1.0), reading("pupil_left", 1.0)]
    assert score(readings, toddler, catalog).neurologic == 2


def test_newer_gcs_components_replace_an_older_total(toddler, catalog) -> None:
    readings = [
        reading("gcs", 14, hours_before=3),
        reading("gcs_eye", 2, hours_before=4),  # unchanged since: carried forward
        reading("gcs_motor", 4, hours_before=1),
        reading("gcs_verbal", 1, hours_before=1),
    ]
    point = score(readings, toddler, catalog)
    assert point.inputs["gcs"] == 7 and point.neurologic == 1


def test_a_total_newer_than_the_components_is_used(toddler, catalog) -> None:
    readings = [
        reading("gcs_eye", 1, hours_before=2),
        reading("gcs_motor", 1, hours_before=2),
        reading("gcs_verbal", 1, hours_before=2),
        reading("gcs", 14, hours_before=1),
    ]
    assert score(readings, toddler, catalog).inputs["gcs"] == 14


# --- total ------------------------------------------------------------------------------------


def test_total_is_the_sum_of_the_four_subscores(toddler, catalog) -> None:
    readings = [
        *oxygenation("imv", pao2=45.0),  # P/F 90: 3
        infusion("dopamine"),  # 1
        reading("platelets", 50.0),  # 1
        reading("gcs", 9),  # 1
    ]
    point = score(readings, toddler, catalog)
    assert (point.respiratory, point.cardiovascular, point.coagulation, point.neurologic) == (
        3,
        1,
        1,
        1,
    )
    assert point.total == 6


def test_phoenix8_adds_four_research_subscores(toddler, catalog) -> None:
    readings = [
        reading("glucose", 40.0),
        reading("alc", 0.5),
        reading("creatinine", 0.7),
        reading("bilirubin", 5.0),
        reading("platelets", 50.0),
    ]
    (point,) = phoenix_points(readings, toddler, [NOW], catalog=catalog, phoenix8=True)
    assert point.phoenix8_subscores == {"endocrine": 1, "immunologic": 1, "renal": 1, "hepatic": 1}
    assert point.total == 1 and point.phoenix8_total == 5
    assert "anc" not in point.missing or point.inputs.get("anc") is None
    assert "alt" in point.missing


def test_phoenix8_is_absent_unless_asked_for(toddler, catalog) -> None:
    point = score([reading("glucose", 40.0)], toddler, catalog)
    assert point.phoenix8_total is None and "glucose" not in point.missing


def test_no_birth_date_is_refused(catalog) -> None:
    with pytest.raises(ValueError, match="birth date"):
        phoenix_points([], PhoenixPatient(birth_date=None), [NOW], catalog=catalog)


def test_readings_after_the_instant_are_not_used(toddler, catalog) -> None:
    later = reading("lactate", 12.0, at=NOW + timedelta(minutes=1))
    point = score([later], toddler, catalog)
    assert point.cardiovascular == 0 and "lactate" in point.missing


@pytest.mark.parametrize(
    ("birth", "when", "months"),
    [
        ((2025, 3, 2), (2026, 3, 2), 12.0),  # a first birthday is 12 months
        ((2025, 3, 3), (2026, 3, 2), 11 + 27 / 28),  # the day before
        ((2024, 1, 31), (2024, 2, 29), 1.0),  # a month after 31 January is 29 February
        ((2008, 3, 2), (2026, 3, 2), 216.0),
    ],
)
def test_age_in_calendar_months(birth, when, months) -> None:
    patient = PhoenixPatient(birth_date=date(*birth))
    moment = datetime(*when, 12, tzinfo=UTC)
    assert age_in_months(patient, moment) == pytest.approx(months)
