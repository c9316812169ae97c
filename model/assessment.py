"""The contract between scoring and the rest of the product.

A `Timeline` (built by `model.timeline.build_timeline`) goes into a `Scorer`; an `Assessment`
comes out. Cards, the FHIR resources we emit, evaluation reports and benchmarks read only these
types. Pure data: no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol, runtime_checkable

from fhir_mappings.measurement import Exclusion, Measurement


class Pathway(StrEnum):
    BIOMARKER_GUIDED = "biomarker-guided"
    STANDARD = "standard"
    INSUFFICIENT_DATA = "insufficient-data"


class Endotype(StrEnum):
    HYPERINFLAMMATORY = "hyperinflammatory-il6-ifng"  # JAK/STAT-high, the high-risk class
    INTERMEDIATE = "intermediate"
    QUIESCENT = "quiescent"
    UNDETERMINED = "undetermined"


@dataclass(frozen=True, slots=True)
class MarkerSeries:
    """All counted results of one analyte inside the window, oldest first."""

    analyte: str
    values: tuple[Measurement, ...]

    @property
    def baseline(self) -> Measurement:
        """Earliest result in the window."""
        return self.values[0]

    @property
    def latest(self) -> Measurement:
        """Most recent result in the window."""
        return self.values[-1]


@dataclass(frozen=True, slots=True)
class Timeline:
    """A patient's panel results relative to one moment and one look-back window."""

    now: datetime
    window: timedelta
    series: Mapping[str, MarkerSeries]  # analyte -> counted results within the window
    # latest result of an analyte whose every result is older than the window
    stale: Mapping[str, Measurement] = field(default_factory=dict)
    preliminary: tuple[Measurement, ...] = ()  # shown as preliminary, never scored
    exclusions: tuple[Exclusion, ...] = ()


@dataclass(frozen=True, slots=True)
class Evidence:
    """One rule or model term, whether it fired, and where its threshold comes from."""

    id: str
    description: str  # e.g. "Ferritin >= 500 ng/mL"
    met: bool | None  # None: could not be evaluated (input missing)
    analytes: tuple[str, ...]
    citation: str = ""
    citation_url: str = ""
    note: str = ""  # e.g. "adult threshold", "reported only"


@dataclass(frozen=True, slots=True)
class ScorerInfo:
    id: str
    version: str
    kind: str  # "rules" | "model"
    description: str
    content_hash: str | None = None  # sha256 of the rule or model file
    synthetic_training_data: bool = False
    url: str | None = None  # where the rule set or model card is described


@dataclass(frozen=True, slots=True)
class Assessment:
    """What a scorer concluded, with everything a clinician needs to check the reasoning."""

    pathway: Pathway
    endotype: Endotype
    scorer: ScorerInfo
    evidence: tuple[Evidence, ...]
    used: Mapping[str, MarkerSeries]  # markers that informed the result
    missing: tuple[str, ...]  # analytes with no usable result in the window
    required: tuple[str, ...]  # analytes required before "standard" may be said
    reasons: tuple[str, ...] = ()  # short sentences explaining the pathway
    probability: float | None = None  # model only: probability of the high-risk class
    class_probabilities: Mapping[str, float] | None = None
    contributions: tuple[tuple[str, float], ...] = ()  # model only: (analyte, signed weight)
    limitations: tuple[str, ...] = ()


@runtime_checkable
class Scorer(Protocol):
    """Anything that turns a timeline into an assessment. Rules and models both implement it."""

    @property
    def info(self) -> ScorerInfo: ...

    def assess(self, timeline: Timeline) -> Assessment: ...
