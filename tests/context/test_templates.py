"""The encounters, orders and conditions templates: code lists from the panel and the settings."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from fhir_mappings.context_templates import (
    conditions_template,
    context_templates,
    encounters_template,
    orders_template,
)
from fhir_mappings.panel import Panel, load_panel
from fhir_mappings.prefetch import fill_template, is_search, template_resource_type

from .builders import SNOMED

SEPSIS = (SNOMED, "91302008")
SEPTIC_SHOCK = (SNOMED, "76571007")
ICD10 = ("http://hl7.org/fhir/sid/icd-10-cm", "R65.21")


def query(template: str) -> dict[str, list[str]]:
    """The filled template's search parameters, decoded."""
    return parse_qs(urlsplit(fill_template(template, {"patientId": "pat-0042"})).query)


def test_encounters_reads_in_progress_encounters_with_locations_and_their_parents() -> None:
    template = encounters_template()

    assert template_resource_type(template) == "Encounter" and is_search(template)
    assert query(template) == {
        "patient": ["pat-0042"],
        "status": ["in-progress"],
        "_include": ["Encounter:location"],
        "_include:iterate": ["Location:partof"],
    }


def test_orders_asks_for_active_requests_for_every_panel_code() -> None:
    panel = load_panel()
    template = orders_template(panel)

    params = query(template)
    requested = set(params["code"][0].split(","))
    every_code = {f"{c.system}|{c.code}" for a in panel.analytes.values() for c in a.codes}
    assert template_resource_type(template) == "ServiceRequest"
    assert params["status"] == ["active"] and params["patient"] == ["pat-0042"]
    assert requested == every_code and len(params["code"][0].split(",")) == len(every_code)


def test_orders_url_encodes_a_local_code_like_the_observation_templates() -> None:
    panel = load_panel()
    analyte = panel.analytes["cxcl9"]
    local = analyte.codes[0].model_copy(update={"system": "urn:oid:1.2.3", "code": "CX 9"})
    local_panel = Panel(analytes={"cxcl9": analyte.model_copy(update={"codes": (local,)})})

    template = orders_template(local_panel)

    assert template.endswith("&code=urn:oid:1.2.3|CX%209")
    assert query(template)["code"] == ["urn:oid:1.2.3|CX 9"]


def test_conditions_only_when_onset_codes_are_configured() -> None:
    assert conditions_template([]) is None

    template = conditions_template([SEPSIS, SEPTIC_SHOCK, ICD10])

    assert template is not None and template_resource_type(template) == "Condition"
    assert query(template) == {
        "patient": ["pat-0042"],
        "code": [f"{SNOMED}|91302008,{SNOMED}|76571007,{ICD10[0]}|R65.21"],
    }


def test_a_code_that_needs_search_escaping_is_refused() -> None:
    with pytest.raises(ValueError, match="needs search escaping"):
        conditions_template([(SNOMED, "91302008,76571007")])


def test_context_templates_hold_conditions_only_with_codes() -> None:
    panel = load_panel()

    assert set(context_templates(panel, [])) == {"encounters", "orders"}
    assert set(context_templates(panel, [SEPSIS])) == {"encounters", "orders", "conditions"}
