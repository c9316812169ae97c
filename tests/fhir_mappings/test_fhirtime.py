"""The one FHIR dateTime parser: instants with an offset become UTC; everything else is refused."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from fhir_mappings.fhirtime import FhirTimeError, instant_or_none, parse_instant


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-20T06:00:00Z", datetime(2026, 11, 20, 6, 0, tzinfo=UTC)),
        ("2026-11-20T08:30:00+02:00", datetime(2026, 11, 20, 6, 30, tzinfo=UTC)),
        ("2026-11-20T01:00:00.250-05:00", datetime(2026, 11, 20, 6, 0, 0, 250000, tzinfo=UTC)),
        ("2026-11-20T06:00Z", datetime(2026, 11, 20, 6, 0, tzinfo=UTC)),
    ],
)
def test_instants_with_an_offset_become_aware_utc(text: str, expected: datetime) -> None:
    parsed = parse_instant(text)
    assert parsed == expected and parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "problem"),
    [("2026-11-20", "has no time of day"), ("2026-11", "has no time of day")],
)
def test_dates_without_a_time_are_imprecise(text: str, problem: str) -> None:
    with pytest.raises(FhirTimeError) as raised:
        parse_instant(text)
    assert raised.value.imprecise and raised.value.detail == f"{text} {problem}"


def test_a_time_without_an_offset_is_imprecise() -> None:
    with pytest.raises(FhirTimeError) as raised:
        parse_instant("2026-11-20T06:00:00")
    assert raised.value.imprecise and raised.value.detail.endswith("has no timezone")


@pytest.mark.parametrize(
    "value", [None, 20261120, "", "yesterday", "2026-13-40T06:00:00Z", "0001-01-01T00:00:00+01:00"]
)
def test_malformed_values_are_refused_and_not_called_imprecise(value: Any) -> None:
    with pytest.raises(FhirTimeError) as raised:
        parse_instant(value)
    assert not raised.value.imprecise
    assert instant_or_none(value) is None
