"""Observation dicts -> Measurement (numeric, canonical unit, UTC time) or Exclusion (and why).

Plain dict access only: this is the hot path of every hook. Observations whose code is not a
panel analyte are ignored; every recognised Observation becomes exactly one Measurement or one
Exclusion (one per panel component for panel Observations), and malformed input never raises.
A value outside its analyte's physically possible range (after unit conversion) is excluded as
implausible, and Observations sharing an id but differing in content are all excluded as
conflicting: neither can ever be scored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from fhir_mappings.measurement import Exclusion, ExclusionReason, Extraction, Measurement
from fhir_mappings.panel import Analyte, Coding, Panel
from fhir_mappings.resource_fields import (
    Unusable,
    check_subject,
    codings,
    comparator,
    effective_time,
    effective_time_or_none,
    mappings,
    numeric_value,
    quantity,
    resource_id,
    usable_observation_status,
)
from fhir_mappings.units import UnitConversionError, convert, is_valid_ucum, normalise_unit_text

UCUM_SYSTEM = "http://unitsofmeasure.org"
REFERENCE_MEANING_SYSTEM = "http://terminology.hl7.org/CodeSystem/referencerange-meaning"
NORMAL_RANGE_CODES = frozenset({"normal"})


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
    items = list(observations)
    conflicting = _conflicting_ids(items)
    for item in items:
        for outcome in _outcomes(item, panel, patient_id, conflicting):
            if isinstance(outcome, Measurement):
                measurements.append(outcome)
            else:
                exclusions.append(outcome)
    return Extraction(measurements=tuple(measurements), exclusions=tuple(exclusions))


def _conflicting_ids(items: list[Any]) -> frozenset[str]:
    """Ids carried by two Observations whose content differs (their `meta` and `text` aside)."""
    first_seen: dict[str, Mapping[str, Any]] = {}
    conflicting: set[str] = set()
    for item in items:
        if (
            not isinstance(item, Mapping)
            or item.get("resourceType", "Observation") != "Observation"
        ):
            continue
        identifier = resource_id(item)
        if identifier is None:
            continue
        content = {key: value for key, value in item.items() if key not in ("meta", "text")}
        seen = first_seen.setdefault(identifier, content)
        if seen is not content and seen != content:
            conflicting.add(identifier)
    return frozenset(conflicting)


def _outcomes(
    item: Any, panel: Panel, patient_id: str | None, conflicting: frozenset[str]
) -> Iterator[Measurement | Exclusion]:
    """The Measurements and Exclusions of one entry; other resource types yield nothing."""
    if not isinstance(item, Mapping):
        yield Exclusion(ExclusionReason.MALFORMED, "an Observation entry is not a JSON object")
        return
    if item.get("resourceType", "Observation") != "Observation":
        return
    for result in _recognised(item, panel):
        if resource_id(item) in conflicting:
            yield _exclusion(
                result,
                ExclusionReason.CONFLICTING,
                "another copy with the same Observation id has different content; no copy is used",
                effective_time_or_none(item),
            )
        else:
            yield _outcome(result, patient_id)


def _recognised(observation: Mapping[str, Any], panel: Panel) -> Iterator[_Result]:
    """The panel results of one Observation: itself and each panel component."""
    holders = [observation, *mappings(observation.get("component"))]
    for holder in holders:
        matched = panel.match(codings(holder))
        if matched is not None:
            yield _Result(observation, holder, matched[0], matched[1])


def _outcome(result: _Result, patient_id: str | None) -> Measurement | Exclusion:
    """A Measurement, or the first rule that excludes the result."""
    time: datetime | None = None
    try:
        time = effective_time_or_none(result.observation)
        return _measurement(result, patient_id, time)
    except Unusable as excluded:
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
        observation_id=resource_id(result.observation),
    )


def _measurement(
    result: _Result, patient_id: str | None, parsed_time: datetime | None = None
) -> Measurement:
    """Apply every rule in order (subject, status, time, value, unit) and build the Measurement.

    `parsed_time` is the effective time already read from the Observation, when it was usable.
    """
    check_subject(result.observation, patient_id)
    status = usable_observation_status(result.observation)
    time = parsed_time if parsed_time is not None else effective_time(result.observation)
    sent = quantity(result.holder, result.analyte.display)
    source_value = numeric_value(sent.get("value"), result.analyte.display)
    sent_comparator = comparator(sent)
    source_unit, unit_assumed = _source_unit(sent, result.coding, result.analyte)
    value = _converted(source_value, source_unit, result.analyte)
    _check_plausible(value, source_value, source_unit, result.analyte)
    reference_high, reference_text = reference_limit(result.holder, source_unit, result.analyte)
    return Measurement(
        analyte=result.analyte.key,
        value=value,
        unit=result.analyte.unit,
        time=time,
        system=result.coding.system,
        code=result.coding.code,
        status=status,
        comparator=sent_comparator,
        source_value=source_value,
        source_unit=source_unit,
        observation_id=resource_id(result.observation),
        unit_assumed=unit_assumed,
        reference_high=reference_high,
        reference_text=reference_text,
    )


# --- unit ------------------------------------------------------------------------------------


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


def _check_plausible(value: float, source_value: float, source_unit: str, analyte: Analyte) -> None:
    """Refuse a value that is not finite or not physically possible for its analyte."""
    if analyte.is_plausible(value):
        return
    unit = analyte.unit
    if not math.isfinite(value):
        detail = f"{source_value:g} {source_unit} is not a finite number in {unit}"
    elif value > analyte.plausible_max:
        detail = f"{value:g} {unit} is above the physical limit of {analyte.plausible_max:g} {unit}"
    elif analyte.plausible_min_exclusive:
        detail = (
            f"{value:g} {unit} is impossible: it must be above {analyte.plausible_min:g} {unit}"
        )
    else:
        detail = f"{value:g} {unit} is below the physical limit of {analyte.plausible_min:g} {unit}"
    raise Unusable(ExclusionReason.IMPLAUSIBLE, f"{analyte.display} {detail}")


def _unit_error(analyte: Analyte, reason: str) -> Unusable:
    """A UNIT_NOT_CONVERTIBLE exclusion prefixed with the analyte name."""
    return Unusable(ExclusionReason.UNIT_NOT_CONVERTIBLE, f"{analyte.display}: {reason}")


# --- the laboratory's reference range ---------------------------------------------------------


def reference_limit(
    holder: Mapping[str, Any], value_unit: str, analyte: Analyte
) -> tuple[float | None, str | None]:
    """The laboratory's upper reference limit in the canonical unit and its text; never raises.

    Read from the referenceRange of the part holding the value (the Observation or its
    component). Only normal (or untyped) ranges with a `high` count; several such ranges with
    different limits (age- or sex-specific, which this layer cannot choose between) give none.
    """
    candidates = [entry for entry in mappings(holder.get("referenceRange")) if _is_normal(entry)]
    limits = {_high_value(entry, value_unit, analyte) for entry in candidates}
    limits.discard(None)
    if len(limits) != 1:
        return None, None
    texts = [entry.get("text") for entry in candidates if isinstance(entry.get("text"), str)]
    return limits.pop(), (texts[0].strip() or None) if texts else None


def _is_normal(entry: Mapping[str, Any]) -> bool:
    """True for a range without a type or typed as the normal range."""
    kind = entry.get("type")
    if kind is None:
        return True
    found = mappings(kind.get("coding")) if isinstance(kind, Mapping) else []
    meanings = {(coding.get("system"), coding.get("code")) for coding in found}
    return any((REFERENCE_MEANING_SYSTEM, code) in meanings for code in NORMAL_RANGE_CODES)


def _high_value(entry: Mapping[str, Any], value_unit: str, analyte: Analyte) -> float | None:
    """The range's `high` converted to the canonical unit, or None when unusable."""
    high = entry.get("high")
    if not isinstance(high, Mapping):
        return None
    value = high.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    if not math.isfinite(value) or value <= 0:
        return None
    unit = _bound_unit(high) or value_unit
    try:
        return convert(float(value), unit, analyte.unit, molar_mass=analyte.molar_mass)
    except (UnitConversionError, ValueError, TypeError):
        return None


def _bound_unit(high: Mapping[str, Any]) -> str | None:
    """The UCUM unit of a range bound: its UCUM code, else known unit text, else None."""
    code, text = high.get("code"), high.get("unit")
    if high.get("system") == UCUM_SYSTEM and isinstance(code, str):
        return code
    return normalise_unit_text(text) or normalise_unit_text(code)
