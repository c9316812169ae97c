"""Measurements → timeline: each counted result placed in its phase relative to the time anchor.

Pure and free of service concerns: the hook and model training build timelines the same way.

- Counted results (final, amended, corrected) from anchor − look-back to now (+ clock tolerance)
  form each analyte's series, oldest first, each tagged with its phase: `pre-anchor` (the
  look-back), `early` (the early window [anchor, anchor + window]) or `later`.
- An analyte whose counted results are all older than the look-back keeps only its most recent
  one, as `older`: shown, never used.
- Preliminary results from the look-back start on are kept for display and never scored.
- Results dated after now + tolerance become `IN_FUTURE` exclusions.
- Results with any other status become `UNSUPPORTED_STATUS` exclusions.
- Identical results (the same Observation from prefetch and from a query) are kept once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta

from fhir_mappings.measurement import (
    PRELIMINARY_STATUSES,
    Exclusion,
    ExclusionReason,
    Extraction,
    Measurement,
)
from model.assessment import MarkerSeries, TimeFrame, Timeline, assessment_time_frame

CLOCK_TOLERANCE = timedelta(minutes=5)  # results up to this far after `now` still count


def build_timeline(extraction: Extraction, frame: TimeFrame) -> Timeline:
    """Place an extraction's results on `frame`: phased series, older results, preliminary ones."""
    start, end = frame.look_back_start, frame.now + CLOCK_TOLERANCE
    counted: dict[str, list[Measurement]] = defaultdict(list)
    older: dict[str, list[Measurement]] = defaultdict(list)
    preliminary: list[Measurement] = []
    exclusions: list[Exclusion] = list(extraction.exclusions)
    for measurement in _chronological(extraction.measurements):
        if measurement.time > end:
            exclusions.append(_exclusion(measurement, ExclusionReason.IN_FUTURE, frame.now))
        elif measurement.counts:
            (counted if measurement.time >= start else older)[measurement.analyte].append(
                measurement
            )
        elif measurement.status in PRELIMINARY_STATUSES:
            if measurement.time >= start:
                preliminary.append(measurement)
        else:
            exclusions.append(
                _exclusion(measurement, ExclusionReason.UNSUPPORTED_STATUS, frame.now)
            )
    return Timeline(
        frame=frame,
        series=_series(counted, frame),
        older=_older(older, counted),
        preliminary=tuple(preliminary),
        exclusions=tuple(exclusions),
    )


def build_recent_timeline(extraction: Extraction, *, now: datetime, window: timedelta) -> Timeline:
    """A timeline anchored at now − window, with no look-back: the last `window` of results."""
    frame = assessment_time_frame(now, window, look_back=timedelta(0))
    return build_timeline(extraction, frame)


def last_window(timeline: Timeline) -> Timeline:
    """The same results seen from now − window only (no look-back), as scorer v1 reads them."""
    frame = assessment_time_frame(timeline.now, timeline.window, look_back=timedelta(0))
    recent: dict[str, list[Measurement]] = defaultdict(list)
    older: dict[str, list[Measurement]] = defaultdict(list)
    for analyte, series in timeline.series.items():
        for measurement in series.values:
            target = recent if measurement.time >= frame.anchor.time else older
            target[analyte].append(measurement)
    for analyte, measurement in timeline.older.items():
        older[analyte].append(measurement)
    return replace(
        timeline, frame=frame, series=_series(recent, frame), older=_older(older, recent)
    )


def _chronological(measurements: Iterable[Measurement]) -> list[Measurement]:
    """Identical results once each, oldest first, with a stable tie-break on the Observation id."""
    unique = dict.fromkeys(measurements)
    return sorted(unique, key=lambda m: (m.time, m.observation_id or ""))


def _series(counted: dict[str, list[Measurement]], frame: TimeFrame) -> dict[str, MarkerSeries]:
    """One phased series per analyte with counted results, keyed in analyte order."""
    return {
        analyte: MarkerSeries(
            analyte=analyte,
            values=tuple(counted[analyte]),
            phases=tuple(frame.phase(m.time) for m in counted[analyte]),
        )
        for analyte in sorted(counted)
    }


def _older(
    older: dict[str, list[Measurement]], counted: dict[str, list[Measurement]]
) -> dict[str, Measurement]:
    """The most recent result of each analyte with nothing counted from the look-back start on."""
    return {analyte: older[analyte][-1] for analyte in sorted(older) if analyte not in counted}


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
