"""Per-sample states of the IL-6/IFN-γ axis, their persistence, and per-analyte trends.

Sampling times are the collection times of every IL-6, IFN-γ and CXCL9 result from the look-back
start on. At each one, each axis takes the latest result of each of its analytes at or before it
and at most `pairing_hours` older; the axis is marked when any of those is markedly raised, not
marked when every one present is not, and unknown otherwise. Both axes marked: high; exactly one
marked and the other not: partial; an axis not marked otherwise: not-high; else unknown.

Persistence reads the assessable samples (pre-anchor ones included) up to the current one, the
latest assessable sample at or after the anchor; `PERSISTENCE_STATES` defines each state (the
model card shows them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

from fhir_mappings.measurement import Measurement
from model.limits import Limits
from model.rules_v2 import Axis, RuleSetV2
from model.states import (
    AxisReading,
    Judgement,
    MarkerTrend,
    Persistence,
    PersistenceState,
    SampleLevel,
    SampleState,
)
from model.timeframe import MarkerSeries, Phase, Timeline

PERSISTENCE_STATES: Mapping[PersistenceState, str] = {
    PersistenceState.PERSISTENT: "the current sample high, and high at a sample at least "
    "persistence_gap_hours before it: the study's high-mortality picture",
    PersistenceState.NEW: "the current sample high, an earlier sample not-high or partial",
    PersistenceState.RESOLVING: "the current sample not-high or partial, an earlier sample high",
    PersistenceState.SINGLE_SAMPLE: "one assessable sample, or only high samples under "
    "persistence_gap_hours apart (samples under that gap apart with one level count as one)",
    PersistenceState.NEVER_HIGH: "two or more assessable samples, none high",
    PersistenceState.UNKNOWN: "no assessable sample at or after the anchor",
}
TREND_CHANGE = 0.15  # a relative change larger than this is rising or falling
_LEVELS: Mapping[tuple[bool | None, bool | None], SampleLevel] = {
    (True, True): SampleLevel.HIGH,
    (True, False): SampleLevel.PARTIAL,
    (False, True): SampleLevel.PARTIAL,
    (False, False): SampleLevel.NOT_HIGH,
    (False, None): SampleLevel.NOT_HIGH,
    (None, False): SampleLevel.NOT_HIGH,
}


def sample_states(
    timeline: Timeline, rule_set: RuleSetV2, limits: Limits
) -> tuple[SampleState, ...]:
    """The level at every sampling time of an axis analyte, oldest first."""
    results = {
        analyte: timeline.series[analyte].values
        for analyte in rule_set.axis_analytes
        if analyte in timeline.series
    }
    times = sorted({m.time for values in results.values() for m in values})
    pairing = timedelta(hours=rule_set.pairing_hours)
    states = []
    for moment in times:
        axes = tuple(
            _reading(axis, results, moment, pairing, limits.judge) for axis in rule_set.axes
        )
        states.append(SampleState(moment, timeline.frame.phase(moment), level_of(axes), axes))
    return tuple(states)


def level_of(axes: Sequence[AxisReading]) -> SampleLevel:
    """The sample level from the two axis readings."""
    first, second = (axis.marked for axis in axes)
    return _LEVELS.get((first, second), SampleLevel.UNKNOWN)


def _reading(
    axis: Axis,
    results: Mapping[str, Sequence[Measurement]],
    moment: datetime,
    pairing: timedelta,
    judge: Callable[[Measurement], Judgement],
) -> AxisReading:
    """One axis at one sampling time, from the latest paired result of each of its analytes."""
    paired = [_paired(results.get(analyte, ()), moment, pairing) for analyte in axis.analytes]
    judgements = tuple(judge(m) for m in paired if m is not None)
    return AxisReading(axis.id, axis.label, _axis_marked(judgements), judgements)


def _paired(
    values: Sequence[Measurement], moment: datetime, pairing: timedelta
) -> Measurement | None:
    """The latest result at or before `moment` and at most `pairing` older, or None."""
    earlier = [m for m in values if moment - pairing <= m.time <= moment]
    return earlier[-1] if earlier else None


def _axis_marked(judgements: Sequence[Judgement]) -> bool | None:
    """Marked if any result is, not marked if every result present is not, else unknown."""
    outcomes = [j.marked for j in judgements]
    if True in outcomes:
        return True
    return False if outcomes and all(o is False for o in outcomes) else None


# --- persistence ------------------------------------------------------------------------------


def current_sample(samples: Sequence[SampleState]) -> SampleState | None:
    """The latest assessable sample at or after the anchor, or None."""
    since = [s for s in samples if s.phase is not Phase.PRE_ANCHOR and s.level.assessable]
    return since[-1] if since else None


def persistence_of(
    samples: Sequence[SampleState], timeline: Timeline, gap: timedelta
) -> Persistence:
    """The persistence state of the samples up to the current one, with the per-analyte trends."""
    trends = trends_of(timeline)
    current = current_sample(samples)
    if current is None:
        return Persistence(PersistenceState.UNKNOWN, tuple(samples), (), trends)
    earlier = [s for s in samples if s.level.assessable and s.time < current.time]
    earlier_high = tuple(s for s in earlier if s.level is SampleLevel.HIGH)
    state = _state(current, earlier, earlier_high, gap)
    return Persistence(state, tuple(samples), earlier_high, trends)


def _state(
    current: SampleState,
    earlier: Sequence[SampleState],
    earlier_high: Sequence[SampleState],
    gap: timedelta,
) -> PersistenceState:
    """Persistent, new, resolving, single-sample or never-high, as the module docstring says."""
    if current.level is SampleLevel.HIGH:
        if any(s.time <= current.time - gap for s in earlier_high):
            return PersistenceState.PERSISTENT
        if len(earlier_high) < len(earlier):
            return PersistenceState.NEW
        return PersistenceState.SINGLE_SAMPLE
    if earlier_high:
        return PersistenceState.RESOLVING
    if _distinct_samples([*earlier, current], gap) >= 2:
        return PersistenceState.NEVER_HIGH
    return PersistenceState.SINGLE_SAMPLE


def _distinct_samples(samples: Sequence[SampleState], gap: timedelta) -> int:
    """How many samples remain when consecutive ones under `gap` apart with one level merge."""
    count, previous = 0, None
    for sample in samples:
        merged = (
            previous is not None
            and sample.level is previous.level
            and sample.time - previous.time < gap
        )
        count += not merged
        previous = sample
    return count


# --- trends -----------------------------------------------------------------------------------


def trends_of(timeline: Timeline) -> dict[str, MarkerTrend]:
    """First, baseline, peak, latest and direction of every analyte with counted results."""
    return {analyte: _trend(series.analyte, series) for analyte, series in timeline.series.items()}


def _trend(analyte: str, series: MarkerSeries) -> MarkerTrend:
    """One analyte's trend from the first to the latest counted result."""
    values = series.values
    peak = max(values, key=lambda m: m.value)
    return MarkerTrend(
        analyte=analyte,
        first=values[0],
        baseline=series.baseline,
        peak=peak,
        latest=values[-1],
        direction=_direction(values[0], values[-1]) if len(values) > 1 else "single",
    )


def _direction(first: Measurement, latest: Measurement) -> str:
    """Rising or falling when the latest differs from the first by more than TREND_CHANGE."""
    if first.value <= 0:
        return "rising" if latest.value > first.value else "stable"
    change = (latest.value - first.value) / first.value
    if change > TREND_CHANGE:
        return "rising"
    return "falling" if change < -TREND_CHANGE else "stable"
