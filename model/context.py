"""The care context of one hook call: is the child in the PICU, and from when does the clock run.

`assess_context` takes the facts of fhir_mappings.encounters and returns a `CareContext`:

- the gate: the encounter in question is `context.encounterId` when sent (it must be one of the
  patient's in-progress encounters), else the patient's in-progress encounter in the PICU (or the
  latest one). The child is in the PICU when an active location entry of that encounter points to
  a Location, or any ancestor through `Location.partOf`, that matches a configured type (default
  exactly v3-RoleCode PEDICU), id or identifier, or when its serviceType matches a configured code;
- the anchor, first match wins: an onset Condition, the Phoenix onset, the PICU admission, the
  encounter start, and (gate off only) the assessment time minus the window;
- the pending orders: active ServiceRequests with an order intent for panel analytes, not
  authored before the look-back (orders left open from an earlier stay are not pending).
Pure: plain facts in, plain facts out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from fhir_mappings.encounters import (
    ConditionFacts,
    EncounterFacts,
    EncounterLocationFacts,
    LocationFacts,
    OrderFacts,
)

V3_ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
PEDICU = (V3_ROLE_CODE, "PEDICU")
IN_PROGRESS = "in-progress"
NOT_OCCUPIED = frozenset({"planned", "reserved"})  # location entries the patient has not reached
NOT_A_DIAGNOSIS = frozenset({"entered-in-error", "refuted"})
# Request intents that are real orders: `order` and its specialisations (not proposal or plan).
ORDER_INTENTS = frozenset(
    {"order", "original-order", "reflex-order", "filler-order", "instance-order"}
)
_FHIR_ID = re.compile(r"[A-Za-z0-9\-\.]{1,64}")
# What a Phoenix onset marks: organ dysfunction, and sepsis only with the site's infection signal
# (phoenix-sepsis scores organ dysfunction; it does not judge suspected infection).
PHOENIX_ORGAN_DYSFUNCTION = "organ dysfunction (Phoenix score ≥ 2)"
PHOENIX_SEPSIS = "sepsis (Phoenix score ≥ 2 with suspected infection)"


def _system_code(value: Any) -> tuple[str, str]:
    """("system", "code") from "system|code" text (or an already parsed pair)."""
    if isinstance(value, tuple) and len(value) == 2:
        system, code = value
    elif isinstance(value, str) and value.count("|") == 1:
        system, code = value.split("|")
    else:
        raise ValueError(f"expected 'system|code', got {value!r}")
    if not isinstance(system, str) or not isinstance(code, str):
        raise ValueError(f"expected 'system|code', got {value!r}")
    system, code = system.strip(), code.strip()
    if not system or not code or any(char.isspace() for char in system):
        raise ValueError(f"expected 'system|code' with both parts, got {value!r}")
    return system, code


SystemCodeText = Annotated[
    tuple[str, str],
    BeforeValidator(_system_code),
    PlainSerializer(lambda pair: f"{pair[0]}|{pair[1]}", return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^[^|\s]+\|[^|]+$"}),
]


class ContextSettings(BaseModel):
    """The `[context]` settings: the PICU gate and the time anchor ("system|code" parsed once)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    picu_gate: bool = True  # false: no gate, for sites that restrict the hook in their EHR
    picu_location_types: tuple[SystemCodeText, ...] = (PEDICU,)  # Location.type codes
    picu_location_ids: tuple[str, ...] = ()  # Location ids
    picu_location_identifiers: tuple[SystemCodeText, ...] = ()  # Location.identifier system|value
    picu_service_types: tuple[SystemCodeText, ...] = ()  # Encounter.serviceType codes
    onset_condition_codes: tuple[SystemCodeText, ...] = ()  # Conditions marking the onset
    look_back_days: float = Field(7.0, gt=0)

    @field_validator("picu_location_ids", mode="before")
    @classmethod
    def _location_ids(cls, value: Any) -> Any:
        """Accept "123" or "Location/123"; refuse anything that is not a FHIR id."""
        if not isinstance(value, list | tuple):
            return value
        ids = [item.removeprefix("Location/") if isinstance(item, str) else item for item in value]
        for item in ids:
            if not isinstance(item, str) or not _FHIR_ID.fullmatch(item):
                raise ValueError(f"{item!r} is not a Location id")
        return tuple(ids)

    @model_validator(mode="after")
    def _gate_can_open(self) -> ContextSettings:
        """A gate with nothing that identifies the PICU would never let a card through."""
        criteria = (
            self.picu_location_types,
            self.picu_location_ids,
            self.picu_location_identifiers,
            self.picu_service_types,
        )
        if self.picu_gate and not any(criteria):
            raise ValueError(
                "picu_gate is on but no PICU location type, id, identifier or service type is set"
            )
        return self

    @property
    def look_back(self) -> timedelta:
        """The look-back before the anchor as a timedelta."""
        return timedelta(days=self.look_back_days)


class GateOutcome(StrEnum):
    """What the PICU gate decided; the audit record names it when no card is returned."""

    IN_PICU = "in-picu"
    NOT_IN_PICU = "not-in-picu"
    NO_ACTIVE_ENCOUNTER = "no-active-encounter"
    GATE_OFF = "gate-off"


class AnchorSource(StrEnum):
    """Where the anchor time came from, in order of precedence."""

    CONDITION = "condition"
    PHOENIX = "phoenix"
    PICU_ADMISSION = "picu-admission"
    ENCOUNTER_START = "encounter-start"
    ASSESSMENT_TIME = "assessment-time"


@dataclass(frozen=True, slots=True)
class Anchor:
    """The moment the early window opens, where it came from and a short text for card and audit."""

    time: datetime
    source: AnchorSource
    detail: str


@dataclass(frozen=True, slots=True)
class CareContext:
    """The gate's outcome, the encounter it judged, the PICU stay, the anchor and pending orders."""

    gate: GateOutcome
    in_picu: bool
    encounter: str | None  # "Encounter/<id>", or None when no in-progress encounter was found
    picu_since: datetime | None  # start of the current PICU stay, when known
    anchor: Anchor | None  # None when the gate does not fire
    pending: tuple[OrderFacts, ...]  # active orders for panel analytes
    detail: str = ""  # why, in a few words, for the audit record

    @property
    def fires(self) -> bool:
        """True when the hook goes on to assess and return a card."""
        return self.gate in (GateOutcome.IN_PICU, GateOutcome.GATE_OFF)


@dataclass(frozen=True, slots=True)
class _PicuStay:
    """Whether one encounter is in the PICU now, since when, and what matched."""

    in_picu: bool
    since: datetime | None = None
    basis: str = ""


def assess_context(
    *,
    encounters: Iterable[EncounterFacts],
    locations: Iterable[LocationFacts],
    conditions: Iterable[ConditionFacts],
    orders: Iterable[OrderFacts],
    context_encounter_id: str | None,
    now: datetime,
    settings: ContextSettings,
    window: timedelta,
    phoenix_onset: datetime | None = None,
    phoenix_infection: bool = False,
) -> CareContext:
    """The PICU gate, the time anchor and the pending orders for one hook call.

    `phoenix_onset` is the first hour the Phoenix score reached 2 in this encounter;
    `phoenix_infection` says whether the site's infection signal was present (the anchor's
    detail then says sepsis, otherwise organ dysfunction).
    """
    now = _aware_utc(now, "now")
    phoenix = _aware_utc(phoenix_onset, "phoenix_onset") if phoenix_onset is not None else None
    if window <= timedelta(0):
        raise ValueError("window must be positive")
    places = _location_index(locations)
    candidates = _candidates(tuple(encounters), context_encounter_id)
    stays = {enc.id: _picu_stay(enc, places, settings, now) for enc in candidates}
    encounter = _chosen(candidates, stays)
    stay = stays[encounter.id] if encounter is not None else _PicuStay(False)
    lower = _earliest_onset(encounter, now, settings)
    pending = _pending(orders, lower)
    gate, detail = _gate(settings, encounter, stay, context_encounter_id)
    fires = gate in (GateOutcome.IN_PICU, GateOutcome.GATE_OFF)
    anchor = None
    if fires:
        phoenix_anchor = _phoenix_anchor(phoenix, phoenix_infection, lower, now)
        anchor = _anchor(conditions, phoenix_anchor, encounter, stay, settings, now, lower, window)
    return CareContext(
        gate=gate,
        in_picu=stay.in_picu,
        encounter=f"Encounter/{encounter.id}" if encounter is not None else None,
        picu_since=stay.since if stay.in_picu else None,
        anchor=anchor,
        pending=pending,
        detail=detail,
    )


def _aware_utc(moment: datetime, name: str) -> datetime:
    """`moment` in UTC; a naive datetime is a programming error."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return moment.astimezone(UTC)


# --- the encounter in question ---------------------------------------------------------------


def _candidates(
    encounters: Sequence[EncounterFacts], context_encounter_id: str | None
) -> tuple[EncounterFacts, ...]:
    """The in-progress encounters that may be the one in question."""
    in_progress = tuple(enc for enc in encounters if enc.status == IN_PROGRESS)
    if context_encounter_id is None:
        return in_progress
    wanted = context_encounter_id.removeprefix("Encounter/")
    return tuple(enc for enc in in_progress if enc.id == wanted)[:1]


def _chosen(
    candidates: Sequence[EncounterFacts], stays: Mapping[str, _PicuStay]
) -> EncounterFacts | None:
    """The encounter in the PICU if any, else the latest started; ties by id for stable output."""
    if not candidates:
        return None

    def rank(enc: EncounterFacts) -> tuple[bool, float, str]:
        start = enc.start.timestamp() if enc.start is not None else float("-inf")
        return stays[enc.id].in_picu, start, enc.id

    return max(candidates, key=rank)


def _gate(
    settings: ContextSettings,
    encounter: EncounterFacts | None,
    stay: _PicuStay,
    context_encounter_id: str | None,
) -> tuple[GateOutcome, str]:
    """The gate's outcome and a few words on why."""
    if not settings.picu_gate:
        return GateOutcome.GATE_OFF, "PICU gate switched off in settings"
    if encounter is None:
        if context_encounter_id is not None:
            wanted = context_encounter_id.removeprefix("Encounter/")
            detail = f"Encounter/{wanted} is not among the in-progress encounters"
            return GateOutcome.NO_ACTIVE_ENCOUNTER, detail
        return GateOutcome.NO_ACTIVE_ENCOUNTER, "the patient has no in-progress encounter"
    if not stay.in_picu:
        return GateOutcome.NOT_IN_PICU, f"Encounter/{encounter.id} has no active PICU location"
    return GateOutcome.IN_PICU, f"Encounter/{encounter.id}: {stay.basis}"


# --- where the child is ----------------------------------------------------------------------


def _location_index(locations: Iterable[LocationFacts]) -> dict[str, LocationFacts]:
    """Locations by id (the first of duplicates wins)."""
    index: dict[str, LocationFacts] = {}
    for location in locations:
        index.setdefault(location.id, location)
    return index


def _picu_stay(
    encounter: EncounterFacts,
    places: Mapping[str, LocationFacts],
    settings: ContextSettings,
    now: datetime,
) -> _PicuStay:
    """Whether `encounter` is in the PICU now (by location or service type) and since when."""
    picu_entries = [
        (entry, unit)
        for entry in encounter.locations
        if (unit := _picu_unit(entry.location_id, places, settings)) is not None
    ]
    active = [(entry, unit) for entry, unit in picu_entries if _active(entry, now)]
    by_service = any(code in settings.picu_service_types for code in encounter.service_types)
    service_since = _not_after(encounter.start, now) if by_service else None
    if active:
        starts = [
            entry.start
            for entry, _ in picu_entries
            if entry.start is not None and _occupied_since(entry, now)
        ]
        entry, unit = active[0]
        basis = f"Location/{entry.location_id}"
        basis += f" in PICU Location/{unit}" if unit != entry.location_id else " (PICU)"
        return _PicuStay(True, min(starts, default=service_since), basis)
    if by_service:
        return _PicuStay(True, service_since, f"Encounter/{encounter.id} PICU service type")
    return _PicuStay(False)


def _picu_unit(
    location_id: str, places: Mapping[str, LocationFacts], settings: ContextSettings
) -> str | None:
    """The id of the Location, or its nearest partOf ancestor, that matches the PICU settings."""
    seen: set[str] = set()
    current: str | None = location_id
    while current is not None and current not in seen:
        seen.add(current)
        if current in settings.picu_location_ids:
            return current
        location = places.get(current)
        if location is None:
            return None
        if any(code in settings.picu_location_types for code in location.types) or any(
            identifier in settings.picu_location_identifiers for identifier in location.identifiers
        ):
            return current
        current = location.part_of
    return None


def _active(entry: EncounterLocationFacts, now: datetime) -> bool:
    """Active: status active (or none) with no period end in the past and no start in the future."""
    if entry.status not in ("active", None):
        return False
    if entry.end is not None and entry.end <= now:
        return False
    return entry.start is None or entry.start <= now


def _occupied_since(entry: EncounterLocationFacts, now: datetime) -> bool:
    """True for an entry the patient has reached (not planned or reserved) with a start by now."""
    return entry.status not in NOT_OCCUPIED and entry.start is not None and entry.start <= now


def _not_after(moment: datetime | None, now: datetime) -> datetime | None:
    """`moment` when it is not in the future, else None."""
    return moment if moment is not None and moment <= now else None


# --- the anchor ------------------------------------------------------------------------------


def _earliest_onset(
    encounter: EncounterFacts | None, now: datetime, settings: ContextSettings
) -> datetime:
    """The earliest plausible onset: the encounter start (else now) minus the look-back."""
    start = _not_after(encounter.start, now) if encounter is not None else None
    return (start or now) - settings.look_back


def _phoenix_anchor(
    onset: datetime | None, infection: bool, lower: datetime, now: datetime
) -> Anchor | None:
    """The Phoenix onset as an anchor when it lies between the earliest plausible onset and now."""
    if onset is None or not lower <= onset <= now:
        return None
    return Anchor(
        onset, AnchorSource.PHOENIX, PHOENIX_SEPSIS if infection else PHOENIX_ORGAN_DYSFUNCTION
    )


def _anchor(
    conditions: Iterable[ConditionFacts],
    phoenix: Anchor | None,
    encounter: EncounterFacts | None,
    stay: _PicuStay,
    settings: ContextSettings,
    now: datetime,
    lower: datetime,
    window: timedelta,
) -> Anchor:
    """The first anchor that applies: condition, Phoenix, PICU admission, encounter start, now."""
    condition = _condition_anchor(conditions, settings, now, lower)
    if condition is not None:
        return condition
    if phoenix is not None:
        return phoenix
    if stay.in_picu and stay.since is not None:
        return Anchor(stay.since, AnchorSource.PICU_ADMISSION, f"PICU admission: {stay.basis}")
    start = _not_after(encounter.start, now) if encounter is not None else None
    if encounter is not None and start is not None:
        return Anchor(start, AnchorSource.ENCOUNTER_START, f"start of Encounter/{encounter.id}")
    hours = round(window.total_seconds() / 3600)
    detail = f"no onset or admission time found: assessment time minus {hours} h"
    return Anchor(now - window, AnchorSource.ASSESSMENT_TIME, detail)


def _condition_anchor(
    conditions: Iterable[ConditionFacts], settings: ContextSettings, now: datetime, lower: datetime
) -> Anchor | None:
    """The most recent onset in range of a configured Condition not refuted or entered in error."""
    found: list[tuple[datetime, ConditionFacts, tuple[str, str]]] = []
    for condition in conditions:
        code = next((c for c in condition.codes if c in settings.onset_condition_codes), None)
        time = condition.onset or condition.recorded
        if code is None or time is None or condition.verification_status in NOT_A_DIAGNOSIS:
            continue
        if lower <= time <= now:
            found.append((time, condition, code))
    if not found:
        return None
    time, condition, code = max(found, key=lambda item: (item[0], item[1].id))
    which = "onset" if condition.onset is not None else "recorded date"
    detail = f"{which} of Condition/{condition.id} ({code[0]}|{code[1]})"
    return Anchor(time, AnchorSource.CONDITION, detail)


# --- pending orders --------------------------------------------------------------------------


def _pending(orders: Iterable[OrderFacts], lower: datetime) -> tuple[OrderFacts, ...]:
    """Active orders for panel analytes, not placed before the look-back (stale ones are not)."""
    pending = [
        order
        for order in orders
        if order.status == "active"
        and order.intent in ORDER_INTENTS
        and not order.do_not_perform
        and (order.authored is None or order.authored >= lower)
    ]
    return tuple(sorted(pending, key=lambda order: (order.analyte, order.id)))
