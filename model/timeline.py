"""Measurements → timeline: look-back window, baseline and latest per analyte, stale, preliminary.

Pure and free of service concerns: the hook and model training build timelines the same way.

- Counted results (final, amended, corrected) inside [now − window, now + tolerance] form each
  analyte's series, oldest first.
- An analyte with counted results, none of them inside the window, is stale: its most recent
  result is kept so the card can say how old it is.
- Preliminary results inside the window are kept for display and never scored.
- Results dated after now + tolerance become `IN_FUTURE` exclusions.
- Results with any other status become `UNSUPPORTED_STATUS` exclusions.
- Identical results (the same Observation from prefetch and from a query) are kept once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta

from fhir_mappings.measurement import (
    PRELIMINARY_STATUSES,
    Exclusion,
    ExclusionReason,
    Extraction,
    Measurement,
)
from model.assessment import MarkerSeries, Timeline

CLOCK_TOLERANCE = timedelta(minutes=5)  # results up to this far after `now` still count


def build_timeline(extraction: Extraction, *, now: datetime, window: timedelta) -> Timeline:
    """Place an extraction's results on a timeline ending at `now` and reaching back `window`."""
    _check_arguments(now, window)
    start, end = now - window, now + CLOCK_TOLERANCE
    in_window: dict[str, list[Measurement]] = defaultdict(list)
    older: dict[str, list[Measurement]] = defaultdict(list)
    preliminary: list[Measurement] = []
    exclusions: list[Exclusion] = list(extraction.exclusions)
    for measurement in _chronological(extraction.measurements):
        if measurement.time > end:
            exclusions.append(_exclusion(measurement, ExclusionReason.IN_FUTURE, now))
        elif measurement.counts:
            (in_window if measurement.time >= start else older)[measurement.analyte].append(
                measurement
            )
        elif measurement.status in PRELIMINARY_STATUSES:
            if measurement.time >= start:
                preliminary.append(measurement)
        else:
            exclusions.append(_exclusion(measurement, ExclusionReason.UNSUPPORTED_STATUS, now))
    return Timeline(
        now=now,
        window=window,
        series=_series(in_window),
        stale=_stale(older, in_window),
        preliminary=tuple(preliminary),
        exclusions=tuple(exclusions),
    )


def _check_arguments(now: datetime, window: timedelta) -> None:
    """Refuse a naive `now` or a non-positive window, which would silently misplace results."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    if window <= timedelta(0):
        raise ValueError("window must be positive")


def _chronological(measurements: Iterable[Measurement]) -> list[Measurement]:
    """Identical results once each, oldest first, with a stable tie-break on the Observation id."""
    unique = dict.fromkeys(measurements)
    return sorted(unique, key=lambda m: (m.time, m.observation_id or ""))


def _series(in_window: dict[str, list[Measurement]]) -> dict[str, MarkerSeries]:
    """One series per analyte with counted results in the window, keyed in analyte order."""
    return {
        analyte: MarkerSeries(analyte=analyte, values=tuple(in_window[analyte]))
        for analyte in sorted(in_window)
    }


def _stale(
    older: dict[str, list[Measurement]], in_window: dict[str, list[Measurement]]
) -> dict[str, Measurement]:
    """The most recent result of each analyte that has nothing counted inside the window."""
    return {analyte: older[analyte][-1] for analyte in sorted(older) if analyte not in in_window}


def _exclusion(measurement: Measurement, reason: ExclusionReason, now: datetime) -> Exclusion:
    """Turn a result we will not use into an exclusion the card can explain."""
    if reason is ExclusionReason.IN_FUTURE:
        late = measurement.time - now
        detail = (
            f"effective time is {round(late.total_seconds() / 60)} min after the assessment time"
        )
    else:
        detail = f"status {measurement.status!r} is not used"
    return Exclusion(
        reason=reason,
        detail=detail,
        analyte=measurement.analyte,
        system=measurement.system,
        code=measurement.code,
        time=measurement.time,
        observation_id=measurement.observation_id,
    )
