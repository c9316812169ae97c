"""The Phoenix context of one hook: the course over the encounter, its onset, sepsis or not."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from fhir_mappings.encounters import encounter_facts
from fhir_mappings.infection import InfectionCodes, InfectionEvidence, infection_evidence
from model.phoenix_context import (
    InfectionSignalSettings,
    PhoenixSettings,
    assess_phoenix,
    infection_signal,
)

from .conftest import LOINC, NOW, RXNORM, SCT, concept, iso, observation

PATIENT = {"resourceType": "Patient", "id": "p1", "birthDate": "2020-01-15"}
SEPSIS = (SCT, "91302008")
CULTURE = (LOINC, "600-7")
CEFTRIAXONE = (RXNORM, "2193")
CODES = InfectionCodes((SEPSIS,), (CULTURE,), (CEFTRIAXONE,))


def encounter(hours_ago: float) -> Any:
    resource = {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "in-progress",
        "subject": {"reference": "Patient/p1"},
        "period": {"start": iso(NOW - timedelta(hours=hours_ago))},
    }
    (facts,) = encounter_facts([resource]).facts
    return facts


def imv(start: datetime) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": "vent",
        "status": "in-progress",
        "subject": {"reference": "Patient/p1"},
        "code": concept(SCT, "1258985005"),
        "performedPeriod": {"start": iso(start)},
    }


def hypoxaemia(at: datetime, ident: str) -> dict[str, Any]:
    """SpO2 88 % on FiO2 60 % (S/F 147): with IMV, respiratory 3."""
    return observation(
        "59408-5",
        88,
        "%",
        at=at,
        ident=ident,
        component=[{"code": concept(LOINC, "3150-0"), "valueQuantity": {"value": 60, "unit": "%"}}],
    )


def ventilated_since(hours_ago: float) -> list[dict[str, Any]]:
    """Ventilated and hypoxaemic from `hours_ago`, charted every 2 h until now."""
    start = NOW - timedelta(hours=hours_ago)
    charted = [
        hypoxaemia(start + timedelta(hours=h), f"spo2-{h}") for h in range(0, int(hours_ago) + 1, 2)
    ]
    return [imv(start), *charted]


def assess(resources: list[dict[str, Any]], start_hours_ago: float, **settings: Any):
    return assess_phoenix(
        patient=PATIENT,
        encounter=encounter(start_hours_ago),
        resources=resources,
        now=NOW,
        settings=PhoenixSettings(**settings),
        patient_id="p1",
    )


def test_the_onset_is_the_first_hour_scoring_2_in_the_encounter() -> None:
    context = assess(ventilated_since(20), 30)

    assert context.onset_time == NOW - timedelta(hours=20)
    assert context.onset is not None and context.onset.respiratory == 3
    assert context.course is not None and context.course.start == NOW - timedelta(hours=30)
    assert not context.truncated and context.onset_before is None
    assert context.infection is None
    assert context.criterion == "organ dysfunction (Phoenix score ≥ 2)"


def test_a_course_cut_at_course_days_that_scores_2_from_its_start_gives_no_anchor() -> None:
    context = assess(ventilated_since(40), 60, course_days=1)

    assert context.truncated
    assert context.course is not None and context.course.start == NOW - timedelta(days=1)
    assert context.onset is None
    assert context.onset_before == NOW - timedelta(days=1)


def test_a_cut_course_still_anchors_an_onset_that_rose_within_it() -> None:
    context = assess(ventilated_since(10), 60, course_days=1)

    assert context.truncated and context.onset_time == NOW - timedelta(hours=10)


def test_unread_pages_keep_the_course_but_not_its_onset_as_an_anchor() -> None:
    context = assess_phoenix(
        patient=PATIENT,
        encounter=encounter(30),
        resources=ventilated_since(20),
        now=NOW,
        settings=PhoenixSettings(),
        incomplete=True,
    )

    assert context.incomplete and context.onset is None
    assert context.course is not None and context.course.onset is not None


@pytest.mark.parametrize("start", [None, -2.0])
def test_no_course_without_an_encounter_start_in_the_past(start: float | None) -> None:
    facts = encounter(start) if start is not None else None
    context = assess_phoenix(
        patient=PATIENT,
        encounter=facts,
        resources=ventilated_since(20),
        now=NOW,
        settings=PhoenixSettings(),
    )
    assert context.course is None and context.not_computed == "no encounter start"


def test_excluded_inputs_are_counted_by_input() -> None:
    preliminary = observation("2524-7", 6.0, "mmol/L", at=NOW, status="preliminary")
    context = assess([*ventilated_since(20), preliminary], 30)
    assert context.excluded == {"lactate": 1}


# --- the infection signal ---------------------------------------------------------------------


def sign(kind: str, hours_ago: float, source: str = "X/1") -> InfectionEvidence:
    system, code = {"condition": SEPSIS, "culture": CULTURE, "antimicrobial": CEFTRIAXONE}[kind]
    return InfectionEvidence(kind, NOW - timedelta(hours=hours_ago), system, code, source)


SETTINGS = InfectionSignalSettings(
    condition_codes=["|".join(SEPSIS)],
    culture_codes=["|".join(CULTURE)],
    antimicrobial_codes=["|".join(CEFTRIAXONE)],
)
START = NOW - timedelta(hours=30)


@pytest.mark.parametrize(
    ("signs", "basis"),
    [
        ([], None),
        ([("condition", 5)], "condition"),
        ([("condition", 60)], None),  # before the course start less a day
        (
            [("culture", 10), ("antimicrobial", 9), ("antimicrobial", 3)],
            "cultures-with-antimicrobials",
        ),
        ([("culture", 10), ("antimicrobial", 9)], None),  # one dose is not enough
        ([("antimicrobial", 9), ("antimicrobial", 3)], None),  # no culture
        ([("culture", 10), ("antimicrobial", 9), ("antimicrobial", -1)], None),  # a future dose
    ],
)
def test_the_infection_signal_needs_a_condition_or_a_culture_with_two_doses(
    signs: list[tuple[str, float]], basis: str | None
) -> None:
    evidence = [sign(kind, hours) for kind, hours in signs]
    signal = infection_signal(evidence, SETTINGS, START, NOW)
    assert (signal.basis if signal else None) == basis


def test_the_signal_is_complete_at_the_later_of_the_culture_and_the_last_needed_dose() -> None:
    evidence = [sign("culture", 10), sign("antimicrobial", 12), sign("antimicrobial", 4)]
    signal = infection_signal(evidence, SETTINGS, START, NOW)
    assert signal is not None and signal.time == NOW - timedelta(hours=4)


def test_an_antimicrobial_order_counts_as_the_doses_for_a_site_reading_orders() -> None:
    order = sign("antimicrobial", 8, "MedicationRequest/abx")
    signal = infection_signal([sign("culture", 10), order], SETTINGS, START, NOW)
    assert signal is not None and signal.basis == "cultures-with-antimicrobials"


def test_cultures_without_antimicrobial_codes_are_refused_in_settings() -> None:
    with pytest.raises(ValidationError, match="culture_codes and antimicrobial_codes"):
        InfectionSignalSettings(culture_codes=["|".join(CULTURE)])


def resource(kind: str, **fields: Any) -> dict[str, Any]:
    return {
        "resourceType": kind,
        "id": f"{kind}-1",
        "subject": {"reference": "Patient/p1"},
    } | fields


@pytest.mark.parametrize(
    ("item", "kind"),
    [
        (resource("Condition", code=concept(*SEPSIS), onsetDateTime=iso(NOW)), "condition"),
        (
            resource(
                "Condition",
                code=concept(*SEPSIS),
                onsetDateTime=iso(NOW),
                verificationStatus=concept("x", "refuted"),
            ),
            None,
        ),
        (
            resource(
                "ServiceRequest",
                status="active",
                intent="order",
                code=concept(*CULTURE),
                authoredOn=iso(NOW),
            ),
            "culture",
        ),
        (
            resource(
                "ServiceRequest",
                status="active",
                intent="proposal",
                code=concept(*CULTURE),
                authoredOn=iso(NOW),
            ),
            None,
        ),
        (
            resource(
                "Observation", status="final", code=concept(*CULTURE), effectiveDateTime=iso(NOW)
            ),
            "culture",
        ),
        (
            resource(
                "Observation",
                status="entered-in-error",
                code=concept(*CULTURE),
                effectiveDateTime=iso(NOW),
            ),
            None,
        ),
        (
            resource(
                "MedicationAdministration",
                status="completed",
                medicationCodeableConcept=concept(*CEFTRIAXONE),
                effectiveDateTime=iso(NOW),
            ),
            "antimicrobial",
        ),
        (
            resource(
                "MedicationAdministration",
                status="not-done",
                medicationCodeableConcept=concept(*CEFTRIAXONE),
                effectiveDateTime=iso(NOW),
            ),
            None,
        ),
        (
            resource(
                "MedicationAdministration",
                status="completed",
                medicationCodeableConcept=concept(*CEFTRIAXONE),
                effectiveDateTime=iso(NOW),
                subject={"reference": "Patient/other"},
            ),
            None,
        ),
        (resource("MedicationAdministration", status="completed", effectiveDateTime="x"), None),
    ],
)
def test_infection_evidence_from_each_resource_kind(item: dict[str, Any], kind: str | None) -> None:
    found = infection_evidence([item], CODES, patient_id="p1")
    assert [e.kind for e in found] == ([kind] if kind else [])


def test_medication_orders_are_read_only_for_a_site_reading_orders() -> None:
    order = resource(
        "MedicationRequest",
        status="active",
        intent="order",
        medicationCodeableConcept=concept(*CEFTRIAXONE),
        authoredOn=iso(NOW),
    )
    orders = InfectionCodes((), (CULTURE,), (CEFTRIAXONE,), medications_from="requests")
    assert infection_evidence([order], CODES) == ()
    found = infection_evidence([order], orders)
    assert [e.source for e in found] == ["MedicationRequest/MedicationRequest-1"]


def test_the_context_says_sepsis_with_a_sepsis_condition_in_the_stay() -> None:
    condition = resource("Condition", code=concept(*SEPSIS), onsetDateTime=iso(NOW))
    context = assess(
        [*ventilated_since(20), condition],
        30,
        infection={"condition_codes": ["|".join(SEPSIS)]},
    )
    assert context.infection is not None and context.infection.basis == "condition"
    assert context.criterion == "sepsis (Phoenix score ≥ 2 with suspected infection)"


def test_settings_refuse_a_local_code_for_an_unknown_input() -> None:
    with pytest.raises(ValidationError, match="unknown input"):
        PhoenixSettings(local_codes=[{"input": "heart_rate", "system": "urn:x", "code": "HR"}])
