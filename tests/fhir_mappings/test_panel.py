"""The packaged marker panel and how Observation codings match it."""

from __future__ import annotations

import pytest

from cds_service.settings import load_settings
from fhir_mappings.config import LocalCode
from fhir_mappings.panel import LOINC_SYSTEM, Panel, _analyte_from_table, load_panel

EXPECTED_KEYS = {
    "il6",
    "ifng",
    "cxcl9",
    "ferritin",
    "crp",
    "il10",
    "sil2r",
    "lymphocytes",
    "platelets",
    "lactate",
    "procalcitonin",
}


def test_packaged_panel_holds_every_recommended_analyte() -> None:
    assert set(load_panel().analytes) == EXPECTED_KEYS


def test_packaged_panel_is_loaded_once_and_reused() -> None:
    assert load_panel() is load_panel()


@pytest.mark.parametrize(
    ("code", "analyte", "primary"),
    [
        ("26881-3", "il6", "26881-3"),
        ("30522-7", "crp", "1988-5"),
        ("26474-7", "lymphocytes", "731-0"),
        ("26515-7", "platelets", "777-3"),
        ("59032-3", "lactate", "2524-7"),
        ("75241-0", "procalcitonin", "33959-8"),
        ("20567-4", "ferritin", "2276-4"),
        ("98115-9", "cxcl9", "98115-9"),
        ("76039-7", "sil2r", "76039-7"),
        ("26848-2", "il10", "26848-2"),
        ("27415-9", "ifng", "27415-9"),
    ],
)
def test_primary_and_alternate_loinc_codes_match_their_analyte(
    code: str, analyte: str, primary: str
) -> None:
    panel = load_panel()
    matched = panel.match([{"system": LOINC_SYSTEM, "code": code}])
    assert matched is not None
    assert matched[0].key == analyte
    assert matched[1].code == code
    assert panel.analytes[analyte].primary.code == primary


@pytest.mark.parametrize(
    "coding",
    [
        {"system": LOINC_SYSTEM, "code": "26881"},  # prefix of IL-6
        {"system": LOINC_SYSTEM, "code": "26881-3 "},
        {"system": "http://loinc.org/", "code": "26881-3"},
        {"system": "urn:oid:2.16.840.1.113883.6.1", "code": "26881-3"},
        {"code": "26881-3"},
        {"system": LOINC_SYSTEM, "code": "33939-0"},  # IL-2, not the soluble receptor
    ],
)
def test_codings_that_are_not_an_exact_system_and_code_do_not_match(coding: dict) -> None:
    assert load_panel().match([coding]) is None


def test_first_matching_coding_wins() -> None:
    codings = [
        {"system": "urn:local", "code": "X"},
        {"system": LOINC_SYSTEM, "code": "2276-4"},
        {"system": LOINC_SYSTEM, "code": "1988-5"},
    ]
    matched = load_panel().match(codings)
    assert matched is not None and matched[0].key == "ferritin"


def test_non_mapping_codings_are_skipped_without_error() -> None:
    matched = load_panel().match(["26881-3", None, {"system": LOINC_SYSTEM, "code": "777-3"}])
    assert matched is not None and matched[0].key == "platelets"


def test_mass_lactate_codes_carry_a_mass_unit_hint_and_lactate_a_molar_mass() -> None:
    lactate = load_panel().analytes["lactate"]
    hints = {coding.code: coding.unit for coding in lactate.codes}
    assert hints["14118-4"] == hints["59032-3"] == hints["30242-2"] == "mg/dL"
    assert hints["2524-7"] == "mmol/L"
    assert lactate.molar_mass == pytest.approx(90.08)
    assert load_panel().analytes["ferritin"].molar_mass is None


def test_ifng_units_per_volume_code_is_recognised_but_marked_arbitrary() -> None:
    matched = load_panel().match([{"system": LOINC_SYSTEM, "code": "12729-0"}])
    assert matched is not None
    assert matched[0].key == "ifng" and matched[1].arbitrary_units


def test_token_param_lists_every_code_of_the_analyte() -> None:
    assert load_panel().token_param("crp") == f"{LOINC_SYSTEM}|1988-5,{LOINC_SYSTEM}|30522-7"


def test_codes_for_unknown_analyte_raises_key_error() -> None:
    with pytest.raises(KeyError):
        load_panel().codes_for("tnf")


def test_local_codes_from_settings_are_appended_and_matched() -> None:
    settings = load_settings(
        local_codes=[{"analyte": "il6", "system": "urn:oid:1.2.3", "code": "IL6X", "unit": "ng/L"}]
    )
    panel = load_panel(settings.local_codes)
    codes = panel.codes_for("il6")
    assert codes[0].code == "26881-3"
    assert (codes[-1].system, codes[-1].code, codes[-1].unit) == ("urn:oid:1.2.3", "IL6X", "ng/L")
    matched = panel.match([{"system": "urn:oid:1.2.3", "code": "IL6X"}])
    assert matched is not None and matched[0].key == "il6"
    assert panel.token_param("il6").endswith(",urn:oid:1.2.3|IL6X")
    assert load_panel().match([{"system": "urn:oid:1.2.3", "code": "IL6X"}]) is None


def test_local_code_for_unknown_analyte_is_refused_at_load() -> None:
    with pytest.raises(ValueError, match="tnf"):
        load_panel([LocalCode(analyte="tnf", system="urn:x", code="1")])


def test_local_code_already_used_by_another_analyte_is_refused() -> None:
    with pytest.raises(ValueError, match="1988-5"):
        load_panel([LocalCode(analyte="il6", system=LOINC_SYSTEM, code="1988-5")])


@pytest.mark.parametrize("unit", ["furlongs", "mmol/L", "[IU]/mL"])
def test_local_code_with_a_unit_that_cannot_become_the_canonical_unit_is_refused(
    unit: str,
) -> None:
    with pytest.raises(ValueError, match="IL6X"):
        load_panel([LocalCode(analyte="il6", system="urn:x", code="IL6X", unit=unit)])


def test_local_lactate_code_in_mass_units_is_accepted_through_its_molar_mass() -> None:
    local = LocalCode(analyte="lactate", system="urn:x", code="LACT-M", unit="mg/dL")
    assert load_panel([local]).codes_for("lactate")[-1].unit == "mg/dL"


def loinc_check_digit(number: str) -> int:
    """The LOINC mod-10 check digit of the part before the hyphen."""
    digits = [int(d) for d in reversed(number)]
    doubled = "".join(str(d) for d in reversed(digits[0::2]))
    doubled = str(int(doubled) * 2)
    kept = "".join(str(d) for d in reversed(digits[1::2]))
    total = sum(int(d) for d in kept + doubled)
    return (10 - total % 10) % 10


def test_loinc_check_digit_helper_matches_the_published_example() -> None:
    assert loinc_check_digit("12345") == 5  # worked example in the LOINC user's guide


def every_loinc_coding():
    for analyte in load_panel().analytes.values():
        for coding in analyte.codes:
            if coding.system == LOINC_SYSTEM:
                yield analyte, coding


@pytest.mark.parametrize(
    ("analyte", "coding"), list(every_loinc_coding()), ids=lambda x: getattr(x, "code", None)
)
def test_every_packaged_loinc_code_passes_its_check_digit(analyte, coding) -> None:
    number, check = coding.code.split("-")
    assert loinc_check_digit(number) == int(check)


@pytest.mark.parametrize(("analyte", "coding"), list(every_loinc_coding()))
def test_every_code_unit_hint_converts_to_the_canonical_unit(analyte, coding) -> None:
    from fhir_mappings.units import UnitConversionError, convert

    assert coding.unit is not None
    if coding.arbitrary_units:
        with pytest.raises(UnitConversionError):
            convert(1.0, coding.unit, analyte.unit, molar_mass=analyte.molar_mass)
    else:
        convert(1.0, coding.unit, analyte.unit, molar_mass=analyte.molar_mass)


@pytest.mark.parametrize(
    ("key", "tier"),
    [
        ("il6", 1),
        ("ferritin", 1),
        ("crp", 1),
        ("lymphocytes", 1),
        ("platelets", 1),
        ("lactate", 1),
        ("procalcitonin", 1),
        ("cxcl9", 2),
        ("ifng", 2),
        ("sil2r", 2),
        ("il10", 2),
    ],
)
def test_routine_markers_are_tier_1_and_send_outs_tier_2(key: str, tier: int) -> None:
    assert load_panel().analytes[key].tier == tier


@pytest.mark.parametrize(
    ("key", "unit"),
    [
        ("il6", "pg/mL"),
        ("ifng", "pg/mL"),
        ("cxcl9", "pg/mL"),
        ("il10", "pg/mL"),
        ("sil2r", "pg/mL"),
        ("ferritin", "ng/mL"),
        ("procalcitonin", "ng/mL"),
        ("crp", "mg/L"),
        ("lymphocytes", "10*3/uL"),
        ("platelets", "10*3/uL"),
        ("lactate", "mmol/L"),
    ],
)
def test_canonical_units_are_the_usual_ucum_units(key: str, unit: str) -> None:
    assert load_panel().analytes[key].unit == unit


def test_model_inputs_are_numbered_columns_of_the_panel() -> None:
    panel = load_panel()
    columns = [panel.analytes[key].model_feature for key in panel.model_features]
    assert columns == list(range(1, len(columns) + 1))
    assert "procalcitonin" not in panel.model_features


def test_every_analyte_has_a_short_label_for_sentences() -> None:
    labels = load_panel().labels
    assert set(labels) == EXPECTED_KEYS
    assert (labels["il6"], labels["ifng"], labels["crp"]) == ("IL-6", "IFN-γ", "CRP")


def test_a_model_input_column_claimed_twice_is_refused() -> None:
    panel = load_panel()
    lactate = panel.analytes["lactate"].model_copy(update={"model_feature": 1})
    with pytest.raises(ValueError, match="model_feature"):
        Panel(analytes={**panel.analytes, "lactate": lactate})


def test_an_unknown_key_in_a_panel_table_is_refused() -> None:
    table = {"display": "X", "label": "X", "tier": 1, "unit": "pg/mL", "modelfeature": 3}
    with pytest.raises(ValueError, match="modelfeature"):
        _analyte_from_table("x", {**table, "codes": [{"code": "1-8", "display": "X"}]})
