"""A Patient resource's age from its `birthDate`: pure, and never older than the date allows.

A FHIR `date` may be a year, a year and month, or a full date. For the age gate we count from the
last day it may denote, so a patient is never taken to be older than they could be. An age in
months (the Phoenix score's age bands) needs the full date: `full_birth_date` gives it or None.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

FHIR_DATE = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?")
FULL_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _anniversary(birth: date, year: int) -> date:
    """The birthday in `year` (28 February for a 29 February birthday in a common year)."""
    try:
        return birth.replace(year=year)
    except ValueError:
        return date(year, 2, 28)


def latest_possible_birth_date(birth_date: str) -> date | None:
    """The last day a FHIR `date` (YYYY, YYYY-MM or YYYY-MM-DD) may denote, or None."""
    if FHIR_DATE.fullmatch(birth_date) is None:
        return None
    parts = [int(part) for part in birth_date.split("-")]
    try:
        if len(parts) == 1:
            return date(parts[0], 12, 31)
        if len(parts) == 2:
            first = date(parts[0], parts[1], 1)
            next_month = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
            return next_month - timedelta(days=1)
        return date(parts[0], parts[1], parts[2])
    except ValueError:
        return None


def age_in_years(patient: Mapping[str, Any] | None, on: date) -> float | None:
    """The patient's youngest possible age on `on` in years, or None when birthDate is unusable."""
    birth_date = patient.get("birthDate") if patient else None
    birth = latest_possible_birth_date(birth_date) if isinstance(birth_date, str) else None
    if birth is None or birth > on:
        return None
    years = on.year - birth.year - (_anniversary(birth, on.year) > on)
    last = _anniversary(birth, birth.year + years)
    following = _anniversary(birth, birth.year + years + 1)
    return years + (on - last).days / (following - last).days


def full_birth_date(patient: Mapping[str, Any] | None) -> date | None:
    """Patient.birthDate when it is a full, valid date; a year or a month alone gives None."""
    birth_date = patient.get("birthDate") if isinstance(patient, Mapping) else None
    if not isinstance(birth_date, str) or FULL_DATE.fullmatch(birth_date) is None:
        return None
    return latest_possible_birth_date(birth_date)
