"""Encounter, Location, Condition and ServiceRequest dicts -> facts, as an EHR sends them."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.location import Location
from fhir.resources.R4B.servicerequest import ServiceRequest

from fhir_mappings.encounters import (
    ConditionFacts,
    EncounterLocationFacts,
    LocationFacts,
    condition_facts,
    encounter_facts,
    location_facts,
    order_facts,
    reference_id,
)
from fhir_mappings.panel import Panel, load_panel

from .builders import (
    LOINC,
    PATIENT,
    SERVICE_TYPE,
    SITE_LOCATIONS,
    SNOMED,
    V3_ROLE_CODE,
    ago,
    condition,
    encounter,
    picu_bed,
    service_request,
    stay,
)


@pytest.fixture(scope="module")
def panel() -> Panel:
    """The packaged marker panel."""
    return load_panel()


def test_the_builders_make_valid_r4_resources() -> None:
    for resource in picu_bed():
        Location.model_validate(resource)
    Encounter.model_validate(
        encounter("enc-1", stays=[stay("picu-r4-b2", start=20)], service_type=(SERVICE_TYPE, "1"))
    )
    Condition.model_validate(condition("sep-1", recorded=19))
    ServiceRequest.model_validate(service_request("sr-1"))


def test_locations_keep_identifiers_types_status_and_parent() -> None:
    mapped = location_facts(picu_bed())

    ward, room, bed = mapped.facts
    assert ward == LocationFacts(
        id="picu",
        identifiers=((SITE_LOCATIONS, "6N"),),
        types=((V3_ROLE_CODE, "PEDICU"),),
        status="active",
        part_of=None,
    )
    assert (room.part_of, bed.part_of) == ("picu", "picu-r4")
    assert bed.types == () and mapped.skipped == 0


def test_an_encounter_keeps_class_service_period_and_location_entries_in_utc() -> None:
    resource = encounter(
        "enc-1",
        start=30,
        stays=[
            stay("ed-bay-3", status="completed", start=30, end=26),
            stay("picu-r4-b2", start=26, display="6N room 4 bed 2"),
        ],
        service_type=(SERVICE_TYPE, "604"),
    )

    (facts,) = encounter_facts([resource], patient_id=PATIENT).facts

    assert (facts.id, facts.status, facts.class_code) == ("enc-1", "in-progress", "IMP")
    assert facts.service_types == ((SERVICE_TYPE, "604"),)
    assert facts.start == ago(30) and facts.end is None
    assert facts.start.utcoffset() is not None and facts.start.tzinfo is not None
    assert facts.locations == (
        EncounterLocationFacts("ed-bay-3", "completed", ago(30), ago(26)),
        EncounterLocationFacts("picu-r4-b2", "active", ago(26), None),
    )


def test_an_encounter_keeps_its_admit_source_codes() -> None:
    born = {"system": "http://terminology.hl7.org/CodeSystem/admit-source", "code": "born"}
    resource = encounter("enc-born", start=5) | {
        "hospitalization": {"admitSource": {"coding": [born]}}
    }
    plain = encounter("enc-plain", start=5)

    facts = encounter_facts([resource, plain], patient_id=PATIENT).facts

    assert [f.admit_source for f in facts] == [(tuple(born.values()),), ()]


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ({"reference": "Location/picu-r4-b2"}, "picu-r4-b2"),
        ({"reference": "https://ehr.example.org/fhir/R4/Location/eX9.fA-1"}, "eX9.fA-1"),
        ({"reference": "http://127.0.0.1:8090/fhir/Location/b2/_history/3"}, "b2"),
        ({"reference": "Location/b2", "display": "PICU bed 2"}, "b2"),
        ({"reference": "#bed"}, None),  # contained
        ({"reference": "urn:uuid:7d6f4c1e-2b7a-4d7a-9a39-5f1f7b0f4a11"}, None),
        ({"identifier": {"system": SITE_LOCATIONS, "value": "6N-4-2"}, "display": "6N"}, None),
        ({"display": "CHOP PICU 6 NORTH"}, None),  # Epic-like: a display and nothing else
        ({"reference": "Organization/picu"}, None),
        ({"reference": "Location/"}, None),
        ({"reference": 42}, None),
        ("Location/b2", None),
    ],
)
def test_only_literal_location_references_resolve(reference: Any, expected: str | None) -> None:
    assert reference_id(reference, "Location") == expected


def test_unresolvable_location_entries_are_left_out_but_the_encounter_is_kept() -> None:
    resource = encounter(
        "enc-1",
        stays=[
            {"location": {"display": "PICU"}, "status": "active"},
            {"location": {"reference": "#bed"}, "status": "active"},
            "not an entry",
            stay("picu-r4-b2", start=5),
        ],
    )

    mapped = encounter_facts([resource])

    (facts,) = mapped.facts
    assert [entry.location_id for entry in facts.locations] == ["picu-r4-b2"]
    assert mapped.skipped == 0


def test_an_r5_shaped_class_and_service_type_are_read() -> None:
    resource = encounter("enc-1")
    resource["class"] = [{"coding": [{"system": "x", "code": "IMP"}]}]
    resource["serviceType"] = [{"concept": {"coding": [{"system": SERVICE_TYPE, "code": "604"}]}}]

    (facts,) = encounter_facts([resource]).facts

    assert facts.class_code == "IMP" and facts.service_types == ((SERVICE_TYPE, "604"),)


def test_resources_of_another_patient_are_skipped_and_counted() -> None:
    mine, theirs = encounter("enc-1"), encounter("enc-2", patient="pat-9")
    conditions = [condition("c-1"), condition("c-2", patient="pat-9")]

    encounters = encounter_facts([mine, theirs], patient_id=f"Patient/{PATIENT}")
    mapped_conditions = condition_facts(conditions, patient_id=PATIENT)

    assert [e.id for e in encounters.facts] == ["enc-1"] and encounters.skipped == 1
    assert [c.id for c in mapped_conditions.facts] == ["c-1"] and mapped_conditions.skipped == 1


def test_malformed_entries_are_skipped_and_counted_other_types_ignored() -> None:
    no_id = encounter("x")
    del no_id["id"]
    no_status = encounter("enc-3")
    del no_status["status"]
    entries = [
        None,
        "Encounter/enc-1",
        {"id": "no-type"},
        no_id,
        no_status,
        {"resourceType": "Patient", "id": PATIENT},
        *picu_bed(),
        encounter("enc-1"),
    ]

    mapped = encounter_facts(entries)

    assert [e.id for e in mapped.facts] == ["enc-1"]
    assert mapped.skipped == 5  # None, the string, no resourceType, no id, no status


@pytest.mark.parametrize("resources", [None, 7, "Encounter", b"{}", {"resourceType": "Bundle"}])
def test_a_value_that_is_not_a_list_never_raises(resources: Any) -> None:
    mapped = encounter_facts(resources)
    assert mapped.facts == ()


def test_a_single_resource_counts_as_a_list_of_one() -> None:
    assert [e.id for e in encounter_facts(encounter("enc-1")).facts] == ["enc-1"]


def test_conditions_keep_codes_onset_recorded_statuses_and_encounter() -> None:
    resources = [
        condition("c-1", onset=20, recorded=19),
        condition("c-2", onset=40, onset_period=True, verification="refuted", encounter_id=None),
        condition("c-3", onset=None, recorded=5, clinical="resolved"),
    ]

    c1, c2, c3 = condition_facts(resources).facts

    assert c1 == ConditionFacts(
        id="c-1",
        codes=((SNOMED, "91302008"),),
        onset=ago(20),
        recorded=ago(19),
        clinical_status="active",
        verification_status="confirmed",
        encounter_id="enc-1",
    )
    assert (c2.onset, c2.verification_status, c2.encounter_id) == (ago(40), "refuted", None)
    assert (c3.onset, c3.recorded, c3.clinical_status) == (None, ago(5), "resolved")


@pytest.mark.parametrize(
    "onset", ["2026-11-24", "2026-11-24T08:00:00", "yesterday", {"start": "x"}, 20261124]
)
def test_an_imprecise_or_malformed_onset_is_no_onset(onset: Any) -> None:
    resource = condition("c-1", onset=None, recorded=5)
    resource["onsetDateTime"] = onset

    (facts,) = condition_facts([resource]).facts

    assert facts.onset is None and facts.recorded == ago(5)


def test_orders_match_the_panel_and_keep_status_intent_and_time(panel: Panel) -> None:
    resources = [
        service_request("sr-cxcl9"),
        service_request("sr-ferritin", "20567-4", status="completed", intent="original-order"),
        service_request("sr-cbc", "58410-2"),  # CBC panel: not a panel analyte code
        service_request("sr-local", "26881-3", system="urn:oid:1.2.3"),  # right code, wrong system
        service_request("sr-dnp", "26881-3", doNotPerform=True),
    ]

    mapped = order_facts(resources, panel, patient_id=PATIENT)

    cxcl9, ferritin, il6 = mapped.facts
    assert (cxcl9.id, cxcl9.analyte, cxcl9.status, cxcl9.intent) == (
        "sr-cxcl9",
        "cxcl9",
        "active",
        "order",
    )
    assert (cxcl9.system, cxcl9.code, cxcl9.authored) == (LOINC, "98115-9", ago(3))
    assert (ferritin.analyte, ferritin.status, ferritin.code) == (
        "ferritin",
        "completed",
        "20567-4",
    )
    assert (il6.analyte, il6.do_not_perform, cxcl9.do_not_perform) == ("il6", True, False)
    assert mapped.skipped == 0


def test_a_panel_order_without_status_is_skipped_a_foreign_one_ignored(panel: Panel) -> None:
    no_status = service_request("sr-1")
    del no_status["status"]
    foreign_no_status = service_request("sr-2", "58410-2")
    del foreign_no_status["status"]

    mapped = order_facts([no_status, foreign_no_status], panel)

    assert mapped.facts == () and mapped.skipped == 1
