"""The Phoenix score as context and anchor for one hook: settings, the course, its onset, sepsis.

`assess_phoenix` takes the gathered resources of one patient (plain dicts), the encounter judged
by the PICU gate (`EncounterFacts`) and the time of the hook, and returns a `PhoenixContext`:

- the course: hourly from the encounter start to now, at most the last `course_days` days
  (`model.phoenix.phoenix_course`); not computed without an encounter start;
- the onset: the first point with a score of 2 or more. When the course was cut to `course_days`
  and its first point already scores 2 or more, the onset lies before the course: it is reported
  as such and is not an anchor (the anchor then falls back to the PICU admission); nor is it when
  a Phoenix search left older pages unread;
- the infection signal (`[phoenix.infection]`): a configured Condition, or a culture with at
  least `min_antimicrobial_doses` antimicrobial doses, from the course start less a day to now.
  Only with it does the card say "sepsis"; otherwise "organ dysfunction (Phoenix score ≥ 2)".

The Phoenix score is context and anchor only: nothing here reaches the endotype rules.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fhir_mappings.encounters import EncounterFacts
from fhir_mappings.infection import InfectionCodes, InfectionEvidence, infection_evidence
from fhir_mappings.phoenix_config import PhoenixCodeSettings
from fhir_mappings.phoenix_inputs import (
    PhoenixCatalog,
    extract_phoenix,
    load_phoenix_catalog,
    phoenix_patient,
)
from model.context import PHOENIX_ORGAN_DYSFUNCTION, PHOENIX_SEPSIS, SystemCodeText
from model.phoenix import ONSET_THRESHOLD, PhoenixCourse, PhoenixPoint, phoenix_course

EVIDENCE_LEAD = timedelta(hours=24)  # signs of infection counted from this long before the course


class InfectionSignalSettings(BaseModel):
    """`[phoenix.infection]`: what counts as suspected infection at this site (off by default)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    condition_codes: tuple[SystemCodeText, ...] = ()  # Condition.code, e.g. SNOMED 91302008
    culture_codes: tuple[SystemCodeText, ...] = ()  # ServiceRequest/Observation.code of a culture
    antimicrobial_codes: tuple[SystemCodeText, ...] = ()  # RxNorm ingredient or drug codes
    min_antimicrobial_doses: int = Field(2, ge=1)  # administrations (an order counts as all)

    @model_validator(mode="after")
    def _cultures_need_antimicrobials(self) -> InfectionSignalSettings:
        """ "Cultures with antimicrobials" needs both code lists, or neither."""
        if bool(self.culture_codes) != bool(self.antimicrobial_codes):
            raise ValueError(
                "phoenix.infection: set both culture_codes and antimicrobial_codes, or neither"
            )
        return self


class PhoenixSettings(PhoenixCodeSettings):
    """`[phoenix]`: the Phoenix layer's switches, bounds and infection signal, plus the site's
    code additions (`PhoenixCodeSettings`: local codes, routes, BP methods, DDU factor)."""

    enabled: bool = True
    phoenix8: bool = False  # research only: Phoenix-8 in the card's extension
    course_days: float = Field(14.0, gt=0, le=60)  # the course covers at most the last N days
    series_days: float = Field(7.0, gt=0, le=60)  # hourly points in the card's extension
    page_size: int = Field(500, ge=1, le=1000)  # `_count` of the Phoenix searches
    medication_chain: bool = False  # the site names drugs through Medication resources
    infection: InfectionSignalSettings = Field(default_factory=InfectionSignalSettings)

    @model_validator(mode="after")
    def _codes_load(self) -> PhoenixSettings:
        """The site's code additions must load (known inputs, convertible units)."""
        load_phoenix_catalog(self)
        return self

    def infection_codes(self) -> InfectionCodes:
        """The infection signal's codes for the FHIR layer."""
        return InfectionCodes(
            condition_codes=self.infection.condition_codes,
            culture_codes=self.infection.culture_codes,
            antimicrobial_codes=self.infection.antimicrobial_codes,
            medications_from=self.vasoactives_from,
        )

    @property
    def course_span(self) -> timedelta:
        """The longest course, as a timedelta."""
        return timedelta(days=self.course_days)


@dataclass(frozen=True, slots=True)
class InfectionSignal:
    """Why the child counts as suspected of infection, and since when."""

    basis: str  # "condition" | "cultures-with-antimicrobials"
    time: datetime  # the earliest sign that completed the signal
    sources: tuple[str, ...]  # "Condition/1", "ServiceRequest/2", ...


@dataclass(frozen=True, slots=True)
class PhoenixContext:
    """The Phoenix course of the encounter, its onset and whether "sepsis" may be said."""

    course: PhoenixCourse | None  # None when not computed (see `not_computed`)
    onset: PhoenixPoint | None  # the first point scoring 2 or more, when it is an anchor
    onset_before: datetime | None = None  # the course was cut and scored ≥ 2 from its start
    infection: InfectionSignal | None = None
    not_computed: str | None = None  # e.g. "no encounter start"
    truncated: bool = False  # the course starts `course_days` before now, after the encounter
    incomplete: bool = False  # older inputs were left unread (paging): the onset is not judged
    excluded: Mapping[str, int] | None = None  # excluded inputs by input key
    series_hours: float = 168.0  # the latest hours of the course shown as a series

    @property
    def onset_time(self) -> datetime | None:
        """The onset as an anchor time, or None."""
        return self.onset.time if self.onset is not None else None

    @property
    def criterion(self) -> str:
        """What the onset marks: organ dysfunction, or sepsis with the site's infection signal."""
        return PHOENIX_SEPSIS if self.infection is not None else PHOENIX_ORGAN_DYSFUNCTION


def assess_phoenix(
    *,
    patient: Mapping[str, Any] | None,
    encounter: EncounterFacts | None,
    resources: Iterable[Mapping[str, Any]],
    now: datetime,
    settings: PhoenixSettings,
    catalog: PhoenixCatalog | None = None,
    patient_id: str | None = None,
    incomplete: bool = False,
) -> PhoenixContext:
    """The Phoenix context of one hook call from the patient's gathered resources.

    With `incomplete` (a Phoenix search left pages unread) the course is computed on what was
    read, but its onset is not an anchor: an earlier onset may sit in the unread inputs.
    """
    start = encounter.start if encounter is not None else None
    if start is None or start > now:
        return PhoenixContext(None, None, not_computed="no encounter start")
    catalog = catalog or load_phoenix_catalog(settings)
    items = [item for item in resources if isinstance(item, Mapping)]
    signals = phoenix_patient(patient, encounter, items)
    extraction = extract_phoenix(items, catalog, patient_id=patient_id)
    course_start = max(start, now - settings.course_span)
    course = phoenix_course(
        extraction.readings,
        signals,
        start=course_start,
        end=now,
        catalog=catalog,
        phoenix8=settings.phoenix8,
    )
    truncated = course_start > start
    onset, onset_before = _onset(course, truncated)
    if incomplete:
        onset = None
    evidence = infection_evidence(items, settings.infection_codes(), patient_id=patient_id)
    return PhoenixContext(
        course=course,
        onset=onset,
        onset_before=onset_before,
        infection=infection_signal(evidence, settings.infection, course_start, now),
        truncated=truncated,
        incomplete=incomplete,
        excluded=dict(Counter(exclusion.input for exclusion in extraction.exclusions)),
        series_hours=settings.series_days * 24,
    )


def _onset(course: PhoenixCourse, truncated: bool) -> tuple[PhoenixPoint | None, datetime | None]:
    """(onset, None), or (None, first point time) when a cut course scores ≥ 2 from its start."""
    onset = course.onset
    first = course.points[0] if course.points else None
    if truncated and onset is not None and first is not None and first.total >= ONSET_THRESHOLD:
        return None, first.time
    return onset, None


def infection_signal(
    evidence: Iterable[InfectionEvidence],
    settings: InfectionSignalSettings,
    start: datetime,
    now: datetime,
) -> InfectionSignal | None:
    """A configured Condition, else a culture with enough antimicrobial doses, in the window."""
    window = [e for e in evidence if start - EVIDENCE_LEAD <= e.time <= now]
    conditions = [e for e in window if e.kind == "condition"]
    if conditions:
        return InfectionSignal("condition", conditions[0].time, _sources(conditions))
    cultures = [e for e in window if e.kind == "culture"]
    doses = [e for e in window if e.kind == "antimicrobial"]
    orders = [e for e in doses if (e.source or "").startswith("MedicationRequest/")]
    enough = orders or len(doses) >= settings.min_antimicrobial_doses
    if not (cultures and enough):
        return None
    needed = doses[: 1 if orders else settings.min_antimicrobial_doses]
    time = max(cultures[0].time, needed[-1].time)
    return InfectionSignal("cultures-with-antimicrobials", time, _sources([cultures[0], *needed]))


def _sources(evidence: Iterable[InfectionEvidence]) -> tuple[str, ...]:
    return tuple(e.source for e in evidence if e.source is not None)
