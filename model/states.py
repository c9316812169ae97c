"""Per-result judgements, per-sample states and persistence: what rules v2 and the decision share.

Each IL-6, IFN-γ or CXCL9 result is judged against its best upper limit ("above normal") and a
"markedly raised" threshold (`Judgement`). At each sampling time the two axes (IL-6; the IFN-γ
axis, IFN-γ or CXCL9) are read (`AxisReading`) and give the sample a level (`SampleState`). The
levels over time give the persistence state (`Persistence`). Pure data: no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from fhir_mappings.measurement import Measurement
from model.timeframe import Phase


class LimitSource(StrEnum):
    """Where an upper limit of normal came from, best first."""

    LABORATORY = "laboratory"  # the Observation's own referenceRange.high
    SITE = "site"  # a per-assay limit set in the site's settings
    PUBLISHED = "published"  # the rule file's default, naming population, specimen and assay


@dataclass(frozen=True, slots=True)
class UpperLimit:
    """The upper limit of normal one result was judged against."""

    value: float
    unit: str
    source: LimitSource
    text: str  # e.g. "laboratory reference range", the site's source, the published source


class MarkedBasis(StrEnum):
    """Where a "markedly raised" threshold came from."""

    CITED = "cited"  # an absolute cut-off from a cited primary source
    SERVICE_MULTIPLE = "service-multiple"  # the rule file's default multiple of the upper limit
    SITE_MULTIPLE = "site-multiple"  # a multiple of the upper limit set by the site


@dataclass(frozen=True, slots=True)
class MarkedThreshold:
    """The "markedly raised" threshold applied to one result, with its basis."""

    value: float
    unit: str
    inclusive: bool  # True: ≥, False: >
    basis: MarkedBasis
    short: str  # e.g. "Xu 2012", "site multiple"
    citation: str = ""
    citation_url: str = ""
    multiple: float | None = None  # for the multiple bases: value = multiple × upper limit

    @property
    def operator(self) -> str:
        """ "≥" or ">"."""
        return "≥" if self.inclusive else ">"


@dataclass(frozen=True, slots=True)
class Judgement:
    """One axis result against its upper limit and its "markedly raised" threshold."""

    measurement: Measurement
    upper_limit: UpperLimit | None
    above_normal: bool | None  # None: no limit, or the comparator straddles it
    threshold: MarkedThreshold | None
    marked: bool | None  # None: no threshold, or the comparator straddles it


@dataclass(frozen=True, slots=True)
class AxisReading:
    """One axis at one sampling time: its results paired within the pairing span, and whether
    any of them is markedly raised (None when that cannot be said)."""

    axis: str  # axis id, e.g. "il6", "ifng-axis"
    label: str
    marked: bool | None
    judgements: tuple[Judgement, ...] = ()


class SampleLevel(StrEnum):
    """The state of the IL-6/IFN-γ axis at one sampling time."""

    HIGH = "high"  # both axes markedly raised
    PARTIAL = "partial"  # exactly one axis marked, the other known not marked
    NOT_HIGH = "not-high"  # at least one axis known not marked, and not partial
    UNKNOWN = "unknown"  # neither of the above can be said

    @property
    def assessable(self) -> bool:
        """True for every level but unknown."""
        return self is not SampleLevel.UNKNOWN


@dataclass(frozen=True, slots=True)
class SampleState:
    """The level at one sampling time, with the axis readings that gave it."""

    time: datetime
    phase: Phase
    level: SampleLevel
    axes: tuple[AxisReading, ...]
    judged_by: str = "rules"  # "model" when the model's class stands for this sample


class PersistenceState(StrEnum):
    """How the level changed over the sampling times."""

    PERSISTENT = "persistent"  # high now, and high at a sample ≥ 24 h before
    NEW = "new"  # high now, an earlier sample not-high or partial
    RESOLVING = "resolving"  # not-high or partial now, an earlier sample high
    SINGLE_SAMPLE = "single-sample"  # one assessable sample (or only high ones < 24 h apart)
    NEVER_HIGH = "never-high"  # two or more assessable samples, none high
    UNKNOWN = "unknown"  # no assessable sample at or after the anchor


@dataclass(frozen=True, slots=True)
class MarkerTrend:
    """One analyte from the look-back start on: first, baseline, peak, latest and direction."""

    analyte: str
    first: Measurement
    baseline: Measurement | None  # first result in the early window
    peak: Measurement
    latest: Measurement
    direction: str  # "rising", "falling", "stable" or "single"


@dataclass(frozen=True, slots=True)
class Persistence:
    """The persistence state, the samples it was read from and the per-analyte trends."""

    state: PersistenceState
    samples: tuple[SampleState, ...] = ()
    earlier_high: tuple[SampleState, ...] = ()  # high samples before the current one
    trends: Mapping[str, MarkerTrend] = field(default_factory=dict)
