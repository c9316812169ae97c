"""A Patient's age from its birthDate: counted from the latest day the date may denote."""

from __future__ import annotations

from datetime import date

import pytest

from fhir_mappings.patient import age_in_years, full_birth_date


@pytest.mark.parametrize(
    ("birth_date", "on", "expected"),
    [
        ("2008-11-25", date(2026, 11, 25), 18.0),
        ("2008-11-25", date(2026, 5, 25), 17.0 + 181 / 365),
        ("2020-02-29", date(2024, 2, 29), 4.0),
        ("2008", date(2026, 12, 31), 18.0),  # a bare year: the youngest possible age
        ("2008-02", date(2026, 2, 27), 17.0 + 364 / 365),  # latest: 29 Feb 2008
        ("2008-02-29", date(2026, 2, 28), 18.0),  # counted from 28 Feb in common years
        ("2008-12", date(2026, 12, 31), 18.0),
    ],
)
def test_age_in_years_counts_from_the_latest_possible_birth_date(
    birth_date: str, on: date, expected: float
) -> None:
    age = age_in_years({"birthDate": birth_date}, on)
    assert age == pytest.approx(expected, abs=0.001)


@pytest.mark.parametrize(
    "patient_resource",
    [
        None,
        {},
        {"birthDate": "soon"},
        {"birthDate": 2008},
        {"birthDate": "2008-13"},
        {"birthDate": "2008-02-30"},
        {"birthDate": "08-02-03"},
        {"birthDate": "2008-11-25T10:00:00Z"},
    ],
)
def test_age_is_unknown_without_a_usable_birth_date(patient_resource: dict | None) -> None:
    assert age_in_years(patient_resource, date(2026, 11, 25)) is None


def test_age_is_unknown_for_a_birth_date_after_the_hook() -> None:
    assert age_in_years({"birthDate": "2027-01-01"}, date(2026, 11, 25)) is None


@pytest.mark.parametrize(
    ("patient_resource", "expected"),
    [
        ({"birthDate": "2020-05-10"}, date(2020, 5, 10)),
        ({"birthDate": "2020-02-29"}, date(2020, 2, 29)),
        ({"birthDate": "2020"}, None),  # a year alone gives no age in months
        ({"birthDate": "2020-05"}, None),
        ({"birthDate": "2020-02-30"}, None),
        ({"birthDate": 20200510}, None),
        ({}, None),
        (None, None),
    ],
)
def test_full_birth_date_only_for_a_complete_valid_date(patient_resource, expected) -> None:
    assert full_birth_date(patient_resource) == expected
