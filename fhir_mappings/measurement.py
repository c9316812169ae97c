"""Plain data that leaves the FHIR layer: one numeric result, or one result we could not use.

Everything downstream (timeline, scorers, cards, training) consumes these types and nothing
FHIR-shaped, so the live service and model training share one code path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

COUNTED_STATUSES = frozenset({"final", "amended", "corrected"})
PRELIMINARY_STATUSES = frozenset({"preliminary"})


class ExclusionReason(StrEnum):
    """Why a panel Observation was not used; the card shows the display text."""

    ENTERED_IN_ERROR = "entered-in-error"
    CANCELLED = "cancelled"
    UNSUPPORTED_STATUS = "unsupported-status"
    NO_NUMERIC_VALUE = "no-numeric-value"
    DATA_ABSENT = "data-absent"
    UNIT_NOT_CONVERTIBLE = "unit-not-convertible"
    NO_EFFECTIVE_TIME = "no-effective-time"
    IMPRECISE_TIME = "imprecise-time"
    OTHER_PATIENT = "other-patient"
    OUTSIDE_WINDOW = "outside-window"
    IN_FUTURE = "in-future"
    MALFORMED = "malformed"
    IMPLAUSIBLE = "implausible"  # negative, impossible zero, beyond physical limits, not finite
    CONFLICTING = "conflicting"  # another copy with the same Observation id differs


@dataclass(frozen=True, slots=True)
class Measurement:
    """One numeric panel result, already in the analyte's canonical UCUM unit."""

    analyte: str  # panel key, e.g. "il6", "ferritin"
    value: float  # in `unit`
    unit: str  # canonical UCUM unit of the analyte
    time: datetime  # timezone-aware effective time (instant, dateTime or period start)
    system: str  # code system of the matched coding
    code: str  # code of the matched coding
    status: str  # final | amended | corrected | preliminary
    comparator: str | None = None  # "<", "<=", ">=", ">" as sent by the lab
    source_value: float | None = None  # value as sent, before conversion
    source_unit: str | None = None  # unit as sent, before conversion
    observation_id: str | None = None
    unit_assumed: bool = False  # no unit was sent; `source_unit` is the one the code implies
    reference_high: float | None = None  # the laboratory's upper reference limit, in `unit`
    reference_text: str | None = None  # the laboratory's reference range text, when sent

    @property
    def converted(self) -> bool:
        """True when the value was converted from another unit."""
        return self.source_unit is not None and self.source_unit != self.unit

    @property
    def counts(self) -> bool:
        """Only final, amended and corrected results may drive a decision."""
        return self.status in COUNTED_STATUSES


@dataclass(frozen=True, slots=True)
class Exclusion:
    """A panel Observation that was recognised but not used, and why."""

    reason: ExclusionReason
    detail: str  # human-readable, shown on the card
    analyte: str | None = None
    system: str | None = None
    code: str | None = None
    time: datetime | None = None
    observation_id: str | None = None


@dataclass(frozen=True, slots=True)
class Extraction:
    """What the mapping layer made of a set of Observations."""

    measurements: tuple[Measurement, ...] = ()
    exclusions: tuple[Exclusion, ...] = field(default_factory=tuple)
