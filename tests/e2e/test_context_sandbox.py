"""The care-context templates against the sandbox FHIR server, as prefetch and as queries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import requests

from devtools import SandboxFhir
from fhir_mappings.client import FhirClient, entry_resources
from fhir_mappings.context_templates import (
    conditions_template,
    encounters_template,
    orders_template,
)
from fhir_mappings.encounters import (
    condition_facts,
    encounter_facts,
    location_facts,
    order_facts,
)
from fhir_mappings.panel import load_panel
from fhir_mappings.prefetch import fill_template
from model.context import AnchorSource, CareContext, ContextSettings, GateOutcome, assess_context
from tests.context.builders import (
    NOW,
    SNOMED,
    ago,
    condition,
    encounter,
    location,
    picu_bed,
    service_request,
    stay,
)
from tests.e2e.conftest import LoadResources

PICU_CHILD = "ctx-picu-child"
WARD_CHILD = "ctx-ward-child"
SEPSIS = (SNOMED, "91302008")
PANEL = load_panel()


def patient(patient_id: str) -> dict[str, Any]:
    """A child Patient."""
    return {"resourceType": "Patient", "id": patient_id, "birthDate": "2019-03-01"}


def context_resources() -> list[dict[str, Any]]:
    """A child in a PICU bed (bed -> room -> PEDICU ward) and a child on a general ward."""
    ward = location("ctx-ward-5", "General paediatrics, 5 West", role="PEDU")
    ed = location("ctx-ed", "Emergency department", role="ER")
    picu_stay = encounter(
        "ctx-enc-picu",
        patient=PICU_CHILD,
        start=30,
        stays=[
            stay("ctx-ed", status="completed", start=30, end=26),
            stay("ctx-picu-r4-b2", start=26),
        ],
    )
    earlier = encounter(
        "ctx-enc-old",
        patient=PICU_CHILD,
        status="finished",
        start=900,
        end=800,
        stays=[stay("ctx-ward-5", status="completed", start=900, end=800)],
    )
    ward_stay = encounter(
        "ctx-enc-ward", patient=WARD_CHILD, start=10, stays=[stay("ctx-ward-5", start=10)]
    )
    return [
        patient(PICU_CHILD),
        patient(WARD_CHILD),
        *picu_bed("ctx-"),
        ward,
        ed,
        picu_stay,
        earlier,
        ward_stay,
        condition("ctx-sepsis", onset=12, patient=PICU_CHILD, encounter_id="ctx-enc-picu"),
        condition("ctx-asthma", "195967001", onset=12, patient=PICU_CHILD, encounter_id=None),
        service_request("ctx-sr-cxcl9", patient=PICU_CHILD),
        service_request("ctx-sr-fer", "2276-4", status="completed", patient=PICU_CHILD),
        service_request("ctx-sr-cbc", "58410-2", patient=PICU_CHILD),
    ]


@pytest.fixture(scope="module")
def loaded(load_into_sandbox: LoadResources) -> None:
    """The context resources, loaded once into the session's sandbox."""
    response = load_into_sandbox(context_resources())
    statuses = [entry["response"]["status"] for entry in response["entry"]]
    assert all(status.startswith(("200", "201")) for status in statuses), statuses


def prefetched(sandbox: SandboxFhir, template: str, patient_id: str) -> list[dict[str, Any]]:
    """What an EHR prefetches for the template: one GET, the Bundle's entry resources."""
    url = f"{sandbox.base_url}/{fill_template(template, {'patientId': patient_id})}"
    response = requests.get(url, headers={"Accept": "application/fhir+json"}, timeout=10)
    assert response.status_code == 200, response.text[:500]
    return list(entry_resources(response.json()))


def queried(sandbox: SandboxFhir, template: str, patient_id: str) -> list[dict[str, Any]]:
    """What the service's FHIR client reads for the template, following pages."""
    with FhirClient(sandbox.base_url, None, timeout=10, max_pages=5) as client:
        return client.search(fill_template(template, {"patientId": patient_id}))


def assess(resources: list[dict[str, Any]], patient_id: str) -> CareContext:
    """The care context from the encounters search alone."""
    return assess_context(
        encounters=encounter_facts(resources, patient_id=patient_id).facts,
        locations=location_facts(resources).facts,
        conditions=(),
        orders=(),
        context_encounter_id=None,
        now=NOW,
        settings=ContextSettings(),
        window=timedelta(hours=48),
    )


@pytest.mark.parametrize("fetch", [prefetched, queried], ids=["prefetch", "query"])
def test_the_encounters_template_brings_the_bed_room_and_picu_ward(
    sandbox_fhir: SandboxFhir, loaded: None, fetch: Any
) -> None:
    resources = fetch(sandbox_fhir, encounters_template(), PICU_CHILD)

    types = sorted((r["resourceType"], r["id"]) for r in resources)
    context = assess(resources, PICU_CHILD)

    assert ("Encounter", "ctx-enc-old") not in types, "only in-progress encounters"
    assert {("Location", i) for i in ("ctx-picu", "ctx-picu-r4", "ctx-picu-r4-b2")} <= set(types)
    assert context.gate is GateOutcome.IN_PICU and context.encounter == "Encounter/ctx-enc-picu"
    assert context.picu_since == ago(26)
    assert context.anchor is not None and context.anchor.source is AnchorSource.PICU_ADMISSION


def test_the_ward_child_is_not_in_the_picu(sandbox_fhir: SandboxFhir, loaded: None) -> None:
    resources = prefetched(sandbox_fhir, encounters_template(), WARD_CHILD)

    context = assess(resources, WARD_CHILD)

    assert [r["id"] for r in resources if r["resourceType"] == "Encounter"] == ["ctx-enc-ward"]
    assert context.gate is GateOutcome.NOT_IN_PICU and not context.fires


def test_the_orders_and_conditions_templates_find_what_the_anchor_and_pending_need(
    sandbox_fhir: SandboxFhir, loaded: None
) -> None:
    template = conditions_template([SEPSIS])
    assert template is not None
    conditions = prefetched(sandbox_fhir, template, PICU_CHILD)
    orders = prefetched(sandbox_fhir, orders_template(PANEL), PICU_CHILD)
    encounters = prefetched(sandbox_fhir, encounters_template(), PICU_CHILD)

    context = assess_context(
        encounters=encounter_facts(encounters, patient_id=PICU_CHILD).facts,
        locations=location_facts(encounters).facts,
        conditions=condition_facts(conditions, patient_id=PICU_CHILD).facts,
        orders=order_facts(orders, PANEL, patient_id=PICU_CHILD).facts,
        context_encounter_id="ctx-enc-picu",
        now=NOW,
        settings=ContextSettings(onset_condition_codes=["|".join(SEPSIS)]),
        window=timedelta(hours=48),
    )

    assert [r["id"] for r in conditions] == ["ctx-sepsis"]
    assert sorted(r["id"] for r in orders) == ["ctx-sr-cxcl9"], "active panel orders only"
    assert context.anchor is not None
    assert (context.anchor.source, context.anchor.time) == (AnchorSource.CONDITION, ago(12))
    assert [(o.analyte, o.id) for o in context.pending] == [("cxcl9", "ctx-sr-cxcl9")]
