"""Observation dicts -> Measurement (numeric, canonical unit, UTC time) or Exclusion (and why).

Plain dict access only: this is the hot path of every hook. Observations whose code is not a
panel analyte are ignored; every recognised Observation becomes exactly one Measurement or one
Exclusion (one per panel component for panel Observations), and malformed input never raises.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from fhir_mappings.fhirtime import FhirTimeError, parse_instant
from fhir_mappings.measurement import (
    COUNTED_STATUSES,
    PRELIMINARY_STATUSES,
    Exclusion,
    ExclusionReason,
    Extraction,
    Measurement,
)
from fhir_mappings.panel import Analyte, Coding, Panel
from fhir_mappings.units import UnitConversionError, convert, is_valid_ucum, normalise_unit_text

UCUM_SYSTEM = "http://unitsofmeasure.org"
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


class _Excluded(Exception):
    """Raised by a rule when a recognised result cannot be used."""

    def __init__(self, reason: ExclusionReason, detail: str) -> None:
        """Carry the reason and the card text."""
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class _Result:
    """One recognised result: the Observation, the part holding the value, and its analyte."""

    observation: Mapping[str, Any]
    holder: Mapping[str, Any]  # the Observation itself or one of its components
    analyte: Analyte
    coding: Coding


def extract(
    observations: Iterable[Mapping[str, Any]], panel: Panel, *, patient_id: str | None = None
) -> Extraction:
    """Map Observation dicts to Measurements and Exclusions; never raises on malformed input."""
    measurements: list[Measurement] = []
    exclusions: list[Exclusion] = []
    for item in observations:
        for outcome in _outcomes(item, panel, patient_id):
            if isinstance(outcome, Measurement):
                measurements.append(outcome)
            else:
                exclusions.append(outcome)
    return Extraction(measurements=tuple(measurements), exclusions=tuple(exclusions))


def _outcomes(item: Any, panel: Panel, patient_id: str | None) -> Iterator[Measurement | Exclusion]:
    """The Measurements and Exclusions of one entry; other resource types yield nothing."""
    if not isinstance(item, Mapping):
        yield Exclusion(ExclusionReason.MALFORMED, "an Observation entry is not a JSON object")
        return
    if item.get("resourceType", "Observation") != "Observation":
        return
    for result in _recognised(item, panel):
        yield _outcome(result, patient_id)


def _recognised(observation: Mapping[str, Any], panel: Panel) -> Iterator[_Result]:
    """The panel results of one Observation: itself and each panel component."""
    holders = [observation, *_mappings(observation.get("component"))]
    for holder in holders:
        matched = panel.match(_codings(holder))
        if matched is not None:
            yield _Result(observation, holder, matched[0], matched[1])


def _mappings(value: Any) -> list[Mapping[str, Any]]:
    """The JSON objects of a list, or nothing when `value` is not a list."""
    if not isinstance(value, list):
        return []
    return [entry for entry in value if isinstance(entry, Mapping)]


def _codings(holder: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The codings of `holder.code`, tolerating any shape."""
    code = holder.get("code")
    return _mappings(code.get("coding")) if isinstance(code, Mapping) else []


def _outcome(result: _Result, patient_id: str | None) -> Measurement | Exclusion:
    """A Measurement, or the first rule that excludes the result."""
    time: datetime | None = None
    try:
        time = _effective_time_or_none(result.observation)
        return _measurement(result, patient_id, time)
    except _Excluded as excluded:
        return _exclusion(result, excluded.reason, excluded.detail, time)
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError) as error:
        detail = f"{result.analyte.display} result has an unexpected shape ({type(error).__name__})"
        return _exclusion(result, ExclusionReason.MALFORMED, detail, time)


def _exclusion(
    result: _Result, reason: ExclusionReason, detail: str, time: datetime | None
) -> Exclusion:
    """The Exclusion of one recognised result."""
    return Exclusion(
        reason=reason,
        detail=detail,
        analyte=result.analyte.key,
        system=result.coding.system,
        code=result.coding.code,
        time=time,
        observation_id=_observation_id(result.observation),
    )


def _measurement(
    result: _Result, patient_id: str | None, parsed_time: datetime | None = None
) -> Measurement:
    """Apply every rule in order (subject, status, time, value, unit) and build the Measurement.

    `parsed_time` is the effective time already read from the Observation, when it was usable.
    """
    _check_subject(result.observation, patient_id)
    status = _usable_status(result.observation)
    time = parsed_time if parsed_time is not None else _effective_time(result.observation)
    quantity = _quantity(result.holder, result.analyte)
    source_value = _numeric_value(quantity, result.analyte)
    comparator = _comparator(quantity)
    source_unit, unit_assumed = _source_unit(quantity, result.coding, result.analyte)
    return Measurement(
        analyte=result.analyte.key,
        value=_converted(source_value, source_unit, result.analyte),
        unit=result.analyte.unit,
        time=time,
        system=result.coding.system,
        code=result.coding.code,
        status=status,
        comparator=comparator,
        source_value=source_value,
        source_unit=source_unit,
        observation_id=_observation_id(result.observation),
        unit_assumed=unit_assumed,
    )


def _observation_id(observation: Mapping[str, Any]) -> str | None:
    """The logical id of the Observation when it has one."""
    identifier = observation.get("id")
    return identifier if isinstance(identifier, str) else None


# --- subject ---------------------------------------------------------------------------------


def _check_subject(observation: Mapping[str, Any], patient_id: str | None) -> None:
    """Refuse a result whose subject is a different patient (or not a patient at all)."""
    if patient_id is None or "subject" not in observation:
        return  # no subject: the result came from a query scoped to this patient
    reference = _subject_reference(observation["subject"])
    if reference is None:
        return
    resource_type, resource_id = _reference_target(reference)
    if resource_type is None:
        return
    wanted = patient_id.removeprefix("Patient/")
    if resource_type != "Patient" or resource_id != wanted:
        raise _Excluded(ExclusionReason.OTHER_PATIENT, "result belongs to another subject")


def _subject_reference(subject: Any) -> str | None:
    """The literal reference of a subject, None when it has none; malformed shapes are refused."""
    if not isinstance(subject, Mapping) or not isinstance(subject.get("reference", ""), str):
        raise _Excluded(ExclusionReason.MALFORMED, "Observation subject is not a Reference")
    return subject.get("reference")


def _reference_target(reference: str) -> tuple[str | None, str | None]:
    """(type, id) of a relative or absolute literal reference, ignoring any `_history` suffix."""
    parts = reference.split("/_history/")[0].rstrip("/").split("/")
    if len(parts) < 2 or not parts[-2] or not parts[-1]:
        return None, None
    return parts[-2], parts[-1]


# --- status ----------------------------------------------------------------------------------


def _usable_status(observation: Mapping[str, Any]) -> str:
    """The status when counted or preliminary; otherwise the matching exclusion."""
    status = observation.get("status")
    if not isinstance(status, str):
        raise _Excluded(ExclusionReason.MALFORMED, "Observation has no status")
    if status in EXCLUDED_STATUSES:
        raise _Excluded(EXCLUDED_STATUSES[status], f"result status is {status}")
    if status not in COUNTED_STATUSES | PRELIMINARY_STATUSES:
        raise _Excluded(ExclusionReason.UNSUPPORTED_STATUS, f"result status is {status}")
    return status


# --- time ------------------------------------------------------------------------------------


def _effective_time_or_none(observation: Mapping[str, Any]) -> datetime | None:
    """The effective time when it is usable, for Exclusions raised by other rules."""
    try:
        return _effective_time(observation)
    except (_Excluded, TypeError, ValueError):
        return None


def _effective_time(observation: Mapping[str, Any]) -> datetime:
    """effectiveDateTime, effectiveInstant or effectivePeriod (start, else end), in UTC."""
    text = _effective_text(observation)
    if text is None:
        raise _Excluded(ExclusionReason.NO_EFFECTIVE_TIME, "result has no effective time")
    return _utc(text)


def _effective_text(observation: Mapping[str, Any]) -> Any:
    """The raw effective[x] value to parse, or None when there is none."""
    for key in ("effectiveDateTime", "effectiveInstant"):
        if key in observation:
            return observation[key]
    period = observation.get("effectivePeriod")
    if isinstance(period, Mapping):
        return period.get("start") or period.get("end")
    return None


def _utc(text: Any) -> datetime:
    """An aware UTC datetime from a FHIR dateTime that has a time and an offset."""
    try:
        return parse_instant(text)
    except FhirTimeError as error:
        reason = ExclusionReason.IMPRECISE_TIME if error.imprecise else ExclusionReason.MALFORMED
        raise _Excluded(reason, f"effective time {error.detail}") from None


# --- value and unit --------------------------------------------------------------------------


def _quantity(holder: Mapping[str, Any], analyte: Analyte) -> Mapping[str, Any]:
    """The valueQuantity, or the exclusion saying why there is no numeric value."""
    if "dataAbsentReason" in holder:
        raise _Excluded(ExclusionReason.DATA_ABSENT, _absent_detail(holder["dataAbsentReason"]))
    quantity = holder.get("valueQuantity")
    if isinstance(quantity, Mapping):
        return quantity
    if quantity is not None:
        raise _Excluded(
            ExclusionReason.MALFORMED, f"{analyte.display} valueQuantity is not an object"
        )
    sent = next((key for key in NON_NUMERIC_VALUES if key in holder), None)
    if sent is not None:
        raise _Excluded(ExclusionReason.NO_NUMERIC_VALUE, f"{analyte.display} was sent as {sent}")
    raise _Excluded(ExclusionReason.NO_NUMERIC_VALUE, f"{analyte.display} result has no value")


def _absent_detail(reason: Any) -> str:
    """`value absent: <text, display or code>` from a dataAbsentReason CodeableConcept."""
    labels: list[Any] = []
    if isinstance(reason, Mapping):
        labels.append(reason.get("text"))
        for coding in _mappings(reason.get("coding")):
            labels.extend([coding.get("display"), coding.get("code")])
    label = next((str(item) for item in labels if isinstance(item, str) and item), None)
    return f"value absent: {label or 'no reason given'}"


def _numeric_value(quantity: Mapping[str, Any], analyte: Analyte) -> float:
    """The finite numeric value of a Quantity, or the exclusion saying why not."""
    value = quantity.get("value")
    if value is None:
        raise _Excluded(
            ExclusionReason.NO_NUMERIC_VALUE, f"{analyte.display} quantity has no value"
        )
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise _Excluded(
            ExclusionReason.MALFORMED, f"{analyte.display} value {value!r} is not a number"
        )
    if not math.isfinite(value):
        raise _Excluded(
            ExclusionReason.MALFORMED, f"{analyte.display} value {value!r} is not finite"
        )
    return float(value)


def _comparator(quantity: Mapping[str, Any]) -> str | None:
    """The Quantity comparator (<, <=, >=, >) or None; anything else is malformed."""
    comparator = quantity.get("comparator")
    if comparator is None or comparator in COMPARATORS:
        return comparator
    raise _Excluded(ExclusionReason.MALFORMED, f"unknown comparator {comparator!r}")


def _source_unit(quantity: Mapping[str, Any], coding: Coding, analyte: Analyte) -> tuple[str, bool]:
    """The UCUM unit of the value (UCUM code, known text, else the code's) and if it was assumed."""
    if coding.arbitrary_units:
        raise _unit_error(
            analyte,
            f"{coding.code} reports arbitrary units, with no fixed conversion to {analyte.unit}",
        )
    code, text = quantity.get("code"), quantity.get("unit")
    if quantity.get("system") == UCUM_SYSTEM and isinstance(code, str):
        return code, False
    known = normalise_unit_text(text) or normalise_unit_text(code)
    if known is not None:
        return known, False
    sent = next((item for item in (text, code) if isinstance(item, str) and item.strip()), None)
    if coding.unit is not None and (coding.local or sent is None):
        return coding.unit, sent is None
    if sent is not None:
        raise _unit_error(analyte, f"unit {sent!r} is not recognised")
    raise _unit_error(analyte, "no unit was sent")


def _converted(value: float, source_unit: str, analyte: Analyte) -> float:
    """`value` in the analyte's canonical unit, or the unit exclusion."""
    try:
        return convert(value, source_unit, analyte.unit, molar_mass=analyte.molar_mass)
    except UnitConversionError:
        shown = source_unit if is_valid_ucum(source_unit) else repr(source_unit)
        raise _unit_error(analyte, f"{shown} cannot be converted to {analyte.unit}") from None


def _unit_error(analyte: Analyte, reason: str) -> _Excluded:
    """A UNIT_NOT_CONVERTIBLE exclusion prefixed with the analyte name."""
    return _Excluded(ExclusionReason.UNIT_NOT_CONVERTIBLE, f"{analyte.display}: {reason}")
