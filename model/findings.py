"""Findings beside the decision: ferritin, CRP and cell counts on the current values, the ferritin
fall, and whether each axis is markedly raised at the current sample.

Current values are each analyte's latest counted result at or after the anchor and not older than
`current_max_age`. Findings never make the IL-6/IFN-γ label; the "inflammation" ones tell an
intermediate from a quiescent standard answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from fhir_mappings.measurement import Measurement
from model.assessment import Evidence
from model.rules import evaluate_criteria
from model.rules_v2 import FerritinFall, FindingSpec, RuleSetV2
from model.states import AxisReading, SampleState
from model.timeframe import Timeline

AXIS_FINDING = {"il6": "il6-marked", "ifng-axis": "ifng-axis-marked"}


def current_values(timeline: Timeline, analytes: tuple[str, ...]) -> dict[str, Measurement]:
    """Each analyte's latest result since the anchor, when not older than current_max_age."""
    frame = timeline.frame
    oldest = frame.now - frame.current_max_age
    values = {}
    for analyte in analytes:
        series = timeline.series.get(analyte)
        recent = [m for m in (series.since_anchor if series else ()) if m.time >= oldest]
        if recent:
            values[analyte] = recent[-1]
    return values


def findings(
    rule_set: RuleSetV2,
    timeline: Timeline,
    current: Mapping[str, Measurement],
    sample: SampleState | None,
) -> tuple[Evidence, ...]:
    """The axis findings at the current sample, each threshold finding, and the ferritin fall."""
    axes = tuple(_axis_finding(reading) for reading in (sample.axes if sample else ()))
    listed = tuple(_finding(spec, current) for spec in rule_set.findings)
    return (*axes, *listed, ferritin_fall(rule_set.ferritin_fall, timeline))


def inflammation_met(rule_set: RuleSetV2, found: tuple[Evidence, ...]) -> bool:
    """True when any inflammation finding is met."""
    kinds = {spec.id: spec.kind for spec in rule_set.findings}
    return any(item.met and kinds.get(item.id) == "inflammation" for item in found)


def _axis_finding(reading: AxisReading) -> Evidence:
    """Whether one axis is markedly raised at the current sample."""
    analytes = tuple(j.measurement.analyte for j in reading.judgements)
    return Evidence(
        id=AXIS_FINDING.get(reading.axis, f"{reading.axis}-marked"),
        description=f"{reading.label} markedly raised",
        met=reading.marked,
        analytes=analytes,
    )


def _finding(spec: FindingSpec, current: Mapping[str, Measurement]) -> Evidence:
    """One threshold finding on the current values."""
    return Evidence(
        id=spec.id,
        description=spec.description,
        met=evaluate_criteria(spec.criteria, current),
        analytes=spec.analytes,
        citation=spec.source.citation,
        citation_url=spec.source.link,
        note=spec.note,
        short=spec.source.short,
        label=spec.label,
    )


def ferritin_fall(spec: FerritinFall, timeline: Timeline) -> Evidence:
    """First result since the anchor to the latest: met when it fell by less than the fraction."""
    series = timeline.series.get(spec.analyte)
    values = series.since_anchor if series else ()
    met, compared = None, ""
    if len(values) > 1:
        first, latest = values[0], values[-1]
        span = latest.time - first.time
        compared = f"{_num(first.value)} → {_num(latest.value)} {latest.unit} over "
        compared += f"{round(span.total_seconds() / 3600)} h"
        if _judgeable(spec, first, latest, span):
            met = (first.value - latest.value) / first.value < spec.max_fall_fraction
    return Evidence(
        id=spec.id,
        description=f"{spec.description}: {compared}" if compared else spec.description,
        met=met,
        analytes=(spec.analyte,),
        citation=spec.source.citation,
        citation_url=spec.source.link,
        note=spec.note,
        short=spec.source.short,
        label=spec.label,
        values=compared,
    )


def _judgeable(
    spec: FerritinFall, first: Measurement, latest: Measurement, span: timedelta
) -> bool:
    """Exact values in the unit, a raised first value and a span of at least min_span_hours."""
    exact = first.comparator is None and latest.comparator is None
    units = first.unit == latest.unit == spec.unit
    long_enough = span >= timedelta(hours=spec.min_span_hours)
    raised = first.value > max(spec.min_first_value, 0)
    return exact and units and raised and long_enough


def _num(value: float) -> str:
    """A number with thousands separators and no float noise."""
    return f"{value:,.4f}".rstrip("0").rstrip(".")
