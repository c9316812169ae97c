"""The contract between scoring and the rest of the product.

A `Timeline` (built by `model.timeline.build_timeline`) goes into a `Scorer`; an `Assessment`
comes out. Cards, the FHIR resources we emit, evaluation reports and benchmarks read only these
types. Pure data: no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from fhir_mappings.measurement import Measurement
from model.states import Persistence, SampleState
from model.timeframe import (  # re-exported: the scoring contract in one place
    Anchor,
    AnchorSource,
    MarkerSeries,
    Phase,
    TimeFrame,
    Timeline,
    assessment_time_frame,
)

__all__ = [
    "Anchor",
    "AnchorSource",
    "Assessment",
    "DecisionKind",
    "Endotype",
    "Evidence",
    "MarkerSeries",
    "Pathway",
    "Phase",
    "Scorer",
    "ScorerInfo",
    "TimeFrame",
    "Timeline",
    "assessment_time_frame",
]


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
class Evidence:
    """One rule or model term, whether it fired, and where its threshold comes from."""

    id: str
    description: str  # e.g. "Ferritin >= 500 ng/mL"
    met: bool | None  # None: could not be evaluated (input missing)
    analytes: tuple[str, ...]
    citation: str = ""
    citation_url: str = ""
    note: str = ""  # e.g. "adult threshold", "reported only"
    short: str = ""  # short source name for cards, e.g. "Fan 2023"
    label: str = ""  # short name for cards, e.g. "ferritin > 500"
    values: str = ""  # what was compared, when more than one value, e.g. "3,000 → 4,800 ng/mL"


@dataclass(frozen=True, slots=True)
class ScorerInfo:
    id: str
    version: str
    kind: str  # "rules" | "model"
    description: str
    content_hash: str | None = None  # sha256 of the rule or model file
    synthetic_training_data: bool = False
    url: str | None = None  # where the rule set or model card is described


class RuleSetIdentity(Protocol):
    """What a rule set file says about itself."""

    id: str
    version: str
    description: str


def rule_set_info(rule_set: RuleSetIdentity, content_hash: str) -> ScorerInfo:
    """The scorer identity of a rule set and its file's sha256."""
    return ScorerInfo(
        id=rule_set.id,
        version=rule_set.version,
        kind="rules",
        description=rule_set.description,
        content_hash=content_hash,
    )


class DecisionKind(StrEnum):
    """The branch of the shared pathway decision that gave the answer."""

    HIGH = "high"  # the current sample is IL-6/IFN-γ high: biomarker-guided
    DISCORDANT = "discordant"  # one axis markedly raised, the other not: insufficient
    NOT_HIGH = "not-high"  # neither high nor discordant, every input present: standard
    MISSING_INPUTS = "missing-inputs"  # not high, but a required input is missing
    UNPAIRED_MARKED = "unpaired-marked"  # a later axis result marked, its partner unmeasured
    STALE = "stale"  # the latest assessable sample is older than current_max_age
    PRE_ANCHOR_ONLY = "pre-anchor-only"  # assessable samples only before the anchor
    NO_SAMPLE = "no-sample"  # no assessable IL-6/IFN-γ-axis sample at all


@runtime_checkable
class Scorer(Protocol):
    """Anything that turns a timeline into an assessment. Rules and models both implement it."""

    @property
    def info(self) -> ScorerInfo: ...

    def assess(self, timeline: Timeline) -> Assessment: ...


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
    # --- rules v2 and the shared decision (empty for scorer v1) ---
    kind: DecisionKind | None = None  # which branch of the decision answered
    frame: TimeFrame | None = None
    current: SampleState | None = None  # the state at the latest assessable sample
    persistence: Persistence | None = None
    findings: tuple[Evidence, ...] = ()  # ferritin, CRP, cell-count and kinetic findings
    current_values: Mapping[str, Measurement] = field(default_factory=dict)
    unmet: tuple[str, ...] = ()  # required inputs the decision lacked, as labels
    axis_analytes: tuple[str, ...] = ()  # analytes of the IL-6 and IFN-γ axes
    model_note: str = ""  # model only: how the model's output was used
