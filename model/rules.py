"""Scorer v1: published, cited thresholds kept as versioned data in `rules_v1.toml`.

The decision is documented at the top of the TOML file and implemented in `_decide`:

1. A high-risk rule met (CRP/ferritin cell or MALS), or an entry rule met together with an
   IFN-γ-axis rule met → hyperinflammatory / biomarker-guided, even with other markers missing.
2. A required marker (IL-6, ferritin, CRP) without a counted result in the window → insufficient.
3. An entry or high-risk rule that cannot be decided (comparator straddles the threshold) →
   insufficient.
4. An entry rule met while the IFN-γ axis is neither shown elevated nor shown normal →
   insufficient: the axis is needed to tell intermediate from hyperinflammatory.
5. An entry rule met → intermediate / standard; none met → quiescent / standard.

Rules read each analyte's latest counted result. A comparator is handled honestly: "<5" satisfies
"≤ 5" but never "≥ t"; ">5000" satisfies "> 4420"; anything that cannot be decided is `None`.
"""

from __future__ import annotations

import functools
import hashlib
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fhir_mappings.measurement import Measurement
from fhir_mappings.panel import Panel, load_panel
from model.assessment import (
    Assessment,
    Endotype,
    Evidence,
    MarkerSeries,
    Pathway,
    ScorerInfo,
    Timeline,
    rule_set_info,
)
from model.comparison import Operator, satisfies
from model.timeline import last_window

RULES_PATH = Path(__file__).with_name("rules_v1.toml")


class Role(StrEnum):
    """The part a rule plays in the decision."""

    ENTRY = "entry"  # inflammation entry criterion (ferritin ≥ 500, CRP ≥ 40)
    HIGH_RISK = "high-risk"  # decides hyperinflammatory on its own (CRP/ferritin cell, MALS)
    IFNG_AXIS = "ifng-axis"  # IFN-γ activity marker above its upper limit (CXCL9, IFN-γ)
    REPORTED = "reported"  # shown, never decides (IL-6)
    CONTEXT = "context"  # shown, never decides (lymphocytes, platelets)


class _Frozen(BaseModel):
    """Immutable, and unknown keys in the rule file are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Criterion(_Frozen):
    """One comparison of an analyte's latest result with a threshold in its canonical unit."""

    analyte: str
    operator: Operator
    threshold: float
    unit: str


class Rule(_Frozen):
    """One cited rule: all of its criteria must hold."""

    id: str
    role: Role
    description: str
    citation: str
    citation_url: str = Field(pattern=r"^https://")
    note: str = Field(min_length=1)  # e.g. "adult threshold", "reported only"
    criteria: tuple[Criterion, ...] = Field(min_length=1)

    @property
    def analytes(self) -> tuple[str, ...]:
        """The analytes this rule reads, in criterion order."""
        return tuple(dict.fromkeys(c.analyte for c in self.criteria))


class Trend(_Frozen):
    """The ferritin kinetic note: shown as evidence, never a decider."""

    id: str
    analyte: str
    unit: str
    min_fall_fraction: float = Field(gt=0, lt=1)
    min_span_hours: float = Field(gt=0)
    description: str
    citation: str
    citation_url: str = Field(pattern=r"^https://")
    note: str = ""


class RuleSet(_Frozen):
    """The whole rule file, validated at load."""

    id: str
    version: str
    title: str
    description: str
    required: tuple[str, ...] = Field(min_length=1)
    limitations: tuple[str, ...] = Field(min_length=1)
    rules: tuple[Rule, ...] = Field(min_length=1)
    trend: Trend

    @model_validator(mode="after")
    def _consistent(self) -> RuleSet:
        """Unique ids, every deciding role present, every required analyte read by a rule."""
        ids = [rule.id for rule in self.rules] + [self.trend.id]
        if len(ids) != len(set(ids)):
            raise ValueError("rule ids must be unique")
        for role in (Role.ENTRY, Role.HIGH_RISK, Role.IFNG_AXIS):
            if not self.by_role(role):
                raise ValueError(f"the rule set needs at least one {role} rule")
        read = {a for rule in self.rules for a in rule.analytes}
        if set(self.required) - read:
            raise ValueError(f"required analytes without a rule: {set(self.required) - read}")
        return self

    @property
    def analytes(self) -> tuple[str, ...]:
        """Every analyte any rule reads: the required ones first, then by first appearance."""
        read = (a for rule in self.rules for a in rule.analytes)
        return tuple(dict.fromkeys((*self.required, *read)))

    def by_role(self, role: Role) -> tuple[Rule, ...]:
        """The rules that play one part in the decision."""
        return tuple(rule for rule in self.rules if rule.role is role)

    def check_vocabulary(self, panel: Panel) -> None:
        """Refuse an analyte the panel does not know, or a threshold not in its canonical unit."""
        compared = [(c.analyte, c.unit) for rule in self.rules for c in rule.criteria]
        compared.append((self.trend.analyte, self.trend.unit))
        for analyte, unit in compared:
            if analyte not in panel.analytes:
                raise ValueError(f"rule set {self.id}: {analyte!r} is not a panel analyte")
            if unit != panel.analytes[analyte].unit:
                canonical = panel.analytes[analyte].unit
                raise ValueError(f"rule set {self.id}: {analyte} in {unit}, not in {canonical}")


# --- comparing one result with one threshold -------------------------------------------------


def compare(measurement: Measurement, criterion: Criterion) -> bool | None:
    """Whether a result satisfies a criterion; None when units differ or it cannot be decided."""
    if measurement.unit != criterion.unit:
        return None
    return satisfies(measurement, criterion.operator, criterion.threshold)


def evaluate(rule: Rule, latest: Mapping[str, Measurement]) -> bool | None:
    """All criteria of a rule, in three-valued logic: any False → False, any None → None."""
    return evaluate_criteria(rule.criteria, latest)


def evaluate_criteria(
    criteria: Iterable[Criterion], latest: Mapping[str, Measurement]
) -> bool | None:
    """All criteria, each on its analyte's result: any False → False, any None → None."""
    results = [compare(latest[c.analyte], c) if c.analyte in latest else None for c in criteria]
    if False in results:
        return False
    return None if None in results else True


# --- the ferritin trend ---------------------------------------------------------------------


def trend_evidence(trend: Trend, series: MarkerSeries | None) -> Evidence:
    """Baseline → latest with the kinetic note; met is None when it cannot be judged."""
    met, description = None, trend.description
    if series is not None and len(series.values) > 1:
        baseline, latest = series.first, series.latest
        span = latest.time - baseline.time
        description += f": {_num(baseline.value)} → {_num(latest.value)} {latest.unit}"
        description += f" over {_hours(span)} h"
        if _trend_judgeable(trend, baseline, latest, span):
            fall = (baseline.value - latest.value) / baseline.value
            met = fall < trend.min_fall_fraction
    return Evidence(
        id=trend.id,
        description=description,
        met=met,
        analytes=(trend.analyte,),
        citation=trend.citation,
        citation_url=trend.citation_url,
        note=trend.note,
    )


def _trend_judgeable(
    trend: Trend, baseline: Measurement, latest: Measurement, span: timedelta
) -> bool:
    """Exact values in the trend's unit, a positive baseline and a long enough interval."""
    exact = baseline.comparator is None and latest.comparator is None
    units = baseline.unit == latest.unit == trend.unit
    long_enough = span >= timedelta(hours=trend.min_span_hours)
    return exact and units and baseline.value > 0 and long_enough


def _num(value: float) -> str:
    """A number without float noise or a trailing `.0`."""
    text = f"{round(value, 4):f}".rstrip("0").rstrip(".")
    return text or "0"


def _hours(span: timedelta) -> str:
    """A duration in whole hours."""
    return _num(round(span.total_seconds() / 3600))


# --- the decision ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Decision:
    """Pathway, endotype and the reasons for them."""

    pathway: Pathway
    endotype: Endotype
    reasons: tuple[str, ...]


class RuleScorer:
    """Scorer v1: the published-threshold rule set."""

    def __init__(self, rule_set: RuleSet, content_hash: str, labels: Mapping[str, str]) -> None:
        """Wrap a validated rule set, the sha256 of its file and the analytes' short labels."""
        self.rule_set = rule_set
        self.labels = dict(labels)
        self._info = rule_set_info(rule_set, content_hash)

    @property
    def info(self) -> ScorerInfo:
        """Identity, version and content hash of the rule file."""
        return self._info

    def assess(self, timeline: Timeline) -> Assessment:
        """Evaluate every rule on the latest counted results of the last window; decide."""
        timeline = last_window(timeline)
        latest = {analyte: series.latest for analyte, series in timeline.series.items()}
        outcomes = {rule.id: evaluate(rule, latest) for rule in self.rule_set.rules}
        decision = _decide(self.rule_set, self.labels, outcomes, timeline)
        missing = tuple(a for a in self.rule_set.analytes if a not in timeline.series)
        return Assessment(
            pathway=decision.pathway,
            endotype=decision.endotype,
            scorer=self.info,
            evidence=self._evidence(outcomes, timeline),
            used={a: timeline.series[a] for a in self.rule_set.analytes if a in timeline.series},
            missing=missing,
            required=self.rule_set.required,
            reasons=decision.reasons + self._missing_note(decision, missing),
            limitations=self.rule_set.limitations,
        )

    def _evidence(
        self, outcomes: Mapping[str, bool | None], timeline: Timeline
    ) -> tuple[Evidence, ...]:
        """One evidence line per rule, then the ferritin trend."""
        lines = [
            Evidence(
                id=rule.id,
                description=rule.description,
                met=outcomes[rule.id],
                analytes=rule.analytes,
                citation=rule.citation,
                citation_url=rule.citation_url,
                note=rule.note,
            )
            for rule in self.rule_set.rules
        ]
        trend = self.rule_set.trend
        lines.append(trend_evidence(trend, timeline.series.get(trend.analyte)))
        return tuple(lines)

    def _missing_note(self, decision: _Decision, missing: Sequence[str]) -> tuple[str, ...]:
        """With a positive finding, say plainly which markers are still missing."""
        if decision.pathway is not Pathway.BIOMARKER_GUIDED or not missing:
            return ()
        return (f"Still missing: {_names(self.labels, missing)}.",)


def _names(labels: Mapping[str, str], analytes: Iterable[str]) -> str:
    """Analyte labels joined for a sentence."""
    return ", ".join(labels.get(a, a) for a in analytes)


def _met(
    rules: Iterable[Rule], outcomes: Mapping[str, bool | None], value: bool | None
) -> list[Rule]:
    """The rules whose outcome is exactly `value`."""
    return [rule for rule in rules if outcomes[rule.id] is value]


def _decide(
    rule_set: RuleSet,
    labels: Mapping[str, str],
    outcomes: Mapping[str, bool | None],
    timeline: Timeline,
) -> _Decision:
    """Apply the documented decision order to the rule outcomes."""
    entry, high_risk = rule_set.by_role(Role.ENTRY), rule_set.by_role(Role.HIGH_RISK)
    axis = rule_set.by_role(Role.IFNG_AXIS)
    entry_met, axis_met = _met(entry, outcomes, True), _met(axis, outcomes, True)
    fired = _met(high_risk, outcomes, True)
    if fired or (entry_met and axis_met):
        return _hyperinflammatory(fired, entry_met, axis_met)
    absent = [a for a in rule_set.required if a not in timeline.series]
    if absent:
        return _insufficient(_absent_reasons(labels, absent, timeline))
    undecided = _met([*entry, *high_risk], outcomes, None)
    if undecided:
        return _insufficient(tuple(_undecided_reason(rule) for rule in undecided))
    if entry_met and not _axis_normal(axis, outcomes, timeline):
        return _insufficient((_axis_reason(labels, entry_met, axis, timeline),))
    if entry_met:
        return _intermediate(entry_met)
    return _quiescent(entry, axis_met)


def _axis_normal(
    axis: Sequence[Rule], outcomes: Mapping[str, bool | None], timeline: Timeline
) -> bool:
    """At least one axis marker not above its limit, and none present but undecidable."""
    present = [rule for rule in axis if all(a in timeline.series for a in rule.analytes)]
    return bool(present) and all(outcomes[rule.id] is False for rule in present)


def _hyperinflammatory(
    fired: Sequence[Rule], entry_met: Sequence[Rule], axis_met: Sequence[Rule]
) -> _Decision:
    """A positive finding, naming the rules that made it."""
    if fired:
        reasons = tuple(f"Met: {rule.description}." for rule in fired)
    else:
        reasons = (f"Met: {_descriptions(entry_met)}, together with {_descriptions(axis_met)}.",)
    return _Decision(Pathway.BIOMARKER_GUIDED, Endotype.HYPERINFLAMMATORY, reasons)


def _insufficient(reasons: tuple[str, ...]) -> _Decision:
    """Insufficient data with the reasons why."""
    return _Decision(Pathway.INSUFFICIENT_DATA, Endotype.UNDETERMINED, reasons)


def _intermediate(entry_met: Sequence[Rule]) -> _Decision:
    """Entry criterion met with the IFN-γ axis shown normal."""
    reason = (
        f"Met: {_descriptions(entry_met)}; CXCL9 and IFN-γ not above their upper limits: "
        "inflammation without an IFN-γ-axis signal."
    )
    return _Decision(Pathway.STANDARD, Endotype.INTERMEDIATE, (reason,))


def _quiescent(entry: Sequence[Rule], axis_met: Sequence[Rule]) -> _Decision:
    """No entry criterion met; an isolated IFN-γ-axis signal is mentioned as context."""
    reasons = [f"Not met: {_descriptions(entry, joiner=' nor ')}."]
    if axis_met:
        reasons.append(
            f"{_descriptions(axis_met)} without an inflammation entry criterion: shown for "
            "context, not a hyperinflammatory pattern by these rules."
        )
    return _Decision(Pathway.STANDARD, Endotype.QUIESCENT, tuple(reasons))


def _descriptions(rules: Sequence[Rule], joiner: str = " and ") -> str:
    """Rule descriptions joined for a sentence."""
    return joiner.join(rule.description for rule in rules)


def _absent_reasons(
    labels: Mapping[str, str], absent: Sequence[str], timeline: Timeline
) -> tuple[str, ...]:
    """Name required markers with no result at all, and those with only a stale result."""
    window = _hours(timeline.window)
    stale = [a for a in absent if a in timeline.older]
    never = [a for a in absent if a not in timeline.older]
    reasons = []
    if never:
        reasons.append(f"Required, no result in the last {window} h: {_names(labels, never)}.")
    if stale:
        reasons.append(f"Required, only a result older than {window} h: {_names(labels, stale)}.")
    return tuple(reasons)


def _undecided_reason(rule: Rule) -> str:
    """Why a rule could not be decided."""
    return f"Cannot be decided from the reported value (comparator or unit): {rule.description}."


def _axis_reason(
    labels: Mapping[str, str], entry_met: Sequence[Rule], axis: Sequence[Rule], timeline: Timeline
) -> str:
    """Why an entry criterion alone cannot separate intermediate from hyperinflammatory."""
    markers = _names(labels, [a for rule in axis for a in rule.analytes])
    available = any(a in timeline.series for rule in axis for a in rule.analytes)
    state = "cannot be compared with its upper limit" if available else "is not available"
    return (
        f"Met: {_descriptions(entry_met)}, but the IFN-γ axis ({markers}) {state}: it is needed "
        "to tell an intermediate from a hyperinflammatory pattern."
    )


# --- loading --------------------------------------------------------------------------------


def _read_rule_set(path: Path) -> tuple[RuleSet, str]:
    """A validated rule set and the sha256 of its file's bytes."""
    data = path.read_bytes()
    rule_set = RuleSet.model_validate(tomllib.loads(data.decode("utf-8")))
    return rule_set, hashlib.sha256(data).hexdigest()


@functools.lru_cache(maxsize=1)
def packaged_rule_set() -> RuleSet:
    """The packaged v1 rule set, read once (its `required` list is the default everywhere)."""
    return _read_rule_set(RULES_PATH)[0]


def load_rule_scorer(path: Path | None = None, panel: Panel | None = None) -> RuleScorer:
    """Read a rule file (the packaged v1 by default), check it against the panel, and score."""
    panel = panel or load_panel()
    rule_set, content_hash = _read_rule_set(path or RULES_PATH)
    rule_set.check_vocabulary(panel)
    return RuleScorer(rule_set, content_hash, panel.labels)
