"""Time on the patient's chart: the anchor, the frame around it, and results placed in phases.

A `TimeFrame` says when the assessment happens (`now`), when the early window opens (the
`Anchor`: onset of organ dysfunction or its stand-in) and how far back results still count. A
`Timeline` (built by `model.timeline.build_timeline`) holds each analyte's counted results on that
frame, each tagged with its `Phase`. Pure data: no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from fhir_mappings.measurement import Exclusion, Measurement
from model.context import Anchor, AnchorSource  # the anchor is the care context's


class Phase(StrEnum):
    """Where a result lies relative to the time anchor."""

    PRE_ANCHOR = "pre-anchor"  # in the look-back before the anchor: context and persistence only
    EARLY = "early"  # the early window [anchor, anchor + window]: baseline and model features
    LATER = "later"  # after the early window: still counts for the current state


@dataclass(frozen=True, slots=True)
class TimeFrame:
    """The assessment moment, the anchor and the spans that place each result in a phase."""

    now: datetime
    anchor: Anchor
    window: timedelta = timedelta(hours=48)
    look_back: timedelta = timedelta(days=7)
    current_max_age: timedelta = timedelta(hours=72)

    def __post_init__(self) -> None:
        """Refuse naive times and non-positive spans, which would silently misplace results."""
        for moment in (self.now, self.anchor.time):
            if moment.tzinfo is None or moment.utcoffset() is None:
                raise ValueError("now and the anchor time must be timezone-aware")
        if min(self.window, self.current_max_age) <= timedelta(0):
            raise ValueError("window and current_max_age must be positive")
        if self.look_back < timedelta(0):
            raise ValueError("look_back must not be negative")
        if self.anchor.time > self.now:
            raise ValueError("the anchor must not be after now")

    @property
    def early_end(self) -> datetime:
        """When the early window closes."""
        return self.anchor.time + self.window

    @property
    def look_back_start(self) -> datetime:
        """The oldest moment a counted result may have and still be used."""
        return self.anchor.time - self.look_back

    @property
    def since_anchor(self) -> timedelta:
        """How long ago the anchor was."""
        return self.now - self.anchor.time

    @property
    def in_early_window(self) -> bool:
        """True while now is within the early window."""
        return self.now <= self.early_end

    def phase(self, moment: datetime) -> Phase:
        """The phase of a moment at or after the look-back start."""
        if moment < self.anchor.time:
            return Phase.PRE_ANCHOR
        return Phase.EARLY if moment <= self.early_end else Phase.LATER


def assessment_time_frame(now: datetime, window: timedelta, **spans: timedelta) -> TimeFrame:
    """A frame whose anchor is now − window: used when no onset or admission time is known."""
    hours = round(window.total_seconds() / 3600)
    detail = f"no onset or admission time found: assessment time minus {hours} h"
    anchor = Anchor(now - window, AnchorSource.ASSESSMENT_TIME, detail)
    return TimeFrame(now=now, anchor=anchor, window=window, **spans)


@dataclass(frozen=True, slots=True)
class MarkerSeries:
    """All counted results of one analyte from the look-back start on, oldest first."""

    analyte: str
    values: tuple[Measurement, ...]
    phases: tuple[Phase, ...]  # one per value

    def __post_init__(self) -> None:
        """A series has exactly one phase per value."""
        if len(self.phases) != len(self.values):
            raise ValueError("a MarkerSeries needs one phase per value")

    @property
    def first(self) -> Measurement:
        """The oldest result."""
        return self.values[0]

    @property
    def latest(self) -> Measurement:
        """The most recent result."""
        return self.values[-1]

    def in_phase(self, *phases: Phase) -> tuple[Measurement, ...]:
        """The results in any of the given phases, oldest first."""
        return tuple(v for v, p in zip(self.values, self.phases, strict=True) if p in phases)

    @property
    def baseline(self) -> Measurement | None:
        """The first result in the early window; never a pre-anchor one."""
        early = self.in_phase(Phase.EARLY)
        return early[0] if early else None

    @property
    def since_anchor(self) -> tuple[Measurement, ...]:
        """The results at or after the anchor."""
        return self.in_phase(Phase.EARLY, Phase.LATER)


@dataclass(frozen=True, slots=True)
class Timeline:
    """A patient's panel results placed on one time frame."""

    frame: TimeFrame
    series: Mapping[str, MarkerSeries]  # analyte -> counted results from the look-back start
    # latest counted result of an analyte whose every result is older than the look-back
    older: Mapping[str, Measurement] = field(default_factory=dict)
    preliminary: tuple[Measurement, ...] = ()  # shown as preliminary, never scored
    exclusions: tuple[Exclusion, ...] = ()

    @property
    def now(self) -> datetime:
        """The assessment moment."""
        return self.frame.now

    @property
    def window(self) -> timedelta:
        """The early window's length."""
        return self.frame.window

    @property
    def anchor(self) -> Anchor:
        """The time anchor."""
        return self.frame.anchor
