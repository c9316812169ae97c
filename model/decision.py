"""The one pathway decision both scorers use, from the per-sample states at and after the anchor.

The current state is the state at the latest assessable sample at or after the anchor; results
from before the anchor alone never make a current state. `DECISION_STEPS` states the order in
words (the model card shows it); `decide` applies it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fhir_mappings.measurement import Measurement
from model.assessment import DecisionKind, Endotype, Pathway
from model.persistence import current_sample
from model.rules_v2 import RuleSetV2
from model.states import SampleLevel, SampleState
from model.timeframe import Phase, TimeFrame

DECISION_STEPS: tuple[str, ...] = (
    "No assessable IL-6/IFN-γ-axis sample at or after the anchor: insufficient data "
    "(results from before the anchor alone never make a current state).",
    "The latest assessable sample older than current_max_age: insufficient data (stale).",
    "Current sample high (both axes markedly raised): biomarker-guided, endotype "
    "hyperinflammatory-il6-ifng, whatever ferritin and CRP show.",
    "A later sample with one axis markedly raised and the other axis not measured within the "
    "pairing span (or not comparable): insufficient data; an extreme value is never answered "
    "with reassurance.",
    "Current sample partial (one axis markedly raised, the other not): insufficient data, "
    'undetermined, headed "Discordant"; never standard.',
    "Current sample not-high with both axes known and ferritin and CRP current: standard; "
    "endotype intermediate when an inflammation finding is met, else quiescent; the card says "
    '"resolving" and shows the earlier values when an earlier sample was high.',
    "Anything else: insufficient data, naming what is missing.",
)


@dataclass(frozen=True, slots=True)
class Decision:
    """The pathway and endotype, the branch that gave them, and what was missing."""

    kind: DecisionKind
    pathway: Pathway
    endotype: Endotype
    current: SampleState | None
    reasons: tuple[str, ...]
    unmet: tuple[str, ...] = ()  # labels of what a standard answer still needs


def decide(
    samples: Sequence[SampleState],
    frame: TimeFrame,
    rule_set: RuleSetV2,
    current_values: Mapping[str, Measurement],
    *,
    inflamed: bool,
    not_high_endotype: Endotype | None = None,
) -> Decision:
    """Apply the decision order of the module docstring to the samples."""
    current = current_sample(samples)
    if current is None:
        return _no_current(samples, rule_set)
    if frame.now - current.time > frame.current_max_age:
        return _insufficient(
            DecisionKind.STALE, current, ("The latest assessable sample is stale.",)
        )
    if current.level is SampleLevel.HIGH:
        reason = f"Both axes markedly raised: {_marked_names(current, rule_set)}."
        return Decision(
            DecisionKind.HIGH,
            Pathway.BIOMARKER_GUIDED,
            Endotype.HYPERINFLAMMATORY,
            current,
            (reason,),
        )
    unpaired = _unpaired_marked(samples, current)
    if unpaired is not None:
        return _unpaired(unpaired, current, rule_set)
    if current.level is SampleLevel.PARTIAL:
        return _insufficient(DecisionKind.DISCORDANT, current, (discordance(current),))
    unmet = _unmet(current, rule_set, current_values)
    if unmet:
        reason = f"Needed before a standard answer: {', '.join(unmet)}."
        return _insufficient(DecisionKind.MISSING_INPUTS, current, (reason,), unmet)
    endotype = not_high_endotype or (Endotype.INTERMEDIATE if inflamed else Endotype.QUIESCENT)
    reason = "Neither axis markedly raised."
    return Decision(DecisionKind.NOT_HIGH, Pathway.STANDARD, endotype, current, (reason,))


def discordance(sample: SampleState) -> str:
    """ "Discordant: IL-6 markedly raised, IFN-γ axis not" (or the reverse)."""
    marked = [axis.label for axis in sample.axes if axis.marked]
    other = [axis.label for axis in sample.axes if axis.marked is False]
    if not marked or not other:
        return "Neither axis markedly raised."
    return f"Discordant: {marked[0]} markedly raised, {other[0]} not"


def _no_current(samples: Sequence[SampleState], rule_set: RuleSetV2) -> Decision:
    """Insufficient data: nothing assessable since the anchor."""
    before = any(s.level.assessable for s in samples if s.phase is Phase.PRE_ANCHOR)
    if before:
        reason = "IL-6/IFN-γ-axis results only from before the anchor: no current state."
        return _insufficient(DecisionKind.PRE_ANCHOR_ONLY, None, (reason,))
    labels = tuple(_axis_need(axis.label, axis.analytes, rule_set) for axis in rule_set.axes)
    reason = f"No assessable IL-6/IFN-γ-axis sample since the anchor: needs {' and '.join(labels)}."
    return _insufficient(DecisionKind.NO_SAMPLE, None, (reason,), labels)


def _unpaired_marked(samples: Sequence[SampleState], current: SampleState) -> SampleState | None:
    """The latest sample after the current one with an axis markedly raised but unassessable."""
    later = [
        s
        for s in samples
        if s.time > current.time and not s.level.assessable and any(a.marked for a in s.axes)
    ]
    return later[-1] if later else None


def _unpaired(sample: SampleState, current: SampleState, rule_set: RuleSetV2) -> Decision:
    """Insufficient data: a newer markedly raised result whose partner axis is unmeasured."""
    marked = next(axis for axis in sample.axes if axis.marked)
    other = next(axis for axis in rule_set.axes if axis.id != marked.axis)
    need = _axis_need(other.label, other.analytes, rule_set)
    reason = (
        f"{marked.label} markedly raised with no {need} within {rule_set.pairing_hours:g} h "
        "before it: the pattern cannot be assessed."
    )
    return _insufficient(DecisionKind.UNPAIRED_MARKED, sample, (reason,), (need,))


def _unmet(
    current: SampleState, rule_set: RuleSetV2, current_values: Mapping[str, Measurement]
) -> tuple[str, ...]:
    """Axes without a known reading at the current sample, then required analytes not current."""
    axes = [
        _axis_need(spec.label, spec.analytes, rule_set)
        for spec, reading in zip(rule_set.axes, current.axes, strict=True)
        if reading.marked is None
    ]
    required = [rule_set.label(a) for a in rule_set.required if a not in current_values]
    return (*axes, *required)


def _axis_need(label: str, analytes: Sequence[str], rule_set: RuleSetV2) -> str:
    """How a missing axis is named: its analytes joined with "or"."""
    return " or ".join(rule_set.label(a) for a in analytes) if len(analytes) > 1 else label


def _marked_names(sample: SampleState, rule_set: RuleSetV2) -> str:
    """The analytes that made each axis marked, e.g. "IL-6 and CXCL9"."""
    names = [
        rule_set.label(j.measurement.analyte)
        for axis in sample.axes
        for j in axis.judgements
        if j.marked
    ]
    return " and ".join(dict.fromkeys(names))


def _insufficient(
    kind: DecisionKind,
    current: SampleState | None,
    reasons: tuple[str, ...],
    unmet: tuple[str, ...] = (),
) -> Decision:
    """Insufficient data, undetermined, with the reasons and what is missing."""
    return Decision(kind, Pathway.INSUFFICIENT_DATA, Endotype.UNDETERMINED, current, reasons, unmet)
