"""UCUM conversions and the alias table for unit text that is not UCUM."""

from __future__ import annotations

import pytest

from fhir_mappings.units import UnitConversionError, convert, is_valid_ucum, normalise_unit_text

LACTATE_MOLAR_MASS = 90.08


@pytest.mark.parametrize(
    ("value", "source", "target", "expected"),
    [
        (12.0, "pg/mL", "ng/L", 12.0),
        (12.0, "ng/L", "pg/mL", 12.0),
        (1500.0, "ng/mL", "ug/L", 1500.0),
        (250.0, "ug/L", "ng/mL", 250.0),
        (4.08, "mg/dL", "mg/L", 40.8),
        (75.0, "mg/L", "mg/dL", 7.5),
        (150.0, "10*3/uL", "10*9/L", 150.0),
        (0.8, "10*9/L", "10*3/uL", 0.8),
        (850.0, "/uL", "10*3/uL", 0.85),
        (1.2, "10*3/uL", "/uL", 1200.0),
        (2.0, "ng/mL", "pg/mL", 2000.0),
        (3.5, "10*3/mm3", "10*3/uL", 3.5),
        (7.0, "[IU]/mL", "[IU]/L", 7000.0),
    ],
)
def test_convertible_units_give_the_arithmetic_result(
    value: float, source: str, target: str, expected: float
) -> None:
    assert convert(value, source, target) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "source", "target", "expected"),
    [
        (1.0, "mmol/L", "mg/dL", 9.008),
        (5.0, "mmol/L", "mg/dL", 45.04),
        (45.04, "mg/dL", "mmol/L", 5.0),
        (99.088, "mg/dL", "mmol/L", 11.0),
        (18.016, "mg/dL", "mmol/L", 2.0),
    ],
)
def test_lactate_molar_and_mass_units_convert_with_its_molar_mass(
    value: float, source: str, target: str, expected: float
) -> None:
    assert convert(value, source, target, molar_mass=LACTATE_MOLAR_MASS) == pytest.approx(expected)


def test_molar_to_mass_without_a_molar_mass_is_refused() -> None:
    with pytest.raises(UnitConversionError, match="mmol/L"):
        convert(2.0, "mmol/L", "mg/dL")


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("[IU]/mL", "pg/mL"),  # IFN-gamma units/volume assay
        ("[IU]/mL", "10*3/uL"),  # same pint dimension, still not the same thing
        ("[arb'U]/mL", "pg/mL"),
        ("[arb'U]/mL", "[IU]/mL"),
        ("U/mL", "pg/mL"),
        ("pg/mL", "10*3/uL"),
        ("%", "10*3/uL"),
        ("K/uL", "10*3/uL"),  # valid UCUM, but kelvin per microlitre
        ("pmol/L", "ng/mL"),
    ],
)
def test_units_of_different_kinds_are_not_convertible(source: str, target: str) -> None:
    with pytest.raises(UnitConversionError):
        convert(1.0, source, target, molar_mass=None)


def test_arbitrary_units_are_not_converted_even_with_a_molar_mass() -> None:
    with pytest.raises(UnitConversionError):
        convert(1.0, "[IU]/mL", "mg/dL", molar_mass=LACTATE_MOLAR_MASS)


@pytest.mark.parametrize("source", ["cells/uL", "x10^3/uL", "", "mg/dL/"])
def test_invalid_ucum_is_a_conversion_error_not_a_crash(source: str) -> None:
    with pytest.raises(UnitConversionError):
        convert(1.0, source, "10*3/uL")
    assert not is_valid_ucum(source)


def test_conversion_error_is_a_value_error() -> None:
    assert issubclass(UnitConversionError, ValueError)


@pytest.mark.parametrize(
    ("text", "ucum"),
    [
        ("K/uL", "10*3/uL"),
        ("K/µL", "10*3/uL"),
        ("x10^3/uL", "10*3/uL"),
        ("x10E3/uL", "10*3/uL"),
        ("10^9/L", "10*9/L"),
        ("x 10^9/L", "10*9/L"),
        ("cells/uL", "/uL"),
        ("cells/mm3", "/uL"),
        ("mcg/L", "ug/L"),
        ("µg/L", "ug/L"),
        ("μg/L", "ug/L"),
        ("ng/ml", "ng/mL"),
        ("pg/ml", "pg/mL"),
        ("MG/DL", "mg/dL"),
        (" mmol/L ", "mmol/L"),
        ("IU/mL", "[IU]/mL"),
        ("×10³/µL", "10*3/uL"),
        ("10⁹/L", "10*9/L"),
        ("x10⁹/L", "10*9/L"),
    ],
)
def test_common_non_ucum_unit_text_maps_to_ucum(text: str, ucum: str) -> None:
    assert normalise_unit_text(text) == ucum
    assert is_valid_ucum(ucum)


@pytest.mark.parametrize("text", ["G/L", "furlongs", "", "mEq/L", None, 12])
def test_unknown_or_ambiguous_unit_text_is_none(text: object) -> None:
    assert normalise_unit_text(text) is None  # type: ignore[arg-type]


def test_every_alias_target_is_valid_ucum() -> None:
    from fhir_mappings.units import UNIT_TEXT_ALIASES

    assert all(is_valid_ucum(ucum) for ucum in UNIT_TEXT_ALIASES.values())


def test_warm_up_parses_the_given_units_so_later_lookups_parse_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fhir_mappings import units

    units.warm_up(["ukat/dL", "not a unit"])

    def refuse(self: object, unit: str) -> None:
        raise RuntimeError(f"parsed after warm-up: {unit}")

    monkeypatch.setattr(units._Ucum, "from_ucum", refuse)
    assert units.is_valid_ucum("ukat/dL")
    assert not units.is_valid_ucum("not a unit")
    assert not units.is_valid_ucum("nkat/dL"), "not warmed up: refused by the stand-in parser"


@pytest.mark.parametrize(("source", "target"), [("Cel", "K"), ("K", "Cel"), ("[degF]", "Cel")])
def test_offset_units_are_refused_rather_than_scaled(source: str, target: str) -> None:
    with pytest.raises(UnitConversionError):
        convert(37.0, source, target)


def test_repeated_conversions_give_the_same_result_as_the_first() -> None:
    first = convert(27.024, "mg/dL", "mmol/L", molar_mass=LACTATE_MOLAR_MASS)
    again = convert(27.024, "mg/dL", "mmol/L", molar_mass=LACTATE_MOLAR_MASS)
    assert first == again == pytest.approx(3.0)
    assert convert(0.0, "mg/dL", "mg/L") == 0.0


@pytest.mark.parametrize(
    ("source", "target", "expected"),
    [
        ("{INR}", "1", 1.3),
        ("1", "{INR}", 1.3),
        ("{score}", "{score}", 1.3),
        ("{INR}", "%", 130.0),
    ],
)
def test_an_annotation_alone_is_the_unit_one(source: str, target: str, expected: float) -> None:
    assert convert(1.3, source, target) == pytest.approx(expected)
    assert is_valid_ucum(source)


@pytest.mark.parametrize(
    ("source", "target"),
    [("mg/L", "{INR}"), ("{INR}", "mg/dL"), ("{INR}", "[IU]/mL"), ("1", "mmol/L")],
)
def test_unitless_and_dimensioned_units_raise_a_conversion_error(source: str, target: str) -> None:
    with pytest.raises(UnitConversionError):
        convert(1.0, source, target)
