"""Encounter, Location, Condition and ServiceRequest dicts -> frozen facts for the care context.

Plain dict access, like observations.py. Each mapping function takes the resources of one search
or prefetch key (other resource types in the list are ignored), returns the facts it could read
and counts the entries it had to skip: not a JSON object, no resourceType, no id or status, or a
subject that is another patient. Malformed input never raises. Times are aware UTC datetimes
(None when absent, imprecise or malformed); codes are (system, code) pairs. Location references
are read when literal ("Location/123" or an absolute URL ending in it); contained ("#loc"),
identifier-only and display-only references are not resolvable and are left out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from fhir_mappings.fhirtime import instant_or_none
from fhir_mappings.panel import Panel

SystemCode = tuple[str, str]
FactT = TypeVar("FactT")

_FHIR_ID = r"[A-Za-z0-9\-\.]{1,64}"
# "Type/id" or "<absolute base>/Type/id", optionally with a version suffix.
_LITERAL_REFERENCE = re.compile(
    rf"^(?:https?://[^\s?#]+/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>{_FHIR_ID})(?:/_history/[^/\s]+)?$"
)


@dataclass(frozen=True, slots=True)
class LocationFacts:
    """One Location: its id, identifiers, type codes, status and the Location it is part of."""

    id: str
    identifiers: tuple[SystemCode, ...]  # (system, value)
    types: tuple[SystemCode, ...]  # (system, code) of every Location.type coding
    status: str | None  # active | suspended | inactive
    part_of: str | None  # id of the Location this one is part of (bed -> room -> ward)


@dataclass(frozen=True, slots=True)
class EncounterLocationFacts:
    """One Encounter.location entry: where the patient was (or is planned to be) and when."""

    location_id: str
    status: str | None  # planned | active | reserved | completed
    start: datetime | None
    end: datetime | None


@dataclass(frozen=True, slots=True)
class EncounterFacts:
    """One Encounter: status, class, service types, period and its location entries."""

    id: str
    status: str  # planned | arrived | triaged | in-progress | onleave | finished | ...
    class_code: str | None  # Encounter.class code (IMP, ACUTE, EMER, AMB, ...)
    service_types: tuple[SystemCode, ...]
    start: datetime | None
    end: datetime | None
    locations: tuple[EncounterLocationFacts, ...]
    admit_source: tuple[SystemCode, ...] = ()  # Encounter.hospitalization.admitSource codes


@dataclass(frozen=True, slots=True)
class ConditionFacts:
    """One Condition: its codes, onset and recorded times, statuses and encounter."""

    id: str
    codes: tuple[SystemCode, ...]
    onset: datetime | None  # onsetDateTime, else onsetPeriod.start
    recorded: datetime | None  # recordedDate
    clinical_status: str | None  # active | recurrence | relapse | inactive | remission | resolved
    verification_status: str | None  # unconfirmed | provisional | ... | refuted | entered-in-error
    encounter_id: str | None


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """One ServiceRequest for a panel analyte: what was ordered, its status, intent and time."""

    id: str
    analyte: str  # panel key
    status: str  # draft | active | on-hold | revoked | completed | entered-in-error | unknown
    intent: str | None  # proposal | plan | directive | order | original-order | ...
    authored: datetime | None  # authoredOn
    system: str  # code system of the matched coding
    code: str  # code of the matched coding
    do_not_perform: bool = False  # an order NOT to do it


@dataclass(frozen=True, slots=True)
class Mapped(Generic[FactT]):
    """The facts read from a list of resources and how many entries were skipped as malformed."""

    facts: tuple[FactT, ...] = ()
    skipped: int = 0


# --- entry points ----------------------------------------------------------------------------


def location_facts(resources: Any) -> Mapped[LocationFacts]:
    """LocationFacts of every Location in `resources`; other resource types are ignored."""
    return _mapped(resources, "Location", _location)


def encounter_facts(resources: Any, *, patient_id: str | None = None) -> Mapped[EncounterFacts]:
    """EncounterFacts of every Encounter of the patient in `resources`."""
    return _mapped(resources, "Encounter", lambda item: _encounter(item, patient_id))


def condition_facts(resources: Any, *, patient_id: str | None = None) -> Mapped[ConditionFacts]:
    """ConditionFacts of every Condition of the patient in `resources`."""
    return _mapped(resources, "Condition", lambda item: _condition(item, patient_id))


def order_facts(
    resources: Any, panel: Panel, *, patient_id: str | None = None
) -> Mapped[OrderFacts]:
    """OrderFacts of every ServiceRequest for a panel code; requests for other codes are ignored."""
    return _mapped(resources, "ServiceRequest", lambda item: _order(item, panel, patient_id))


class _Skip(Exception):
    """Raised by a mapper when a resource of its type cannot be used."""


class _Ignore(Exception):
    """Raised by a mapper when a well-formed resource is not relevant (a code outside the panel)."""


def _mapped(
    resources: Any, resource_type: str, mapper: Callable[[Mapping[str, Any]], FactT]
) -> Mapped[FactT]:
    """Apply `mapper` to each resource of `resource_type`, counting what had to be skipped."""
    facts: list[FactT] = []
    skipped = 0
    for item in _entries(resources):
        if not isinstance(item, Mapping) or not isinstance(item.get("resourceType"), str):
            skipped += 1
            continue
        if item["resourceType"] != resource_type:
            continue
        try:
            facts.append(mapper(item))
        except _Ignore:
            continue
        except (_Skip, TypeError, ValueError, AttributeError, KeyError):
            skipped += 1
    return Mapped(tuple(facts), skipped)


def _entries(resources: Any) -> Iterator[Any]:
    """The items of a list of resources; one resource alone counts as a list of one."""
    if isinstance(resources, Mapping):
        yield resources
    elif isinstance(resources, Iterable) and not isinstance(resources, str | bytes):
        yield from resources
    elif resources is not None:
        yield resources  # counted as skipped by the caller


# --- mappers ---------------------------------------------------------------------------------


def _location(item: Mapping[str, Any]) -> LocationFacts:
    """One Location dict -> LocationFacts."""
    return LocationFacts(
        id=_required_id(item),
        identifiers=_identifiers(item.get("identifier")),
        types=tuple(code for concept in _list(item.get("type")) for code in _codes(concept)),
        status=_text(item.get("status")),
        part_of=reference_id(item.get("partOf"), "Location"),
    )


def _encounter(item: Mapping[str, Any], patient_id: str | None) -> EncounterFacts:
    """One Encounter dict -> EncounterFacts."""
    _check_subject(item.get("subject"), patient_id)
    start, end = _period(item.get("period"))
    return EncounterFacts(
        id=_required_id(item),
        status=_required_status(item),
        class_code=_class_code(item.get("class")),
        service_types=_service_types(item.get("serviceType")),
        start=start,
        end=end,
        locations=tuple(_encounter_locations(item.get("location"))),
        admit_source=_admit_source(item.get("hospitalization")),
    )


def _admit_source(hospitalization: Any) -> tuple[SystemCode, ...]:
    """The codes of Encounter.hospitalization.admitSource ("born" marks a birth stay)."""
    if not isinstance(hospitalization, Mapping):
        return ()
    return _codes(hospitalization.get("admitSource"))


def _encounter_locations(entries: Any) -> Iterator[EncounterLocationFacts]:
    """The location entries whose Location is a resolvable literal reference."""
    for entry in _list(entries):
        location_id = reference_id(entry.get("location"), "Location")
        if location_id is None:
            continue
        start, end = _period(entry.get("period"))
        yield EncounterLocationFacts(location_id, _text(entry.get("status")), start, end)


def _condition(item: Mapping[str, Any], patient_id: str | None) -> ConditionFacts:
    """One Condition dict -> ConditionFacts."""
    _check_subject(item.get("subject"), patient_id)
    onset = instant_or_none(item.get("onsetDateTime"))
    onset_period = item.get("onsetPeriod")
    if onset is None and isinstance(onset_period, Mapping):
        onset = instant_or_none(onset_period.get("start"))
    return ConditionFacts(
        id=_required_id(item),
        codes=_codes(item.get("code")),
        onset=onset,
        recorded=instant_or_none(item.get("recordedDate")),
        clinical_status=_first_code(item.get("clinicalStatus")),
        verification_status=_first_code(item.get("verificationStatus")),
        encounter_id=reference_id(item.get("encounter"), "Encounter"),
    )


def _order(item: Mapping[str, Any], panel: Panel, patient_id: str | None) -> OrderFacts:
    """One ServiceRequest dict for a panel code -> OrderFacts."""
    code = item.get("code")
    matched = panel.match(_list(code.get("coding"))) if isinstance(code, Mapping) else None
    if matched is None:
        raise _Ignore
    _check_subject(item.get("subject"), patient_id)
    analyte, coding = matched
    return OrderFacts(
        id=_required_id(item),
        analyte=analyte.key,
        status=_required_status(item),
        intent=_text(item.get("intent")),
        authored=instant_or_none(item.get("authoredOn")),
        system=coding.system,
        code=coding.code,
        do_not_perform=item.get("doNotPerform") is True,
    )


# --- small readers ---------------------------------------------------------------------------


def reference_id(reference: Any, resource_type: str) -> str | None:
    """The id a literal Reference to `resource_type` points at, else None (contained, other)."""
    if not isinstance(reference, Mapping):
        return None
    text = reference.get("reference")
    match = _LITERAL_REFERENCE.match(text) if isinstance(text, str) else None
    if match is None or match["type"] != resource_type:
        return None
    return match["id"]


def _check_subject(subject: Any, patient_id: str | None) -> None:
    """Skip a resource whose subject is a literal reference to anyone but this patient."""
    if patient_id is None or subject is None:
        return
    if not isinstance(subject, Mapping):
        raise _Skip
    text = subject.get("reference")
    if text is None:
        return  # identifier-only subject: the search was scoped to this patient
    if not isinstance(text, str):
        raise _Skip
    match = _LITERAL_REFERENCE.match(text)
    if match is None:
        return  # contained or urn references cannot name another patient here
    if match["type"] != "Patient" or match["id"] != patient_id.removeprefix("Patient/"):
        raise _Skip


def _required_id(item: Mapping[str, Any]) -> str:
    """The resource's logical id; a resource without one is skipped."""
    identifier = item.get("id")
    if not isinstance(identifier, str) or not re.fullmatch(_FHIR_ID, identifier):
        raise _Skip
    return identifier


def _required_status(item: Mapping[str, Any]) -> str:
    """The resource's status code; a resource without one is skipped."""
    status = item.get("status")
    if not isinstance(status, str) or not status:
        raise _Skip
    return status


def _text(value: Any) -> str | None:
    """A non-empty string, else None."""
    return value if isinstance(value, str) and value else None


def _list(value: Any) -> list[Mapping[str, Any]]:
    """The JSON objects of a list, or nothing when `value` is not a list."""
    if not isinstance(value, list):
        return []
    return [entry for entry in value if isinstance(entry, Mapping)]


def _codes(concept: Any) -> tuple[SystemCode, ...]:
    """(system, code) of every complete coding of a CodeableConcept."""
    if not isinstance(concept, Mapping):
        return ()
    pairs = ((coding.get("system"), coding.get("code")) for coding in _list(concept.get("coding")))
    return tuple((system, code) for system, code in pairs if _text(system) and _text(code))


def _first_code(concept: Any) -> str | None:
    """The first code of a CodeableConcept (a status such as clinicalStatus), else None."""
    if not isinstance(concept, Mapping):
        return None
    return next(
        (coding["code"] for coding in _list(concept.get("coding")) if _text(coding.get("code"))),
        None,
    )


def _identifiers(value: Any) -> tuple[SystemCode, ...]:
    """(system, value) of every Identifier that has both."""
    pairs = ((entry.get("system"), entry.get("value")) for entry in _list(value))
    return tuple((system, text) for system, text in pairs if _text(system) and _text(text))


def _period(value: Any) -> tuple[datetime | None, datetime | None]:
    """(start, end) of a Period as UTC instants; unusable bounds are None."""
    if not isinstance(value, Mapping):
        return None, None
    return instant_or_none(value.get("start")), instant_or_none(value.get("end"))


def _class_code(value: Any) -> str | None:
    """The code of Encounter.class: an R4 Coding (or the first coding of an R5-shaped list)."""
    if isinstance(value, Mapping):
        return _text(value.get("code"))
    concepts = _list(value)
    return _first_code(concepts[0]) if concepts else None


def _service_types(value: Any) -> tuple[SystemCode, ...]:
    """Codes of Encounter.serviceType: an R4 CodeableConcept (or an R5 CodeableReference list)."""
    if isinstance(value, Mapping):
        return _codes(value)
    concepts = (entry.get("concept", entry) for entry in _list(value))
    return tuple(code for concept in concepts for code in _codes(concept))
