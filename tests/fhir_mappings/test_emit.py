"""The draft ServiceRequest proposed for a missing marker."""

from __future__ import annotations

import pytest
from fhir.resources.R4B.servicerequest import ServiceRequest

from fhir_mappings.emit import check_proposals, service_request_for
from fhir_mappings.panel import LOINC_SYSTEM, Panel


@pytest.mark.parametrize("key", ["il6", "cxcl9", "ferritin", "crp", "lactate", "sil2r"])
def test_service_request_validates_as_r4b(panel: Panel, key: str) -> None:
    resource = service_request_for(
        panel.analytes[key], patient_id="p1", encounter_id="e1", requester="Practitioner/dr-7"
    )
    ServiceRequest.model_validate(resource)


def test_service_request_is_a_draft_proposal_for_the_primary_loinc(panel: Panel) -> None:
    resource = service_request_for(panel.analytes["crp"], patient_id="p1")
    assert (resource["status"], resource["intent"]) == ("draft", "proposal")
    assert resource["code"]["coding"] == [
        {
            "system": LOINC_SYSTEM,
            "code": "1988-5",
            "display": "C reactive protein [Mass/volume] in Serum or Plasma",
        }
    ]
    assert resource["subject"] == {"reference": "Patient/p1"}
    assert "encounter" not in resource and "requester" not in resource


def test_service_request_is_categorised_as_a_laboratory_procedure(panel: Panel) -> None:
    resource = service_request_for(panel.analytes["il6"], patient_id="p1")
    [category] = resource["category"]
    assert {"system": "http://snomed.info/sct", "code": "108252007"}.items() <= category["coding"][
        0
    ].items()


def test_service_request_note_says_decision_support_proposed_it(panel: Panel) -> None:
    resource = service_request_for(panel.analytes["il6"], patient_id="p1")
    assert "decision support" in resource["note"][0]["text"]


def test_encounter_and_requester_are_referenced_when_known(panel: Panel) -> None:
    resource = service_request_for(
        panel.analytes["ferritin"],
        patient_id="Patient/p1",
        encounter_id="Encounter/e-9",
        requester="PractitionerRole/r.2",
    )
    assert resource["subject"] == {"reference": "Patient/p1"}
    assert resource["encounter"] == {"reference": "Encounter/e-9"}
    assert resource["requester"] == {"reference": "PractitionerRole/r.2"}


def test_service_request_never_names_a_drug(panel: Panel) -> None:
    resource = service_request_for(panel.analytes["ifng"], patient_id="p1")
    text = str(resource).lower()
    assert all(word not in text for word in ("anakinra", "emapalumab", "tocilizumab", "dose"))


def test_each_request_gets_its_own_category_object(panel: Panel) -> None:
    first = service_request_for(panel.analytes["il6"], patient_id="p1")
    first["category"][0]["coding"].clear()
    second = service_request_for(panel.analytes["il6"], patient_id="p1")
    assert second["category"][0]["coding"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"patient_id": ""}, "Patient"),
        ({"patient_id": "p1/../p2"}, "Patient"),
        ({"patient_id": "Encounter/p1"}, "Patient"),
        ({"patient_id": "p1", "encounter_id": "e 1"}, "Encounter"),
        ({"patient_id": "p1", "requester": "dr-7"}, "requester"),
        ({"patient_id": "p1", "requester": "Practitioner/"}, "Practitioner"),
        ({"patient_id": "p1", "requester": "Medication/x"}, "requester"),
    ],
)
def test_invalid_ids_are_refused(panel: Panel, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        service_request_for(panel.analytes["il6"], **kwargs)


def test_an_analyte_whose_proposal_is_not_valid_r4b_is_refused(panel: Panel) -> None:
    il6 = panel.analytes["il6"]
    broken = il6.model_copy(update={"codes": (il6.primary.model_copy(update={"display": ""}),)})
    with pytest.raises(ValueError, match="not valid R4B"):
        check_proposals([broken])
    with pytest.raises(ValueError, match="not valid R4B"):
        service_request_for(broken, patient_id="p1")


def test_every_packaged_analyte_proposal_is_valid_r4b(panel: Panel) -> None:
    check_proposals(panel.analytes.values())
