"""Builders for measurements and timelines, shared by the scoring and card tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fhir_mappings.measurement import Exclusion, Extraction, Measurement
from fhir_mappings.panel import load_panel
from model.assessment import Anchor, AnchorSource, TimeFrame, Timeline
from model.timeline import build_timeline

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
WINDOW = timedelta(hours=48)
LOOK_BACK = timedelta(days=7)
LOINC = "http://loinc.org"

# analyte -> (canonical unit, primary LOINC), from the panel
ANALYTES: dict[str, tuple[str, str]] = {
    key: (analyte.unit, analyte.primary.code) for key, analyte in load_panel().analytes.items()
}


def result(
    analyte: str,
    value: float,
    *,
    hours_ago: float = 2.0,
    status: str = "final",
    comparator: str | None = None,
    unit: str | None = None,
    source: tuple[float, str] | None = None,
    observation_id: str | None = None,
    reference_high: float | None = None,
) -> Measurement:
    """One panel result `hours_ago` before NOW, in the analyte's canonical unit by default."""
    canonical, code = ANALYTES[analyte]
    return Measurement(
        analyte=analyte,
        value=value,
        unit=unit or canonical,
        time=NOW - timedelta(hours=hours_ago),
        system=LOINC,
        code=code,
        status=status,
        comparator=comparator,
        source_value=source[0] if source else None,
        source_unit=source[1] if source else None,
        observation_id=observation_id or f"obs-{analyte}-{value}-{hours_ago}-{status}",
        reference_high=reference_high,
    )


def frame_at(
    anchor_hours_ago: float | None = None,
    *,
    source: AnchorSource = AnchorSource.PICU_ADMISSION,
    window: timedelta = WINDOW,
    look_back: timedelta = LOOK_BACK,
    current_max_age: timedelta = timedelta(hours=72),
) -> TimeFrame:
    """A frame at NOW; without `anchor_hours_ago` the anchor is NOW − window (assessment time)."""
    if anchor_hours_ago is None:
        anchor = Anchor(NOW - window, AnchorSource.ASSESSMENT_TIME, "assessment time minus window")
    else:
        anchor = Anchor(NOW - timedelta(hours=anchor_hours_ago), source, source.value)
    return TimeFrame(NOW, anchor, window, look_back, current_max_age)


def timeline_of(
    *measurements: Measurement,
    exclusions: tuple[Exclusion, ...] = (),
    window: timedelta = WINDOW,
    frame: TimeFrame | None = None,
) -> Timeline:
    """A timeline at NOW built the production way (anchor NOW − window unless `frame` says)."""
    extraction = Extraction(measurements=measurements, exclusions=exclusions)
    return build_timeline(extraction, frame or frame_at(window=window))


def panel_values(**values: float) -> tuple[Measurement, ...]:
    """Exact results two hours ago, e.g. `panel_values(il6=40, ferritin=600, crp=12)`."""
    return tuple(result(analyte, value) for analyte, value in values.items())
