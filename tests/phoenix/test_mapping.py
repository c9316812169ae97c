"""FHIR resources become Phoenix readings in the package's units, or exclusions saying why."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from fhir_mappings.encounters import EncounterFacts, encounter_facts
from fhir_mappings.measurement import ExclusionReason
from fhir_mappings.phoenix_config import (
    CodeRef,
    PhoenixCodeSettings,
    PhoenixLocalCode,
    SupportCode,
    VasoactiveCode,
)
from fhir_mappings.phoenix_inputs import (
    PhoenixCatalog,
    PhoenixExclusion,
    PhoenixExclusionReason,
    PhoenixExtraction,
    PhoenixReading,
    extract_phoenix,
    load_phoenix_catalog,
    phoenix_patient,
)

from .conftest import LOINC, NOW, RXNORM, SCT, UCUM, concept, iso, observation


def only_reading(extraction: PhoenixExtraction) -> PhoenixReading:
    assert extraction.exclusions == ()
    assert len(extraction.readings) == 1
    return extraction.readings[0]


def only_exclusion(extraction: PhoenixExtraction) -> PhoenixExclusion:
    assert extraction.readings == ()
    assert len(extraction.exclusions) == 1
    return extraction.exclusions[0]


def valid_r4b(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource, after checking it is valid FHIR R4B."""
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    return resource


def mapped(*resources: dict[str, Any], catalog: PhoenixCatalog | None = None) -> PhoenixExtraction:
    return extract_phoenix(
        [valid_r4b(r) for r in resources], catalog or load_phoenix_catalog(), patient_id="p1"
    )


# --- measured inputs in alternate units -------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "value", "unit", "key", "expected"),
    [
        ("59408-5", 92, "%", "spo2", 92.0),
        ("3150-0", 40, "%", "fio2", 0.40),  # percent
        ("3150-0", 0.3, "%", "fio2", 0.30),  # a fraction sent with code %
        ("71835-3", 0.5, "1", "fio2", 0.50),  # a fraction
        ("19994-3", 100, "%", "fio2", 1.00),
        ("2703-7", 80, "mm[Hg]", "pao2", 80.0),
        ("2703-7", 10, "kPa", "pao2", 75.006),
        ("2524-7", 4.2, "mmol/L", "lactate", 4.2),
        ("14118-4", 45.04, "mg/dL", "lactate", 5.0),  # mass units, molar mass 90.08 g/mol
        ("777-3", 150, "10*3/uL", "platelets", 150.0),
        ("777-3", 150, "10*9/L", "platelets", 150.0),
        ("26515-7", 95, "/nL", "platelets", 95.0),
        ("6301-6", 1.4, "{INR}", "inr", 1.4),
        ("34714-6", 1.2, "1", "inr", 1.2),
        ("48065-7", 2.5, "mg/L", "d_dimer", 2.5),
        ("48067-3", 2500, "ng/mL", "d_dimer", 2.5),
        ("71427-9", 3.1, "ug/mL", "d_dimer", 3.1),
        ("3255-7", 150, "mg/dL", "fibrinogen", 150.0),
        ("3255-7", 0.9, "g/L", "fibrinogen", 90.0),
        ("76214-6", 52, "mm[Hg]", "map_arterial", 52.0),
        ("76536-2", 60, "mm[Hg]", "map_cuff", 60.0),
        ("8478-0", 61, "mm[Hg]", "map_cuff", 61.0),
        ("9269-2", 9, "{score}", "gcs", 9.0),
        ("2345-7", 7.0, "mmol/L", "glucose", 126.1),
        ("751-8", 1500, "/uL", "anc", 1.5),
        ("731-0", 0.8, "10*3/uL", "alc", 0.8),
        ("14682-9", 88.4, "umol/L", "creatinine", 1.0),
        ("14631-6", 68.4, "umol/L", "bilirubin", 4.0),
        ("1742-6", 120, "U/L", "alt", 120.0),
    ],
)
def test_observations_in_their_units_become_readings(code, value, unit, key, expected) -> None:
    result = only_reading(mapped(observation(code, value, unit)))
    assert (result.input, result.time) == (key, NOW)
    assert result.value == pytest.approx(expected, rel=1e-3)
    assert (result.system, result.code, result.source) == (LOINC, code, f"Observation/obs-{code}")
    assert (result.source_value, result.source_unit) == (value, unit)


@pytest.mark.parametrize(
    ("code", "value", "unit", "key", "expected"),
    [
        ("777-3", 150, "K/uL", "platelets", 150.0),
        ("2524-7", 4.0, "mmol/l", "lactate", 4.0),
        ("2703-7", 70, "mmHg", "pao2", 70.0),
        ("3150-0", 35, "%", "fio2", 0.35),
        ("48065-7", 0.8, "mg/L FEU", "d_dimer", 0.8),
        ("48065-7", 800, "ng/mL FEU", "d_dimer", 0.8),
    ],
)
def test_unit_text_without_ucum_is_read(code, value, unit, key, expected) -> None:
    result = only_reading(mapped(observation(code, value, unit, ucum=False)))
    assert (result.input, result.value) == (key, pytest.approx(expected))


def test_a_value_without_a_unit_takes_the_unit_the_code_implies() -> None:
    result = only_reading(mapped(observation("2524-7", 3.0)))
    assert (result.value, result.source_unit) == (3.0, "mmol/L")


@pytest.mark.parametrize(
    ("code", "value", "unit", "reason"),
    [
        ("3150-0", 0.15, "%", PhoenixExclusionReason.OUT_OF_RANGE),  # below room air
        ("71835-3", 40, "1", PhoenixExclusionReason.OUT_OF_RANGE),  # a fraction above 1
        ("3150-0", 3, "L/min", ExclusionReason.UNIT_NOT_CONVERTIBLE),  # a flow is not an FiO2
        ("59408-5", 104, "%", PhoenixExclusionReason.OUT_OF_RANGE),
        ("2524-7", 60, "mmol/L", PhoenixExclusionReason.OUT_OF_RANGE),
        ("76214-6", 0, "mm[Hg]", PhoenixExclusionReason.OUT_OF_RANGE),
        ("9269-2", 2, "{score}", PhoenixExclusionReason.OUT_OF_RANGE),
        ("9269-2", 9, "mg/dL", ExclusionReason.UNIT_NOT_CONVERTIBLE),
        ("777-3", 150, "mg/dL", ExclusionReason.UNIT_NOT_CONVERTIBLE),
        ("7799-0", 300, "[arb'U]/mL", ExclusionReason.UNIT_NOT_CONVERTIBLE),  # units/volume
    ],
)
def test_unusable_values_are_excluded_with_a_reason(code, value, unit, reason) -> None:
    excluded = only_exclusion(mapped(observation(code, value, unit)))
    assert excluded.reason == reason
    assert excluded.code == code and excluded.source == f"Observation/obs-{code}"


# --- D-dimer basis ----------------------------------------------------------------------------


def test_ddu_d_dimer_is_excluded_without_a_site_factor() -> None:
    excluded = only_exclusion(mapped(observation("48066-5", 900, "ug/L")))
    assert excluded.reason is PhoenixExclusionReason.DDU_NOT_CONVERTED
    assert excluded.input == "d_dimer" and "DDU" in excluded.detail


def test_ddu_d_dimer_is_converted_with_the_site_assay_factor() -> None:
    catalog = load_phoenix_catalog(PhoenixCodeSettings(ddu_to_feu_factor=2.0))
    result = only_reading(mapped(observation("48066-5", 900, "ug/L"), catalog=catalog))
    assert result.value == pytest.approx(1.8)  # 0.9 mg/L DDU x 2


def test_a_feu_code_with_a_ddu_unit_is_a_contradiction() -> None:
    excluded = only_exclusion(mapped(observation("48065-7", 0.9, "mg/L{DDU}")))
    assert excluded.reason is ExclusionReason.UNIT_NOT_CONVERTIBLE
    assert "disagree" in excluded.detail


# --- status, subject, time, limits ------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("preliminary", PhoenixExclusionReason.PRELIMINARY),
        ("entered-in-error", ExclusionReason.ENTERED_IN_ERROR),
        ("registered", ExclusionReason.UNSUPPORTED_STATUS),
    ],
)
def test_only_counted_statuses_are_used(status, reason) -> None:
    excluded = only_exclusion(mapped(observation("2524-7", 3.0, "mmol/L", status=status)))
    assert excluded.reason == reason


def test_amended_and_corrected_results_are_used() -> None:
    extraction = mapped(
        observation("2524-7", 3.0, "mmol/L", status="amended", ident="a"),
        observation("2524-7", 4.0, "mmol/L", status="corrected", ident="b"),
    )
    assert [r.value for r in extraction.readings] == [3.0, 4.0]


def test_another_patients_result_is_excluded() -> None:
    other = observation("2524-7", 3.0, "mmol/L", subject={"reference": "Patient/p2"})
    assert only_exclusion(mapped(other)).reason is ExclusionReason.OTHER_PATIENT


def test_a_time_without_timezone_is_excluded() -> None:
    resource = observation("2524-7", 3.0, "mmol/L", effectiveDateTime="2026-03-02T09:00:00")
    extraction = extract_phoenix([resource], load_phoenix_catalog())  # not valid FHIR either
    assert only_exclusion(extraction).reason is ExclusionReason.IMPRECISE_TIME


def test_a_result_reported_as_a_limit_is_excluded() -> None:
    resource = observation("48065-7", None)
    resource["valueQuantity"] = {
        "value": 0.5,
        "comparator": "<",
        "unit": "mg/L",
        "system": UCUM,
        "code": "mg/L",
    }
    excluded = only_exclusion(mapped(resource))
    assert excluded.reason is PhoenixExclusionReason.REPORTED_AS_LIMIT


def test_data_absent_is_excluded() -> None:
    resource = observation(
        "2524-7",
        dataAbsentReason=concept(
            "http://terminology.hl7.org/CodeSystem/data-absent-reason", "error"
        ),
    )
    assert only_exclusion(mapped(resource)).reason is ExclusionReason.DATA_ABSENT


def test_other_observations_and_resource_types_are_ignored() -> None:
    sodium = observation("2951-2", 140, "mmol/L")
    patient = {"resourceType": "Patient", "id": "p1"}
    assert mapped(sodium, patient) == PhoenixExtraction()


def test_malformed_input_never_raises(catalog) -> None:
    broken = [
        "not a resource",
        {"resourceType": "Observation", "code": {"coding": "nope"}},
        {
            "resourceType": "Observation",
            "status": "final",
            "code": concept(LOINC, "2524-7"),
            "effectiveDateTime": iso(NOW),
            "valueQuantity": {"value": "high"},
        },
        {
            "resourceType": "Procedure",
            "status": "completed",
            "code": concept(SCT, "1258985005"),
            "performedPeriod": {"start": "yesterday"},
        },
        {
            "resourceType": "MedicationAdministration",
            "status": "completed",
            "medicationCodeableConcept": concept(RXNORM, "3992"),
            "effectivePeriod": "x",
        },
    ]
    extraction = extract_phoenix(broken, catalog)
    assert extraction.readings == ()
    assert {e.reason for e in extraction.exclusions} <= {
        ExclusionReason.MALFORMED,
        ExclusionReason.NO_EFFECTIVE_TIME,
        PhoenixExclusionReason.NOT_CONTINUOUS,
    }
    assert len(extraction.exclusions) == 3


# --- GCS and pupils ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [("valueInteger", 4, 4.0), ("valueString", "1T", 1.0), ("valueString", "5", 5.0)],
)
def test_gcs_components_as_integer_or_text(field, value, expected) -> None:
    resource = {**observation("9270-0"), field: value}
    result = only_reading(mapped(resource))
    assert (result.input, result.value) == ("gcs_verbal", expected)


def test_gcs_text_that_is_not_a_score_is_excluded() -> None:
    resource = {**observation("9269-2"), "valueString": "sedated"}
    assert only_exclusion(mapped(resource)).reason is ExclusionReason.NO_NUMERIC_VALUE


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ((LOINC, "LA25442-7"), 1.0),
        ((SCT, "301944006"), 1.0),
        ((LOINC, "LA25441-9"), 0.0),
        ((LOINC, "LA24899-9"), 0.0),
    ],
)
def test_pupil_answers(answer, expected) -> None:
    resource = {**observation("79899-1"), "valueCodeableConcept": concept(*answer)}
    result = only_reading(mapped(resource))
    assert (result.input, result.value) == ("pupil_left", expected)


def test_an_unknown_pupil_answer_is_excluded() -> None:
    resource = {**observation("79815-7"), "valueCodeableConcept": {"text": "pinpoint"}}
    excluded = only_exclusion(mapped(resource))
    assert excluded.reason is PhoenixExclusionReason.UNRECOGNISED_ANSWER


# --- blood pressure panels --------------------------------------------------------------------


def bp_panel(sbp: float, dbp: float, mean: float | None = None, **extra: Any) -> dict[str, Any]:
    def component(code: str, value: float) -> dict[str, Any]:
        return {
            "code": concept(LOINC, code),
            "valueQuantity": {"value": value, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
        }

    parts = [component("8480-6", sbp), component("8462-4", dbp)]
    if mean is not None:
        parts.append(component("8478-0", mean))
    return {**observation("85354-9"), "component": parts, **extra}


def test_a_bp_panel_gives_cuff_sbp_dbp_and_map() -> None:
    extraction = mapped(bp_panel(90, 50, 63))
    assert {r.input: r.value for r in extraction.readings} == {
        "sbp_cuff": 90.0,
        "dbp_cuff": 50.0,
        "map_cuff": 63.0,
    }


def test_a_site_arterial_method_makes_plain_codes_arterial() -> None:
    catalog = load_phoenix_catalog(
        PhoenixCodeSettings(arterial_method_codes=[CodeRef(code="10179008")])
    )
    panel = bp_panel(90, 50, 63, method=concept(SCT, "10179008"))
    extraction = mapped(panel, catalog=catalog)
    assert {r.input for r in extraction.readings} == {
        "sbp_arterial",
        "dbp_arterial",
        "map_arterial",
    }


def test_a_map_outside_diastolic_and_systolic_is_excluded() -> None:
    extraction = mapped(bp_panel(90, 50, 95))
    assert {r.input for r in extraction.readings} == {"sbp_cuff", "dbp_cuff"}
    (excluded,) = extraction.exclusions
    assert (excluded.input, excluded.reason) == (
        "map_cuff",
        PhoenixExclusionReason.IMPLAUSIBLE_PRESSURES,
    )


def test_systolic_not_above_diastolic_excludes_both() -> None:
    extraction = mapped(bp_panel(50, 50))
    assert extraction.readings == ()
    assert {e.input for e in extraction.exclusions} == {"sbp_cuff", "dbp_cuff"}


# --- respiratory support ----------------------------------------------------------------------


def procedure(code: str, status: str = "in-progress", **extra: Any) -> dict[str, Any]:
    resource = {
        "resourceType": "Procedure",
        "id": f"proc-{code}",
        "status": status,
        "subject": {"reference": "Patient/p1"},
        "code": concept(SCT, code),
        "performedPeriod": {"start": iso(NOW - timedelta(hours=5))},
    }
    return {**resource, **extra}


def test_invasive_ventilation_in_progress_is_ongoing() -> None:
    result = only_reading(mapped(procedure("1258985005")))
    assert (result.input, result.value, result.ongoing) == ("imv", 1.0, True)
    assert result.time == NOW - timedelta(hours=5) and result.end is None
    assert result.source == "Procedure/proc-1258985005"


def test_a_completed_period_ends_at_its_end() -> None:
    ended = procedure(
        "1258985005",
        status="completed",
        performedPeriod={
            "start": iso(NOW - timedelta(hours=5)),
            "end": iso(NOW - timedelta(hours=1)),
        },
    )
    result = only_reading(mapped(ended))
    assert (result.ongoing, result.end) == (False, NOW - timedelta(hours=1))


def test_generic_ventilation_with_a_tube_is_invasive() -> None:
    with_tube = procedure("40617009", usedCode=[concept(SCT, "26412008")])
    assert only_reading(mapped(with_tube)).input == "imv"


def test_generic_ventilation_without_a_tube_is_other_support() -> None:
    assert only_reading(mapped(procedure("40617009"))).input == "other_respiratory_support"


@pytest.mark.parametrize(
    "code",
    ["428311008", "447837008", "47545007", "870533002", "1259025002", "371907003", "57485005"],
)
def test_non_invasive_support_and_oxygen_are_other_support(code) -> None:
    assert only_reading(mapped(procedure(code))).input == "other_respiratory_support"


def test_a_procedure_at_a_moment_is_a_point() -> None:
    resource = procedure("47545007", status="completed")
    del resource["performedPeriod"]
    resource["performedDateTime"] = iso(NOW)
    result = only_reading(mapped(resource))
    assert (result.time, result.end, result.ongoing) == (NOW, None, False)


@pytest.mark.parametrize("status", ["not-done", "entered-in-error", "preparation"])
def test_procedures_not_done_are_excluded(status) -> None:
    excluded = only_exclusion(mapped(procedure("1258985005", status=status)))
    assert excluded.reason is ExclusionReason.UNSUPPORTED_STATUS


def device_use(device_ref: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "DeviceUseStatement",
        "id": "dus1",
        "status": "active",
        "subject": {"reference": "Patient/p1"},
        "device": {"reference": device_ref},
        "timingPeriod": {"start": iso(NOW - timedelta(hours=2))},
        **extra,
    }


def test_a_device_use_statement_with_a_contained_high_flow_cannula() -> None:
    cannula = {"resourceType": "Device", "id": "hf", "type": concept(SCT, "426854004")}
    result = only_reading(mapped(device_use("#hf", contained=[cannula])))
    assert (result.input, result.ongoing) == ("other_respiratory_support", True)


def test_a_device_use_statement_naming_an_endotracheal_tube_sent_alongside() -> None:
    tube = {"resourceType": "Device", "id": "ett", "type": concept(SCT, "26412008")}
    extraction = mapped(device_use("Device/ett"), tube)
    assert only_reading(extraction).input == "imv"


def test_a_device_use_statement_for_an_unknown_device_is_ignored() -> None:
    assert mapped(device_use("Device/missing")) == PhoenixExtraction()


@pytest.mark.parametrize(
    ("code", "value", "support"),
    [("76248-4", 6, "imv"), ("76530-5", 12, "imv"), ("3151-8", 2, "other_respiratory_support")],
)
def test_ventilator_and_oxygen_settings_are_evidence_of_support(code, value, support) -> None:
    unit = "L/min" if code == "3151-8" else "cm[H2O]"
    result = only_reading(mapped(observation(code, value, unit)))
    assert (result.input, result.value, result.code) == (support, 1.0, code)


@pytest.mark.parametrize(("code", "value"), [("76248-4", 3), ("3151-8", 0)])
def test_settings_at_or_below_their_threshold_are_no_evidence(code, value) -> None:
    unit = "L/min" if code == "3151-8" else "cm[H2O]"
    assert mapped(observation(code, value, unit)) == PhoenixExtraction()


# --- vasoactives ------------------------------------------------------------------------------


def administration(code: str = "3992", **extra: Any) -> dict[str, Any]:
    resource = {
        "resourceType": "MedicationAdministration",
        "id": f"ma-{code}",
        "status": "in-progress",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": concept(RXNORM, code),
        "effectivePeriod": {"start": iso(NOW - timedelta(hours=3))},
        "dosage": {
            "route": concept(SCT, "47625008"),
            "rateQuantity": {
                "value": 0.1,
                "unit": "ug/kg/min",
                "system": UCUM,
                "code": "ug/kg/min",
            },
        },
    }
    return {**resource, **extra}


@pytest.mark.parametrize(
    ("code", "agent"),
    [
        ("3992", "epinephrine"),
        ("310116", "epinephrine"),
        ("7512", "norepinephrine"),
        ("373112", "norepinephrine"),
        ("3628", "dopamine"),
        ("3616", "dobutamine"),
        ("11149", "vasopressin"),
        ("52769", "milrinone"),
    ],
)
def test_each_agent_is_recognised_by_rxnorm(code, agent) -> None:
    result = only_reading(mapped(administration(code)))
    assert (result.input, result.agent, result.ongoing) == ("vasoactive", agent, True)


def test_a_medication_reference_is_resolved_through_its_ingredients() -> None:
    medication = {
        "resourceType": "Medication",
        "id": "m1",
        "code": {"text": "NE drip"},
        "ingredient": [{"itemCodeableConcept": concept(RXNORM, "7512")}],
    }
    resource = administration()
    del resource["medicationCodeableConcept"]
    resource["medicationReference"] = {"reference": "Medication/m1"}
    assert only_reading(mapped(resource, medication)).agent == "norepinephrine"


def test_other_drugs_are_ignored() -> None:
    assert mapped(administration("161")) == PhoenixExtraction()  # acetaminophen


def test_nebulised_epinephrine_is_not_systemic() -> None:
    inhaled = administration(dosage={"route": concept(SCT, "447694001", "Respiratory tract route")})
    excluded = only_exclusion(mapped(inhaled))
    assert excluded.reason is PhoenixExclusionReason.NOT_SYSTEMIC


def test_a_route_given_as_text_iv_is_systemic() -> None:
    resource = administration(dosage={"route": {"text": "IV"}})
    assert only_reading(mapped(resource)).agent == "epinephrine"


def test_a_single_dose_is_not_an_infusion() -> None:
    bolus = administration(effectiveDateTime=iso(NOW), dosage={"route": concept(SCT, "47625008")})
    del bolus["effectivePeriod"]
    assert only_exclusion(mapped(bolus)).reason is PhoenixExclusionReason.NOT_CONTINUOUS


def test_a_charted_rate_at_a_moment_is_a_point_carried_forward() -> None:
    charted = administration(effectiveDateTime=iso(NOW))
    del charted["effectivePeriod"]
    result = only_reading(mapped(charted))
    assert (result.time, result.end, result.ongoing) == (NOW, None, False)


def test_a_stopped_infusion_ends_at_its_period_end() -> None:
    stopped = administration(
        status="stopped",
        effectivePeriod={
            "start": iso(NOW - timedelta(hours=3)),
            "end": iso(NOW - timedelta(hours=1)),
        },
    )
    result = only_reading(mapped(stopped))
    assert (result.end, result.ongoing) == (NOW - timedelta(hours=1), False)


@pytest.mark.parametrize("status", ["not-done", "entered-in-error", "on-hold"])
def test_administrations_not_given_are_excluded(status) -> None:
    excluded = only_exclusion(mapped(administration(status=status)))
    assert excluded.reason is ExclusionReason.UNSUPPORTED_STATUS


def request(**extra: Any) -> dict[str, Any]:
    resource = {
        "resourceType": "MedicationRequest",
        "id": "mr1",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/p1"},
        "medicationCodeableConcept": concept(RXNORM, "3616"),
        "authoredOn": iso(NOW - timedelta(hours=6)),
        "dosageInstruction": [
            {
                "route": concept(SCT, "47625008"),
                "timing": {"repeat": {"boundsPeriod": {"start": iso(NOW - timedelta(hours=5))}}},
                "doseAndRate": [
                    {
                        "rateQuantity": {
                            "value": 5,
                            "unit": "ug/kg/min",
                            "system": UCUM,
                            "code": "ug/kg/min",
                        }
                    }
                ],
            }
        ],
    }
    return {**resource, **extra}


def test_medication_requests_are_ignored_where_administrations_are_used() -> None:
    assert mapped(request()) == PhoenixExtraction()


def test_an_active_infusion_order_where_a_site_reads_requests() -> None:
    catalog = load_phoenix_catalog(PhoenixCodeSettings(vasoactives_from="requests"))
    result = only_reading(mapped(request(), catalog=catalog))
    assert (result.agent, result.ongoing) == ("dobutamine", True)
    assert result.time == NOW - timedelta(hours=5) and result.source == "MedicationRequest/mr1"
    assert mapped(administration(), catalog=catalog) == PhoenixExtraction()


def test_a_proposed_order_is_not_an_order() -> None:
    catalog = load_phoenix_catalog(PhoenixCodeSettings(vasoactives_from="requests"))
    excluded = only_exclusion(mapped(request(intent="proposal"), catalog=catalog))
    assert excluded.reason is PhoenixExclusionReason.NOT_AN_ORDER


# --- site codes -------------------------------------------------------------------------------


def test_site_codes_are_added_to_the_packaged_ones() -> None:
    settings = PhoenixCodeSettings(
        local_codes=[
            PhoenixLocalCode(input="lactate", system="urn:site", code="LAC", unit="mmol/L")
        ],
        procedure_codes=[SupportCode(support="imv", system="urn:site", code="VENT")],
        vasoactive_codes=[VasoactiveCode(agent="vasopressin", system="urn:site", code="VASO")],
        systemic_route_codes=[CodeRef(system="urn:site", code="CVL")],
    )
    catalog = load_phoenix_catalog(settings)
    lactate = observation("LAC", 2.0, "mmol/l", ucum=False)
    lactate["code"] = concept("urn:site", "LAC")
    vent = procedure("x")
    vent["code"] = concept("urn:site", "VENT")
    drip = administration(
        medicationCodeableConcept=concept("urn:site", "VASO"),
        dosage={"route": concept("urn:site", "CVL")},
    )
    extraction = mapped(lactate, vent, drip, catalog=catalog)
    assert extraction.exclusions == ()
    assert [(r.input, r.agent) for r in extraction.readings] == [
        ("lactate", None),
        ("imv", None),
        ("vasoactive", "vasopressin"),
    ]
    assert ("urn:site", "LAC") in catalog.observation_codes()


def test_a_site_code_for_an_unknown_input_or_in_a_wrong_unit_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown input"):
        load_phoenix_catalog(
            PhoenixCodeSettings(
                local_codes=[PhoenixLocalCode(input="sodium", system="urn:s", code="NA")]
            )
        )
    with pytest.raises(ValueError, match="lactate"):
        load_phoenix_catalog(
            PhoenixCodeSettings(
                local_codes=[PhoenixLocalCode(input="lactate", system="urn:s", code="L", unit="g")]
            )
        )


def test_every_packaged_code_belongs_to_one_input(catalog) -> None:
    codes = catalog.observation_codes(phoenix8=True)
    assert len(codes) == len(set(codes))
    assert all(system == LOINC for system, _ in codes)


# --- the patient ------------------------------------------------------------------------------


def facts_of(encounter: dict) -> EncounterFacts:
    """The EncounterFacts the hook hands to `phoenix_patient`."""
    (facts,) = encounter_facts([encounter]).facts
    return facts


def test_patient_signals_from_patient_encounter_and_gestational_age() -> None:
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "2025-12-01"}
    encounter = {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "in-progress",
        "class": {"code": "IMP"},
        "period": {"start": "2026-02-20T10:00:00Z"},
    }
    gestation = observation("76516-4", 34.5, "wk")
    signals = phoenix_patient(
        valid_r4b(patient), facts_of(valid_r4b(encounter)), [valid_r4b(gestation)]
    )
    assert signals.birth_date == date(2025, 12, 1)
    assert signals.encounter_start == datetime(2026, 2, 20, 10, tzinfo=UTC)
    assert signals.gestational_age_weeks == pytest.approx(34.5)
    assert signals.birth_hospitalisation is False


def test_gestational_age_in_days_is_read_in_weeks() -> None:
    signals = phoenix_patient({"birthDate": "2026-01-01"}, None, [observation("11884-4", 245, "d")])
    assert signals.gestational_age_weeks == pytest.approx(35.0)


def test_born_in_hospital_is_the_birth_hospitalisation() -> None:
    encounter = {
        "resourceType": "Encounter",
        "id": "e-born",
        "status": "in-progress",
        "class": {"code": "IMP"},
        "period": {"start": "2026-02-20T10:00:00Z"},
        "hospitalization": {
            "admitSource": concept("http://terminology.hl7.org/CodeSystem/admit-source", "born")
        },
    }
    signals = phoenix_patient({"birthDate": "2026-02-20"}, facts_of(valid_r4b(encounter)))
    assert signals.birth_hospitalisation is True


def test_an_encounter_starting_on_the_birth_date_is_the_birth_hospitalisation() -> None:
    encounter = {
        "resourceType": "Encounter",
        "id": "e-birth",
        "status": "in-progress",
        "period": {"start": "2026-02-20T03:00:00Z"},
    }
    assert phoenix_patient({"birthDate": "2026-02-20"}, facts_of(encounter)).birth_hospitalisation
    later = {**encounter, "period": {"start": "2026-02-21T03:00:00Z"}}
    assert not phoenix_patient({"birthDate": "2026-02-20"}, facts_of(later)).birth_hospitalisation


@pytest.mark.parametrize("birth", ["2020", "2020-05", None, "2020-02-30"])
def test_a_partial_or_missing_birth_date_gives_no_age(birth) -> None:
    assert phoenix_patient({"birthDate": birth}).birth_date is None
