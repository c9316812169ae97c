"""UCUM unit conversion with ucumvert (pint); molar <-> mass only with an explicit molar mass."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ucumvert.ucum_pint
from pint import Quantity, UnitRegistry
from pint.errors import PintError
from ucumvert import UcumToPintTransformer, get_ucum_parser, parse_ucum

_UCUM_DEFINITIONS = Path(ucumvert.ucum_pint.__file__).resolve().parent / "pint_ucum_defs.txt"

# Pure numbers that may scale a unit (`10*3/uL`, `%`); any other dimensionless pint unit is a
# UCUM arbitrary unit ([IU], [arb'U], [CFU] ...) and converts only to the same arbitrary unit.
_NUMERIC_SCALE_UNITS = frozenset(
    {"_10", "percent", "permille", "ppm", "ppb", "pptr", "dimensionless"}
)
_MOLAR_MASS_UNIT = "g/mol"
# A UCUM annotation alone (`{INR}`, `{score}`) is the unit 1; ucumvert gives back a parse token
# for it instead of a quantity.
_ANNOTATION_ONLY = re.compile(r"\{[^{}]*\}")

# Unit text that real feeds send in valueQuantity.unit without a UCUM system, mapped to UCUM.
# Keys are compared after removing spaces, writing the micro signs as "u", "×" as "x" and
# superscript exponents as "^3" / "^9", and lowercasing, so only spellings whose lowercase form is
# unambiguous belong here; _AMBIGUOUS_UNIT_TEXT lists spellings refused before lowercasing
# ("G/L" is giga per litre in some laboratories, "g/L" grams).
UNIT_TEXT_ALIASES: dict[str, str] = {
    # mass per volume
    "pg/ml": "pg/mL",
    "ng/l": "ng/L",
    "ng/ml": "ng/mL",
    "ug/l": "ug/L",
    "mcg/l": "ug/L",
    "ug/ml": "ug/mL",
    "mcg/ml": "ug/mL",
    "ug/dl": "ug/dL",
    "mcg/dl": "ug/dL",
    "mg/l": "mg/L",
    "mg/dl": "mg/dL",
    "g/l": "g/L",
    "g/dl": "g/dL",
    # substance per volume
    "mmol/l": "mmol/L",
    "umol/l": "umol/L",
    "nmol/l": "nmol/L",
    "pmol/l": "pmol/L",
    # counts per volume: thousands per microlitre
    "k/ul": "10*3/uL",
    "k/mcl": "10*3/uL",
    "thou/ul": "10*3/uL",
    "x10^3/ul": "10*3/uL",
    "x10e3/ul": "10*3/uL",
    "x10*3/ul": "10*3/uL",
    "10^3/ul": "10*3/uL",
    "10e3/ul": "10*3/uL",
    "10*3/ul": "10*3/uL",
    "x10^3/mm3": "10*3/uL",
    "10^3/mm3": "10*3/uL",
    # counts per volume: 10^9 per litre
    "x10^9/l": "10*9/L",
    "x10e9/l": "10*9/L",
    "x10*9/l": "10*9/L",
    "10^9/l": "10*9/L",
    "10e9/l": "10*9/L",
    "10*9/l": "10*9/L",
    # counts per volume: cells per microlitre
    "cells/ul": "/uL",
    "cells/mcl": "/uL",
    "cells/mm3": "/uL",
    "#/ul": "/uL",
    "/ul": "/uL",
    "/mm3": "/uL",
    # arbitrary units: never convertible to mass units
    "iu/ml": "[IU]/mL",
    "u/ml": "[arb'U]/mL",  # assay-specific units (e.g. sCD25 on Immulite), not enzyme units
    "%": "%",
}
_TEXT_FOLDING = str.maketrans(
    {"\u00b5": "u", "\u03bc": "u", "\u00d7": "x", "\u00b3": "^3", "\u2079": "^9"}
)
_AMBIGUOUS_UNIT_TEXT = frozenset({"G/L", "G/l", "Giga/L"})


class UnitConversionError(ValueError):
    """A value cannot be converted between two units."""


@dataclass(frozen=True)
class _Ucum:
    """One pint registry with ucumvert's UCUM definitions, and the UCUM parser bound to it."""

    registry: UnitRegistry
    parser: Any
    transform: Callable[[Any], Any]

    def from_ucum(self, unit: str) -> Any:
        """The pint quantity for one UCUM unit string (ucumvert's parser and transformer)."""
        return self.transform(parse_ucum(unit, self.parser))


@functools.lru_cache(maxsize=1)
def _ucum() -> _Ucum:
    """Built on first use: one registry, as ucumvert's transformer fills one with its UCUM
    definitions (its `PintUcumRegistry` builds a second one beside it, a second more at start)."""
    registry = UnitRegistry()
    registry.load_definitions(_UCUM_DEFINITIONS)
    return _Ucum(registry, get_ucum_parser(), UcumToPintTransformer(ureg=registry).transform)


def _registry() -> UnitRegistry:
    """The UCUM-aware pint registry every parsed unit belongs to."""
    return _ucum().registry


@functools.lru_cache(maxsize=512)
def _parse(unit: str) -> Any | None:
    """The pint quantity for one UCUM unit string, or None when it is not valid UCUM."""
    try:
        parsed = _ucum().from_ucum(unit)
    except Exception:  # ucumvert raises lark and pint errors of several kinds for invalid input
        return None
    if isinstance(parsed, Quantity):
        return parsed
    if _ANNOTATION_ONLY.fullmatch(unit):
        return _registry().Quantity(1, "dimensionless")
    return None


def _parsed(unit: str) -> Any:
    """The pint quantity for one UCUM unit; UnitConversionError when it is not valid UCUM."""
    quantity = _parse(unit)
    if quantity is None:
        raise UnitConversionError(f"{unit!r} is not a valid UCUM unit")
    return quantity


@functools.lru_cache(maxsize=512)
def _arbitrary_signature(unit: str) -> frozenset[tuple[str, float]]:
    """The arbitrary (dimensionless, non-numeric) units of a UCUM unit with their exponents."""
    registry, quantity = _registry(), _parsed(unit)
    return frozenset(
        (name, exponent)
        for name, exponent in quantity.unit_items()
        if name not in _NUMERIC_SCALE_UNITS and registry.get_dimensionality(name) == {}
    )


def _multiplicative(quantity: Any) -> bool:
    """False for offset units (Cel, [degF]), which cannot be converted by a factor."""
    try:
        quantity * 2.0
    except PintError:
        return False
    return True


def _to(quantity: Any, target: Any) -> float | None:
    """The magnitude of `quantity` in `target`'s unit per `target`'s magnitude, None if not."""
    try:
        return float(quantity.to(target.units).magnitude / target.magnitude)
    except PintError:
        return None


def _with_molar_mass(quantity: Any, target: Any, molar_mass: float) -> float | None:
    """`_to` after multiplying (molar -> mass) or dividing (mass -> molar) by the molar mass."""
    try:
        mass_per_mole = molar_mass * _parsed(_MOLAR_MASS_UNIT)
        per_mole, per_mass = quantity * mass_per_mole, quantity / mass_per_mole
    except PintError:
        return None
    converted = _to(per_mole, target)
    return converted if converted is not None else _to(per_mass, target)


def convert(
    value: float, source_unit: str, target_unit: str, *, molar_mass: float | None = None
) -> float:
    """`value` in `source_unit` (UCUM) expressed in `target_unit`; UnitConversionError if not."""
    if source_unit == target_unit:
        return float(value)
    return float(value) * _factor(source_unit, target_unit, molar_mass)


@functools.lru_cache(maxsize=1024)
def _factor(source_unit: str, target_unit: str, molar_mass: float | None) -> float:
    """How many `target_unit` make one `source_unit`; only multiplicative units convert."""
    source, target = _parsed(source_unit), _parsed(target_unit)
    if _arbitrary_signature(source_unit) != _arbitrary_signature(target_unit):
        raise UnitConversionError(f"no fixed conversion from {source_unit} to {target_unit}")
    if not (_multiplicative(source) and _multiplicative(target)):
        raise UnitConversionError(f"{source_unit} or {target_unit} is not a multiplicative unit")
    converted = _to(source, target)
    if converted is None and molar_mass is not None:
        converted = _with_molar_mass(source, target, molar_mass)
    if converted is None:
        raise UnitConversionError(f"{source_unit} cannot be converted to {target_unit}")
    return converted


def warm_up(units: Iterable[str] = ()) -> None:
    """Build the unit registry (about a second) and parse `units` now rather than on a request.

    The molar-mass unit used by molar <-> mass conversions is parsed too.
    """
    for unit in (*units, _MOLAR_MASS_UNIT):
        _parse(unit)
    _registry()


def is_valid_ucum(unit: str) -> bool:
    """True when `unit` parses as a UCUM unit."""
    return _parse(unit) is not None


def normalise_unit_text(text: str | None) -> str | None:
    """The UCUM unit for a non-UCUM unit string from UNIT_TEXT_ALIASES, or None when unknown."""
    if not isinstance(text, str):
        return None
    compact = "".join(text.split()).translate(_TEXT_FOLDING)
    if compact in _AMBIGUOUS_UNIT_TEXT:
        return None
    return UNIT_TEXT_ALIASES.get(compact.lower())
