"""FHIR dateTime and instant values read as timezone-aware UTC datetimes (one parser for all)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

# FHIR dateTime / instant: a year, optionally month, day, and a time with optional offset.
_FHIR_DATETIME = re.compile(
    r"^\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)
_HAS_TIME = re.compile(r"T\d{2}:\d{2}")


class FhirTimeError(ValueError):
    """A value that is not one instant: malformed, or `imprecise` (no time of day or no offset)."""

    def __init__(self, detail: str, *, imprecise: bool = False) -> None:
        """Carry the problem as text to follow the field's name (`… has no timezone`)."""
        super().__init__(detail)
        self.detail = detail
        self.imprecise = imprecise


def parse_instant(value: Any) -> datetime:
    """An aware UTC datetime from a FHIR dateTime with a time and an offset, else FhirTimeError."""
    match = _FHIR_DATETIME.match(value) if isinstance(value, str) else None
    if match is None:
        raise FhirTimeError(f"{value!r} is not a FHIR dateTime")
    if match.group("tz") is None:
        precision = "has no timezone" if _HAS_TIME.search(value) else "has no time of day"
        raise FhirTimeError(f"{value} {precision}", imprecise=True)
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except (ValueError, OverflowError):
        raise FhirTimeError(f"{value} is not a valid date") from None


def instant_or_none(value: Any) -> datetime | None:
    """The UTC instant of a FHIR dateTime, or None when it is absent, imprecise or malformed."""
    try:
        return parse_instant(value)
    except FhirTimeError:
        return None
