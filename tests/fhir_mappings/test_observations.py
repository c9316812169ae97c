"""Observation dicts become Measurements in canonical units, or Exclusions that say why."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from fhir.resources.R4B.observation import Observation

from cds_service.settings import load_settings
from fhir_mappings.measurement import ExclusionReason, Extraction, Measurement
from fhir_mappings.observations import extract
from fhir_mappings.panel import LOINC_SYSTEM, Panel, load_panel

from .conftest import UCUM, observation

REFERENCE_MEANING = "http://terminology.hl7.org/CodeSystem/referencerange-meaning"


def only_measurement(extraction: Extraction):
    assert extraction.exclusions == ()
    assert len(extraction.measurements) == 1
    return extraction.measurements[0]


def only_exclusion(extraction: Extraction):
    assert extraction.measurements == ()
    assert len(extraction.exclusions) == 1
    return extraction.exclusions[0]


# --- recognition -------------------------------------------------------------------------------


def test_final_il6_in_canonical_unit_becomes_a_measurement(panel: Panel) -> None:
    measurement = only_measurement(extract([observation()], panel, patient_id="p1"))
    assert (measurement.analyte, measurement.value, measurement.unit) == ("il6", 42.0, "pg/mL")
    assert (measurement.system, measurement.code) == (LOINC_SYSTEM, "26881-3")
    assert measurement.time == datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    assert measurement.status == "final" and measurement.counts
    assert measurement.observation_id == "obs-26881-3"
    assert not measurement.converted


def test_observations_outside_the_panel_are_ignored_silently(panel: Panel) -> None:
    sodium = observation("2951-2", 140.0, "mmol/L")
    not_an_observation = {"resourceType": "Condition", "id": "c1"}
    no_code = {"resourceType": "Observation", "status": "final"}
    extraction = extract([sodium, not_an_observation, no_code], panel)
    assert extraction == Extraction()


def test_codes_matched_by_prefix_or_wrong_system_are_ignored(panel: Panel) -> None:
    prefix = observation("26881")
    other_system = observation(system="http://snomed.info/sct")
    assert extract([prefix, other_system], panel) == Extraction()


def test_first_panel_coding_of_an_observation_decides_the_analyte(panel: Panel) -> None:
    resource = observation("2276-4", 900.0, "ng/mL")
    resource["code"]["coding"] = [
        {"system": "urn:oid:1.2.840.114350", "code": "FERR"},
        {"system": LOINC_SYSTEM, "code": "2276-4", "display": "Ferritin"},
    ]
    measurement = only_measurement(extract([resource], panel))
    assert (measurement.analyte, measurement.code) == ("ferritin", "2276-4")


def test_entries_that_are_not_objects_are_reported_as_malformed(panel: Panel) -> None:
    extraction = extract(["not a resource", observation()], panel)
    assert len(extraction.measurements) == 1
    assert extraction.exclusions[0].reason is ExclusionReason.MALFORMED


# --- status ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["final", "amended", "corrected"])
def test_final_amended_and_corrected_results_count(panel: Panel, status: str) -> None:
    measurement = only_measurement(extract([observation(status=status)], panel))
    assert measurement.status == status and measurement.counts


def test_preliminary_result_is_kept_but_does_not_count(panel: Panel) -> None:
    measurement = only_measurement(extract([observation(status="preliminary")], panel))
    assert measurement.status == "preliminary"
    assert not measurement.counts


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ("entered-in-error", ExclusionReason.ENTERED_IN_ERROR),
        ("cancelled", ExclusionReason.CANCELLED),
        ("registered", ExclusionReason.UNSUPPORTED_STATUS),
        ("unknown", ExclusionReason.UNSUPPORTED_STATUS),
    ],
)
def test_unusable_statuses_become_exclusions(
    panel: Panel, status: str, reason: ExclusionReason
) -> None:
    exclusion = only_exclusion(extract([observation(status=status)], panel))
    assert exclusion.reason is reason
    assert status in exclusion.detail
    assert (exclusion.analyte, exclusion.code) == ("il6", "26881-3")
    assert exclusion.time == datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def test_entered_in_error_without_a_value_is_still_reported_as_entered_in_error(
    panel: Panel,
) -> None:
    exclusion = only_exclusion(extract([observation(value=None, status="entered-in-error")], panel))
    assert exclusion.reason is ExclusionReason.ENTERED_IN_ERROR


def test_missing_status_is_malformed(panel: Panel) -> None:
    resource = observation()
    del resource["status"]
    assert only_exclusion(extract([resource], panel)).reason is ExclusionReason.MALFORMED


# --- values ------------------------------------------------------------------------------------


@pytest.mark.parametrize("comparator", ["<", "<=", ">=", ">"])
def test_comparator_is_kept_with_the_value(panel: Panel, comparator: str) -> None:
    resource = observation(value=5.0)
    resource["valueQuantity"]["comparator"] = comparator
    measurement = only_measurement(extract([resource], panel))
    assert (measurement.comparator, measurement.value) == (comparator, 5.0)


def test_comparator_survives_unit_conversion(panel: Panel) -> None:
    resource = observation("1988-5", 0.5, "mg/dL")
    resource["valueQuantity"]["comparator"] = "<"
    measurement = only_measurement(extract([resource], panel))
    assert measurement.comparator == "<"
    assert measurement.value == pytest.approx(5.0)


def test_unknown_comparator_is_malformed(panel: Panel) -> None:
    resource = observation()
    resource["valueQuantity"]["comparator"] = "~"
    assert only_exclusion(extract([resource], panel)).reason is ExclusionReason.MALFORMED


@pytest.mark.parametrize(
    ("value_field", "payload"),
    [
        ("valueString", "<5 pg/mL"),
        ("valueCodeableConcept", {"text": "detected"}),
        ("valueBoolean", True),
    ],
)
def test_non_numeric_values_are_excluded_naming_the_value_type(
    panel: Panel, value_field: str, payload: Any
) -> None:
    resource = observation(value=None, **{value_field: payload})
    exclusion = only_exclusion(extract([resource], panel))
    assert exclusion.reason is ExclusionReason.NO_NUMERIC_VALUE
    assert value_field in exclusion.detail


def test_missing_value_is_excluded(panel: Panel) -> None:
    exclusion = only_exclusion(extract([observation(value=None)], panel))
    assert exclusion.reason is ExclusionReason.NO_NUMERIC_VALUE
    assert "no value" in exclusion.detail


def test_quantity_without_a_value_is_excluded(panel: Panel) -> None:
    resource = observation(valueQuantity={"unit": "pg/mL"}, value=None)
    assert only_exclusion(extract([resource], panel)).reason is ExclusionReason.NO_NUMERIC_VALUE


def test_data_absent_reason_is_excluded_with_its_display(panel: Panel) -> None:
    reason = {"coding": [{"system": "x", "code": "error", "display": "Error"}]}
    resource = observation(value=None, dataAbsentReason=reason)
    exclusion = only_exclusion(extract([resource], panel))
    assert exclusion.reason is ExclusionReason.DATA_ABSENT
    assert "Error" in exclusion.detail


@pytest.mark.parametrize("bad_value", ["42", True, None, float("nan"), float("inf"), [1]])
def test_value_that_is_not_a_finite_number_never_becomes_a_measurement(
    panel: Panel, bad_value: Any
) -> None:
    resource = observation(value=None, valueQuantity={"value": bad_value, "unit": "pg/mL"})
    exclusion = only_exclusion(extract([resource], panel))
    assert exclusion.reason in {ExclusionReason.MALFORMED, ExclusionReason.NO_NUMERIC_VALUE}


# --- units -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "value", "unit", "ucum", "analyte", "expected"),
    [
        ("1988-5", 4.08, "mg/dL", True, "crp", 40.8),
        ("30522-7", 1.2, "mg/dL", True, "crp", 12.0),
        ("14118-4", 45.04, "mg/dL", True, "lactate", 5.0),
        ("59032-3", 18.016, "mg/dL", True, "lactate", 2.0),
        ("2524-7", 3.1, "mmol/L", True, "lactate", 3.1),
        ("731-0", 850.0, "/uL", True, "lymphocytes", 0.85),
        ("731-0", 850.0, "cells/uL", False, "lymphocytes", 0.85),
        ("26474-7", 1.4, "10*9/L", True, "lymphocytes", 1.4),
        ("777-3", 95.0, "K/uL", False, "platelets", 95.0),
        ("26515-7", 120.0, "x10^9/L", False, "platelets", 120.0),
        ("2276-4", 1500.0, "ug/L", True, "ferritin", 1500.0),
        ("2276-4", 1500.0, "mcg/L", False, "ferritin", 1500.0),
        ("33959-8", 2.5, "ng/ml", False, "procalcitonin", 2.5),
        ("26881-3", 0.2, "ng/mL", True, "il6", 200.0),
        ("98115-9", 800.0, "ng/L", True, "cxcl9", 800.0),
    ],
)
def test_alternate_codes_and_units_are_converted_to_the_canonical_unit(
    panel: Panel,
    code: str,
    value: float,
    unit: str,
    ucum: bool,
    analyte: str,
    expected: float,
) -> None:
    measurement = only_measurement(extract([observation(code, value, unit, ucum=ucum)], panel))
    assert measurement.analyte == analyte
    assert measurement.unit == panel.analytes[analyte].unit
    assert measurement.value == pytest.approx(expected)
    assert measurement.source_value == value
    assert measurement.code == code


def test_converted_measurement_records_the_source_unit(panel: Panel) -> None:
    measurement = only_measurement(extract([observation("1988-5", 4.08, "mg/dL")], panel))
    assert measurement.source_unit == "mg/dL"
    assert measurement.converted


def test_ucum_code_is_preferred_over_unit_text(panel: Panel) -> None:
    resource = observation("1988-5", 2.0, None)
    resource["valueQuantity"] |= {"unit": "mg/L", "system": UCUM, "code": "mg/dL"}
    assert only_measurement(extract([resource], panel)).value == pytest.approx(20.0)


def test_missing_unit_falls_back_to_the_unit_of_the_code(panel: Panel) -> None:
    lactate_mass = observation("14118-4", 27.024, None)
    measurement = only_measurement(extract([lactate_mass], panel))
    assert measurement.value == pytest.approx(3.0)
    assert measurement.source_unit == "mg/dL"


def test_unrecognised_unit_text_is_excluded_naming_the_unit(panel: Panel) -> None:
    exclusion = only_exclusion(extract([observation(unit="pg/dL-ish", ucum=False)], panel))
    assert exclusion.reason is ExclusionReason.UNIT_NOT_CONVERTIBLE
    assert "pg/dL-ish" in exclusion.detail


@pytest.mark.parametrize(
    ("code", "unit"),
    [
        ("26881-3", "10*3/uL"),  # IL-6 reported as a count
        ("1988-5", "mmol/L"),  # CRP molar without a molar mass
        ("76039-7", "U/mL"),  # sCD25 in assay units
        ("777-3", "%"),
    ],
)
def test_units_of_another_kind_are_excluded_naming_the_unit(
    panel: Panel, code: str, unit: str
) -> None:
    exclusion = only_exclusion(extract([observation(code, 1.0, unit)], panel))
    assert exclusion.reason is ExclusionReason.UNIT_NOT_CONVERTIBLE
    assert unit in exclusion.detail


def test_ifng_in_arbitrary_units_is_recognised_and_excluded(panel: Panel) -> None:
    exclusion = only_exclusion(extract([observation("12729-0", 3.0, "[IU]/mL")], panel))
    assert exclusion.reason is ExclusionReason.UNIT_NOT_CONVERTIBLE
    assert exclusion.analyte == "ifng"
    assert "arbitrary units" in exclusion.detail


def test_ifng_arbitrary_code_is_excluded_even_when_sent_with_a_mass_unit(panel: Panel) -> None:
    exclusion = only_exclusion(extract([observation("12729-0", 3.0, "pg/mL")], panel))
    assert exclusion.reason is ExclusionReason.UNIT_NOT_CONVERTIBLE


# --- time --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("effective", "expected_utc"),
    [
        ("2026-03-01T08:00:00Z", datetime(2026, 3, 1, 8, 0, tzinfo=UTC)),
        ("2026-03-01T13:30:00+05:30", datetime(2026, 3, 1, 8, 0, tzinfo=UTC)),
        ("2026-03-01T04:00:00-04:00", datetime(2026, 3, 1, 8, 0, tzinfo=UTC)),
        ("2026-03-01T08:00:00.123+00:00", datetime(2026, 3, 1, 8, 0, 0, 123000, tzinfo=UTC)),
        ("2026-02-28T23:15:00-10:00", datetime(2026, 3, 1, 9, 15, tzinfo=UTC)),
    ],
)
def test_effective_times_with_any_offset_become_aware_utc(
    panel: Panel, effective: str, expected_utc: datetime
) -> None:
    measurement = only_measurement(extract([observation(effective=effective)], panel))
    assert measurement.time == expected_utc
    assert measurement.time.utcoffset() is not None
    assert measurement.time.tzinfo == UTC


def test_mixed_timezones_order_by_the_instant_not_the_clock_text(panel: Panel) -> None:
    early = observation(effective="2026-03-01T10:00:00+05:30", id="early")  # 04:30 UTC
    late = observation(effective="2026-03-01T06:00:00Z", id="late")
    extraction = extract([late, early], panel)
    ordered = sorted(extraction.measurements, key=lambda m: m.time)
    assert [m.observation_id for m in ordered] == ["early", "late"]


def test_effective_instant_is_used(panel: Panel) -> None:
    resource = observation(effective=None, effectiveInstant="2026-03-01T09:00:00.000Z")
    assert only_measurement(extract([resource], panel)).time == datetime(2026, 3, 1, 9, tzinfo=UTC)


def test_effective_period_uses_its_start(panel: Panel) -> None:
    period = {"start": "2026-03-01T07:00:00Z", "end": "2026-03-01T09:00:00Z"}
    resource = observation(effective=None, effectivePeriod=period)
    assert only_measurement(extract([resource], panel)).time == datetime(2026, 3, 1, 7, tzinfo=UTC)


def test_effective_period_without_start_uses_its_end(panel: Panel) -> None:
    resource = observation(effective=None, effectivePeriod={"end": "2026-03-01T09:00:00+01:00"})
    assert only_measurement(extract([resource], panel)).time == datetime(2026, 3, 1, 8, tzinfo=UTC)


@pytest.mark.parametrize("effective", ["2026-03-01T08:00:00", "2026-03-01", "2026-03", "2026"])
def test_time_without_timezone_or_time_of_day_is_imprecise(panel: Panel, effective: str) -> None:
    exclusion = only_exclusion(extract([observation(effective=effective)], panel))
    assert exclusion.reason is ExclusionReason.IMPRECISE_TIME
    assert effective in exclusion.detail


def test_missing_effective_time_is_excluded(panel: Panel) -> None:
    resource = observation(effective=None, issued="2026-03-01T08:00:00Z")
    assert only_exclusion(extract([resource], panel)).reason is ExclusionReason.NO_EFFECTIVE_TIME


@pytest.mark.parametrize(
    "effective", ["2026-02-30T08:00:00Z", "yesterday", "2026-03-01 08:00:00Z", 20260301]
)
def test_unparseable_effective_time_is_malformed(panel: Panel, effective: Any) -> None:
    exclusion = only_exclusion(extract([observation(effective=effective)], panel))
    assert exclusion.reason is ExclusionReason.MALFORMED


# --- subject -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject",
    [
        "Patient/p1",
        "https://ehr.example.org/fhir/Patient/p1",
        "Patient/p1/_history/3",
        None,
    ],
)
def test_results_of_the_requested_patient_are_used(panel: Panel, subject: str | None) -> None:
    only_measurement(extract([observation(subject=subject)], panel, patient_id="p1"))


@pytest.mark.parametrize(
    "subject",
    [
        "Patient/p2",
        "https://ehr.example.org/fhir/Patient/p2",
        "Patient/p10",
        "Group/p1",
    ],
)
def test_results_of_another_subject_are_excluded(panel: Panel, subject: str) -> None:
    exclusion = only_exclusion(extract([observation(subject=subject)], panel, patient_id="p1"))
    assert exclusion.reason is ExclusionReason.OTHER_PATIENT
    assert "p2" not in exclusion.detail


@pytest.mark.parametrize("subject", ["Patient/p1", {"reference": ["Patient/p1"]}])
def test_subject_that_is_not_a_reference_is_malformed(panel: Panel, subject: Any) -> None:
    resource = observation() | {"subject": subject}
    exclusion = only_exclusion(extract([resource], panel, patient_id="p1"))
    assert exclusion.reason is ExclusionReason.MALFORMED


def test_subject_with_only_an_identifier_is_accepted(panel: Panel) -> None:
    resource = observation() | {"subject": {"identifier": {"value": "MRN1"}}}
    only_measurement(extract([resource], panel, patient_id="p1"))


def test_without_a_patient_id_the_subject_is_not_checked(panel: Panel) -> None:
    only_measurement(extract([observation(subject="Patient/p2")], panel))


def test_other_patient_wins_over_every_other_reason(panel: Panel) -> None:
    resource = observation(subject="Patient/p2", status="entered-in-error", effective="2026")
    exclusion = only_exclusion(extract([resource], panel, patient_id="p1"))
    assert exclusion.reason is ExclusionReason.OTHER_PATIENT


# --- components --------------------------------------------------------------------------------


def cytokine_panel(**extra: Any) -> dict[str, Any]:
    """A cytokine panel Observation whose components are panel analytes."""

    def component(code: str, value: float, unit: str) -> dict[str, Any]:
        return {
            "code": {"coding": [{"system": LOINC_SYSTEM, "code": code}]},
            "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
        }

    resource = observation("82335-1", value=None, id="cyto-1", **extra)
    resource["component"] = [
        component("26881-3", 310.0, "pg/mL"),
        component("27415-9", 0.09, "ng/mL"),
        component("26848-2", 42.0, "ng/L"),
        {"code": {"coding": [{"system": LOINC_SYSTEM, "code": "13629-1"}]}},  # IL-1b: not ours
        {"code": {"coding": [{"system": LOINC_SYSTEM, "code": "76039-7"}]}, "valueString": "QNS"},
    ]
    return resource


def test_panel_components_become_one_result_each(panel: Panel) -> None:
    extraction = extract([cytokine_panel()], panel, patient_id="p1")
    values = {m.analyte: m.value for m in extraction.measurements}
    assert values == pytest.approx({"il6": 310.0, "ifng": 90.0, "il10": 42.0})
    assert {m.observation_id for m in extraction.measurements} == {"cyto-1"}
    assert all(m.time == datetime(2026, 3, 1, 8, tzinfo=UTC) for m in extraction.measurements)
    [exclusion] = extraction.exclusions
    assert (exclusion.analyte, exclusion.reason) == ("sil2r", ExclusionReason.NO_NUMERIC_VALUE)


def test_components_take_the_parent_status(panel: Panel) -> None:
    extraction = extract([cytokine_panel(status="preliminary")], panel)
    assert {m.status for m in extraction.measurements} == {"preliminary"}


def test_components_of_an_entered_in_error_panel_are_all_excluded(panel: Panel) -> None:
    extraction = extract([cytokine_panel(status="entered-in-error")], panel)
    assert extraction.measurements == ()
    assert {e.reason for e in extraction.exclusions} == {ExclusionReason.ENTERED_IN_ERROR}
    assert len(extraction.exclusions) == 4


def test_components_of_another_patients_panel_are_excluded(panel: Panel) -> None:
    extraction = extract([cytokine_panel(subject="Patient/p9")], panel, patient_id="p1")
    assert extraction.measurements == ()
    assert {e.reason for e in extraction.exclusions} == {ExclusionReason.OTHER_PATIENT}


# --- malformed shapes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mutation",
    [
        {"valueQuantity": "42 pg/mL"},
        {"valueQuantity": {"value": 42.0, "unit": 7}},
        {"subject": "Patient/p1"},
        {"effectivePeriod": "2026-03-01"},
        {"effectiveDateTime": {"start": "x"}},
        {"status": ["final"]},
        {"component": "none"},
        {"dataAbsentReason": "unknown"},
    ],
)
def test_malformed_shapes_never_raise(panel: Panel, mutation: dict[str, Any]) -> None:
    resource = observation() | mutation
    extraction = extract([resource], panel, patient_id="p1")
    assert len(extraction.measurements) + len(extraction.exclusions) == 1


def test_codings_of_the_wrong_shape_are_not_matched(panel: Panel) -> None:
    resources = [
        observation() | {"code": "26881-3"},
        observation() | {"code": {"coding": "26881-3"}},
        observation() | {"code": {"coding": [None, 5, {"system": 1, "code": "26881-3"}]}},
    ]
    assert extract(resources, panel) == Extraction()


# --- realistic resources and local codes -------------------------------------------------------


def epic_like_ferritin() -> dict[str, Any]:
    """A ferritin Observation shaped like an EHR export, with many fields we do not read."""
    return {
        "resourceType": "Observation",
        "id": "eXyZ-ferritin-3",
        "meta": {"versionId": "2", "lastUpdated": "2026-03-01T09:12:44Z"},
        "extension": [
            {
                "url": "http://open.epic.com/FHIR/StructureDefinition/extension/lab-component-id",
                "valueIdentifier": {"system": "urn:oid:1.2.840.114350.1.13", "value": "1558"},
            }
        ],
        "identifier": [{"use": "official", "system": "urn:oid:1.2.3", "value": "L-88231"}],
        "basedOn": [{"reference": "ServiceRequest/sr-1"}],
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ],
                "text": "Laboratory",
            }
        ],
        "code": {
            "coding": [
                {"system": "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.72", "code": "1558"},
                {"system": LOINC_SYSTEM, "code": "2276-4", "display": "Ferritin [Mass/volume]"},
            ],
            "text": "FERRITIN",
        },
        "subject": {"reference": "Patient/p1", "display": "Test, Child"},
        "encounter": {"reference": "Encounter/e1"},
        "effectiveDateTime": "2026-03-01T02:40:00-05:00",
        "issued": "2026-03-01T09:12:44Z",
        "performer": [{"reference": "Organization/lab", "display": "Core Lab"}],
        "valueQuantity": {
            "value": 2450,
            "unit": "ng/mL",
            "system": UCUM,
            "code": "ng/mL",
        },
        "interpretation": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                        "code": "H",
                    }
                ],
                "text": "High",
            }
        ],
        "referenceRange": [
            {"low": {"value": 7, "unit": "ng/mL"}, "high": {"value": 140, "unit": "ng/mL"}}
        ],
        "note": [{"text": "Specimen slightly hemolyzed"}],
        "specimen": {"reference": "Specimen/s1"},
    }


def test_ehr_like_observation_with_extra_fields_parses(panel: Panel) -> None:
    measurement = only_measurement(extract([epic_like_ferritin()], panel, patient_id="p1"))
    assert (measurement.analyte, measurement.value, measurement.unit) == (
        "ferritin",
        2450.0,
        "ng/mL",
    )
    assert measurement.time == datetime(2026, 3, 1, 7, 40, tzinfo=UTC)
    assert measurement.observation_id == "eXyZ-ferritin-3"


def test_ehr_like_observation_validates_as_r4b(panel: Panel) -> None:
    Observation.model_validate(epic_like_ferritin())


def local_panel(unit: str | None) -> Panel:
    entry = {"analyte": "il6", "system": "urn:oid:1.2.840.114350", "code": "IL6-SEND"}
    settings = load_settings(local_codes=[entry | ({"unit": unit} if unit else {})])
    return load_panel(settings.local_codes)


def local_il6(unit_text: str | None, value: float = 0.31) -> dict[str, Any]:
    resource = observation(value=None, system="urn:oid:1.2.840.114350", code="IL6-SEND")
    resource["valueQuantity"] = {"value": value} | ({"unit": unit_text} if unit_text else {})
    return resource


def test_local_code_from_settings_is_recognised_with_its_unit(panel: Panel) -> None:
    measurement = only_measurement(extract([local_il6("PG/ML (SEND OUT)")], local_panel("ng/mL")))
    assert measurement.analyte == "il6"
    assert measurement.value == pytest.approx(310.0)
    assert (measurement.system, measurement.code) == ("urn:oid:1.2.840.114350", "IL6-SEND")
    assert extract([local_il6("ng/mL")], panel) == Extraction()


def test_local_code_with_known_unit_text_uses_the_text_over_the_settings_unit() -> None:
    measurement = only_measurement(extract([local_il6("pg/mL", 12.0)], local_panel("ng/mL")))
    assert measurement.value == pytest.approx(12.0)


def test_local_code_without_a_unit_and_unknown_text_is_not_convertible() -> None:
    exclusion = only_exclusion(extract([local_il6("PG/ML (SEND OUT)")], local_panel(None)))
    assert exclusion.reason is ExclusionReason.UNIT_NOT_CONVERTIBLE
    assert "PG/ML (SEND OUT)" in exclusion.detail


def test_input_order_is_preserved_and_iterables_are_accepted(panel: Panel) -> None:
    resources = (
        observation(code, 1.0, unit) for code, unit in [("777-3", "10*3/uL"), ("731-0", "10*3/uL")]
    )
    extraction = extract(resources, panel)
    assert [m.analyte for m in extraction.measurements] == ["platelets", "lymphocytes"]


def clinosim_like_crp() -> dict[str, Any]:
    """A CRP lab in the shape of a bulk NDJSON simulator export."""
    return {
        "resourceType": "Observation",
        "id": "7f1c9a2e-crp",
        "meta": {
            "profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab"]
        },
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": "urn:uuid:7f1c9a2e"}],
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                        "display": "Laboratory",
                    }
                ]
            }
        ],
        "code": {
            "coding": [{"system": LOINC_SYSTEM, "code": "1988-5", "display": "CRP"}],
            "text": "C reactive protein",
        },
        "subject": {"reference": "urn:uuid:patient-0042"},
        "encounter": {"reference": "urn:uuid:encounter-0042-3"},
        "effectiveDateTime": "2026-03-01T06:12:00+00:00",
        "issued": "2026-03-01T07:02:00+00:00",
        "valueQuantity": {"value": 8.7, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
        "interpretation": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                        "code": "HH",
                    }
                ]
            }
        ],
        "referenceRange": [
            {
                "low": {"value": 0, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
                "high": {"value": 1.0, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
                "text": "0-1.0 mg/dL",
            }
        ],
    }


def test_simulator_lab_with_identifiers_and_ranges_parses_and_converts(panel: Panel) -> None:
    Observation.model_validate(clinosim_like_crp())
    measurement = only_measurement(extract([clinosim_like_crp()], panel, patient_id="p1"))
    assert (measurement.analyte, measurement.unit) == ("crp", "mg/L")
    assert measurement.value == pytest.approx(87.0)
    assert measurement.time == datetime(2026, 3, 1, 6, 12, tzinfo=UTC)


def test_ehr_like_send_out_with_comparator_and_encounter_identifier(panel: Panel) -> None:
    resource = epic_like_ferritin()
    resource["code"]["coding"][1] = {"system": LOINC_SYSTEM, "code": "26881-3"}
    resource["valueQuantity"] = {
        "value": 5,
        "comparator": "<",
        "unit": "pg/mL",
        "system": UCUM,
        "code": "pg/mL",
    }
    resource["encounter"] = {"identifier": {"system": "urn:oid:1.2.3", "value": "CSN-991"}}
    measurement = only_measurement(extract([resource], panel, patient_id="p1"))
    assert (measurement.analyte, measurement.comparator, measurement.value) == ("il6", "<", 5.0)


# --- unit assumed from the code ------------------------------------------------------------------


def test_result_sent_without_a_unit_is_marked_as_unit_assumed_from_the_code(panel: Panel) -> None:
    measurement = only_measurement(extract([observation("14118-4", 27.024, None)], panel))
    assert measurement.unit_assumed
    assert measurement.source_unit == "mg/dL"
    assert measurement.value == pytest.approx(3.0)


def test_canonical_unit_assumed_from_the_code_is_still_marked(panel: Panel) -> None:
    measurement = only_measurement(extract([observation("26881-3", 42.0, None)], panel))
    assert measurement.unit_assumed
    assert not measurement.converted


@pytest.mark.parametrize("blank", ["", "   "])
def test_blank_unit_text_counts_as_no_unit_sent(panel: Panel, blank: str) -> None:
    resource = observation("26881-3", 42.0, None)
    resource["valueQuantity"] |= {"unit": blank, "code": blank}
    assert only_measurement(extract([resource], panel)).unit_assumed


@pytest.mark.parametrize(
    "quantity",
    [
        {"unit": "pg/mL", "system": UCUM, "code": "pg/mL"},  # UCUM code and text
        {"system": UCUM, "code": "pg/mL"},  # UCUM code only
        {"unit": "pg/mL"},  # text only
        {"unit": "PG/ML"},  # text only, other case
        {"code": "pg/mL"},  # code without a system
        {"unit": "ng/L", "system": UCUM, "code": "ng/L"},  # another unit, converted
    ],
)
def test_result_sent_with_a_unit_in_any_form_is_not_marked_as_assumed(
    panel: Panel, quantity: dict[str, Any]
) -> None:
    resource = observation("26881-3", 42.0, None)
    resource["valueQuantity"] |= quantity
    measurement = only_measurement(extract([resource], panel))
    assert not measurement.unit_assumed
    assert measurement.value == pytest.approx(42.0)


def test_component_without_a_unit_is_marked_and_its_siblings_are_not(panel: Panel) -> None:
    resource = cytokine_panel()
    resource["component"][0]["valueQuantity"] = {"value": 310.0}
    extraction = extract([resource], panel, patient_id="p1")
    assumed = {m.analyte: m.unit_assumed for m in extraction.measurements}
    assert assumed == {"il6": True, "ifng": False, "il10": False}


def test_local_code_sent_without_a_unit_is_marked_as_assumed_from_the_settings_unit() -> None:
    measurement = only_measurement(extract([local_il6(None)], local_panel("ng/mL")))
    assert measurement.unit_assumed
    assert measurement.source_unit == "ng/mL"
    assert measurement.value == pytest.approx(310.0)


@pytest.mark.parametrize("unit_text", ["PG/ML (SEND OUT)", "ng/mL"])
def test_local_code_sent_with_unit_text_is_not_marked_as_assumed(unit_text: str) -> None:
    measurement = only_measurement(extract([local_il6(unit_text)], local_panel("ng/mL")))
    assert not measurement.unit_assumed
    assert measurement.value == pytest.approx(310.0)


def test_unit_assumed_defaults_to_false_for_measurements_built_elsewhere() -> None:
    measurement = Measurement(
        analyte="il6",
        value=1.0,
        unit="pg/mL",
        time=datetime(2026, 3, 1, tzinfo=UTC),
        system=LOINC_SYSTEM,
        code="26881-3",
        status="final",
    )
    assert measurement.unit_assumed is False


# --- the laboratory's reference range ------------------------------------------------------------


def with_range(resource: dict[str, Any], *ranges: dict[str, Any]) -> dict[str, Any]:
    resource["referenceRange"] = list(ranges)
    return resource


def ucum_bound(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def test_reference_range_high_becomes_the_measurements_upper_limit(panel: Panel) -> None:
    resource = with_range(observation(), {"high": ucum_bound(7, "pg/mL"), "text": "<=7 pg/mL"})
    measurement = only_measurement(extract([resource], panel))
    assert measurement.reference_high == 7.0
    assert measurement.reference_text == "<=7 pg/mL"


def test_reference_high_is_converted_to_the_canonical_unit(panel: Panel) -> None:
    resource = with_range(observation("1988-5", 8.7, "mg/dL"), {"high": ucum_bound(1.0, "mg/dL")})
    measurement = only_measurement(extract([resource], panel))
    assert (measurement.unit, measurement.reference_high) == ("mg/L", pytest.approx(10.0))


def test_reference_high_without_a_unit_takes_the_values_unit(panel: Panel) -> None:
    resource = with_range(observation("1988-5", 8.7, "mg/dL"), {"high": {"value": 0.5}})
    measurement = only_measurement(extract([resource], panel))
    assert measurement.reference_high == pytest.approx(5.0)


def test_component_reference_range_belongs_to_its_component(panel: Panel) -> None:
    component = {
        "code": {"coding": [{"system": LOINC_SYSTEM, "code": "27415-9"}]},
        "valueQuantity": ucum_bound(12, "pg/mL"),
        "referenceRange": [{"high": ucum_bound(10.4, "pg/mL")}],
    }
    resource = observation("82335-1", None, None, component=[component])
    resource["referenceRange"] = [{"high": ucum_bound(99, "pg/mL")}]
    measurement = only_measurement(extract([resource], panel))
    assert (measurement.analyte, measurement.reference_high) == ("ifng", 10.4)


@pytest.mark.parametrize(
    "ranges",
    [
        (),
        ({"low": ucum_bound(1, "pg/mL")},),  # no high
        ({"high": ucum_bound(7, "U/mL")},),  # not convertible
        ({"high": {"value": "7"}},),  # not a number
        ({"high": ucum_bound(0, "pg/mL")},),  # not positive
        (  # only a therapeutic range
            {
                "high": ucum_bound(7, "pg/mL"),
                "type": {"coding": [{"system": REFERENCE_MEANING, "code": "therapeutic"}]},
            },
        ),
        (  # two normal ranges (e.g. by age) with different limits: this layer cannot choose
            {"high": ucum_bound(7, "pg/mL"), "age": {"high": {"value": 12, "unit": "a"}}},
            {"high": ucum_bound(5, "pg/mL"), "age": {"low": {"value": 12, "unit": "a"}}},
        ),
        ("not a range",),
    ],
)
def test_unusable_or_ambiguous_reference_ranges_give_no_upper_limit(
    panel: Panel, ranges: tuple[Any, ...]
) -> None:
    measurement = only_measurement(extract([with_range(observation(), *ranges)], panel))
    assert measurement.reference_high is None and measurement.reference_text is None


def test_normal_typed_range_counts_and_equal_duplicates_agree(panel: Panel) -> None:
    normal = {"coding": [{"system": REFERENCE_MEANING, "code": "normal"}]}
    resource = with_range(
        observation(),
        {"high": ucum_bound(7, "pg/mL"), "type": normal},
        {"high": ucum_bound(7, "pg/mL"), "appliesTo": [{"text": "female"}]},
    )
    assert only_measurement(extract([resource], panel)).reference_high == 7.0


def test_malformed_reference_range_never_excludes_the_result(panel: Panel) -> None:
    resource = observation()
    resource["referenceRange"] = {"high": 7}
    measurement = only_measurement(extract([resource], panel))
    assert measurement.value == 42.0 and measurement.reference_high is None
