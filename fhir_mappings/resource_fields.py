"""Reading common FHIR fields from plain resource dicts: codings, subject, status, times, values.

Shared by the panel Observation mapping and the Phoenix input mapping. Each reader raises
`Unusable` (a reason and a card sentence) when a recognised resource cannot be used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from fhir_mappings.fhirtime import FhirTimeError, parse_instant
from fhir_mappings.measurement import COUNTED_STATUSES, PRELIMINARY_STATUSES, ExclusionReason

COMPARATORS = frozenset({"<", "<=", ">=", ">"})
EXCLUDED_STATUSES = {
    "entered-in-error": ExclusionReason.ENTERED_IN_ERROR,
    "cancelled": ExclusionReason.CANCELLED,
}
NON_NUMERIC_VALUES = (
    "valueString",
    "valueCodeableConcept",
    "valueBoolean",
    "valueInteger",
    "valueRange",
    "valueRatio",
    "valueSampledData",
    "valueTime",
    "valueDateTime",
    "valuePeriod",
)


class Unusable(Exception):
    """Raised by a reader when a recognised resource cannot be used."""

    def __init__(self, reason: ExclusionReason, detail: str) -> None:
        """Carry the reason and the card text."""
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def is_object(value: Any) -> bool:
    """True for a JSON object: a dict (checked first: the ABC check is slow) or another Mapping."""
    return type(value) is dict or isinstance(value, Mapping)


def mappings(value: Any) -> list[Mapping[str, Any]]:
    """The JSON objects of a list, or nothing when `value` is not a list."""
    if not isinstance(value, list):
        return []
    return [entry for entry in value if is_object(entry)]


def codings(holder: Mapping[str, Any], key: str = "code") -> list[Mapping[str, Any]]:
    """The codings of the CodeableConcept `holder[key]`, tolerating any shape."""
    concept = holder.get(key)
    return mappings(concept.get("coding")) if isinstance(concept, Mapping) else []


def coding_keys(concept: Any) -> list[tuple[str, str]]:
    """(system, code) of every well-formed coding of a CodeableConcept."""
    if not is_object(concept):
        return []
    return [
        (coding["system"], coding["code"])
        for coding in mappings(concept.get("coding"))
        if isinstance(coding.get("system"), str) and isinstance(coding.get("code"), str)
    ]


def resource_id(resource: Mapping[str, Any]) -> str | None:
    """The logical id of a resource when it has one."""
    identifier = resource.get("id")
    return identifier if isinstance(identifier, str) else None


def reference_target(reference: str) -> tuple[str | None, str | None]:
    """(type, id) of a relative or absolute literal reference, ignoring any `_history` suffix."""
    parts = reference.split("/_history/")[0].rstrip("/").split("/")
    if len(parts) < 2 or not parts[-2] or not parts[-1]:
        return None, None
    return parts[-2], parts[-1]


# --- subject ---------------------------------------------------------------------------------


def check_subject(resource: Mapping[str, Any], patient_id: str | None) -> None:
    """Refuse a resource whose subject is a different patient (or not a patient at all)."""
    if patient_id is None or "subject" not in resource:
        return  # no subject: the resource came from a query scoped to this patient
    reference = _subject_reference(resource["subject"], resource.get("resourceType"))
    if reference is None:
        return
    resource_type, target_id = reference_target(reference)
    if resource_type is None:
        return
    wanted = patient_id.removeprefix("Patient/")
    if resource_type != "Patient" or target_id != wanted:
        raise Unusable(ExclusionReason.OTHER_PATIENT, "result belongs to another subject")


def _subject_reference(subject: Any, resource_type: Any) -> str | None:
    """The literal reference of a subject, None when it has none; malformed shapes are refused."""
    if not isinstance(subject, Mapping) or not isinstance(subject.get("reference", ""), str):
        kind = resource_type if isinstance(resource_type, str) else "Observation"
        raise Unusable(ExclusionReason.MALFORMED, f"{kind} subject is not a Reference")
    return subject.get("reference")


# --- Observation status ----------------------------------------------------------------------


def usable_observation_status(observation: Mapping[str, Any]) -> str:
    """The status when counted or preliminary; otherwise the matching exclusion."""
    status = observation.get("status")
    if not isinstance(status, str):
        raise Unusable(ExclusionReason.MALFORMED, "Observation has no status")
    if status in EXCLUDED_STATUSES:
        raise Unusable(EXCLUDED_STATUSES[status], f"result status is {status}")
    if status not in COUNTED_STATUSES | PRELIMINARY_STATUSES:
        raise Unusable(ExclusionReason.UNSUPPORTED_STATUS, f"result status is {status}")
    return status


# --- time ------------------------------------------------------------------------------------


def effective_time_or_none(
    resource: Mapping[str, Any], prefix: str = "effective"
) -> datetime | None:
    """The effective time when it is usable, for exclusions raised by other rules."""
    try:
        return effective_time(resource, prefix)
    except (Unusable, TypeError, ValueError):
        return None


def effective_time(resource: Mapping[str, Any], prefix: str = "effective") -> datetime:
    """`{prefix}DateTime`, `{prefix}Instant` or `{prefix}Period` (start, else end), in UTC."""
    text = _effective_text(resource, prefix)
    if text is None:
        raise Unusable(ExclusionReason.NO_EFFECTIVE_TIME, "result has no effective time")
    return utc(text)


def _effective_text(resource: Mapping[str, Any], prefix: str) -> Any:
    """The raw effective[x] value to parse, or None when there is none."""
    for key in (f"{prefix}DateTime", f"{prefix}Instant"):
        if key in resource:
            return resource[key]
    period = resource.get(f"{prefix}Period")
    if isinstance(period, Mapping):
        return period.get("start") or period.get("end")
    return None


def utc(text: Any) -> datetime:
    """An aware UTC datetime from a FHIR dateTime that has a time and an offset."""
    try:
        return parse_instant(text)
    except FhirTimeError as error:
        reason = ExclusionReason.IMPRECISE_TIME if error.imprecise else ExclusionReason.MALFORMED
        raise Unusable(reason, f"effective time {error.detail}") from None


# --- values ----------------------------------------------------------------------------------


def quantity(holder: Mapping[str, Any], label: str) -> Mapping[str, Any]:
    """The valueQuantity, or the exclusion saying why there is no numeric value."""
    if "dataAbsentReason" in holder:
        raise Unusable(ExclusionReason.DATA_ABSENT, absent_detail(holder["dataAbsentReason"]))
    value = holder.get("valueQuantity")
    if isinstance(value, Mapping):
        return value
    if value is not None:
        raise Unusable(ExclusionReason.MALFORMED, f"{label} valueQuantity is not an object")
    sent = next((key for key in NON_NUMERIC_VALUES if key in holder), None)
    if sent is not None:
        raise Unusable(ExclusionReason.NO_NUMERIC_VALUE, f"{label} was sent as {sent}")
    raise Unusable(ExclusionReason.NO_NUMERIC_VALUE, f"{label} result has no value")


def absent_detail(reason: Any) -> str:
    """`value absent: <text, display or code>` from a dataAbsentReason CodeableConcept."""
    labels: list[Any] = []
    if isinstance(reason, Mapping):
        labels.append(reason.get("text"))
        for coding in mappings(reason.get("coding")):
            labels.extend([coding.get("display"), coding.get("code")])
    label = next((str(item) for item in labels if isinstance(item, str) and item), None)
    return f"value absent: {label or 'no reason given'}"


def numeric_value(value: Any, label: str) -> float:
    """A finite number from a Quantity value, or the exclusion saying why not."""
    if value is None:
        raise Unusable(ExclusionReason.NO_NUMERIC_VALUE, f"{label} quantity has no value")
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise Unusable(ExclusionReason.MALFORMED, f"{label} value {value!r} is not a number")
    if not math.isfinite(value):
        raise Unusable(ExclusionReason.MALFORMED, f"{label} value {value!r} is not finite")
    return float(value)


def comparator(value: Mapping[str, Any]) -> str | None:
    """The Quantity comparator (<, <=, >=, >) or None; anything else is malformed."""
    sent = value.get("comparator")
    if sent is None or sent in COMPARATORS:
        return sent
    raise Unusable(ExclusionReason.MALFORMED, f"unknown comparator {sent!r}")
