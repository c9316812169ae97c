"""GET /cds-services: one patient-view service whose prefetch templates pass the spec's lint."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import parse_qsl

import pytest
from flask import Flask

from cds_service.app import create_app
from cds_service.models import Services, find_empty_value
from fhir_mappings.config import LocalCode
from fhir_mappings.panel import load_panel
from tests.cds_service.conftest import MakeSettings
from tests.support.hook_caller import SERVICE_ID, HookCaller

ALLOWED_TOKENS = {
    "context.patientId",
    "context.userId",
    "context.encounterId",
    "userPractitionerId",
    "userPractitionerRoleId",
    "userPatientId",
    "userRelatedPersonId",
}
DATE_PREFIXES = ("eq", "lt", "gt", "ge", "le")
PHOENIX_KEYS = {
    "phoenixObservations",
    "phoenixProcedures",
    "phoenixDeviceUse",
    "phoenixInfusions",
    "phoenixGestationalAge",
}
CallerFor = Callable[[Flask], HookCaller]


def _service(caller: HookCaller) -> dict:
    response = caller.discover()
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    services = response.get_json()["services"]
    assert [service["id"] for service in services] == [SERVICE_ID]
    return services[0]


def test_discovery_lists_the_patient_view_service_with_required_fields(caller: HookCaller) -> None:
    service = _service(caller)
    assert service["hook"] == "patient-view"
    assert service["title"]
    assert service["description"]
    body = caller.discover().get_json()
    Services.model_validate(body)
    assert find_empty_value(body) is None


def test_discovery_usage_requirements_name_patient_and_observation_access(
    caller: HookCaller,
) -> None:
    requirements = _service(caller)["usageRequirements"]
    for resource_type in ("Patient", "Observation", "Encounter", "Location", "ServiceRequest"):
        assert resource_type in requirements
    assert "in the PICU only" in requirements


def test_discovery_prefetch_reads_the_patient_the_panel_in_one_search_and_the_care_context(
    caller: HookCaller,
) -> None:
    prefetch = _service(caller)["prefetch"]
    assert set(prefetch) == {"patient", "panel", "encounters", "orders", *PHOENIX_KEYS}
    assert prefetch["patient"] == "Patient/{{context.patientId}}"
    panel_codes = {
        f"{coding.system}|{coding.code}"
        for analyte in load_panel().analytes.values()
        for coding in analyte.codes
    }
    searched = dict(parse_qsl(prefetch["panel"].partition("?")[2]))
    assert set(searched["code"].split(",")) == panel_codes
    assert prefetch["encounters"].startswith("Encounter?patient={{context.patientId}}")
    assert "_include=Encounter:location" in prefetch["encounters"]
    assert "&status=active" in prefetch["orders"]


def test_discovery_prefetch_asks_for_onset_conditions_only_when_codes_are_set(
    make_settings: MakeSettings, caller_for: CallerFor
) -> None:
    code = "http://snomed.info/sct|76571007"
    app = create_app(make_settings(context={"onset_condition_codes": [code]}))
    prefetch = _service(caller_for(app))["prefetch"]
    assert prefetch["conditions"] == (
        "Condition?patient={{context.patientId}}&code=http://snomed.info/sct|76571007"
    )


def test_discovery_prefetch_templates_use_only_allowed_tokens_and_search_features(
    caller: HookCaller,
) -> None:
    for key, template in _service(caller)["prefetch"].items():
        tokens = re.findall(r"\{\{(.*?)\}\}", template)
        assert tokens and set(tokens) <= ALLOWED_TOKENS, key
        assert "today" not in template
        resource, _, query = template.partition("?")
        assert re.fullmatch(r"[A-Z][A-Za-z]+(/\{\{context\.patientId\}\})?", resource), key
        for name, value in parse_qsl(query):
            modifier = name.partition(":")[2]
            assert modifier in ("", "in", "iterate"), (key, name)
            if name == "date":
                assert value[:2] in DATE_PREFIXES, key
            if name == "_sort":
                assert value in ("date", "-date", "-effective-time", "-authoredon"), key


def test_discovery_prefetch_page_size_comes_from_settings(
    make_settings: MakeSettings, caller_for: CallerFor
) -> None:
    service = _service(caller_for(create_app(make_settings(fhir={"page_size": 17}))))
    assert "_count=17" in service["prefetch"]["panel"]


def test_discovery_prefetch_includes_a_site_local_code(
    make_settings: MakeSettings, caller_for: CallerFor
) -> None:
    local = LocalCode(analyte="il6", system="urn:oid:1.2.3.4", code="IL6LOCAL", unit="pg/mL")
    service = _service(caller_for(create_app(make_settings(local_codes=[local]))))
    assert "urn:oid:1.2.3.4|IL6LOCAL" in service["prefetch"]["panel"]
    assert "urn:oid:1.2.3.4|IL6LOCAL" in service["prefetch"]["orders"]


def test_discovery_without_authorization_is_401(app: Flask) -> None:
    response = app.test_client().get("/cds-services")
    assert response.status_code == 401
    assert response.get_data() == b""


def test_discovery_token_for_the_service_url_is_refused(caller: HookCaller) -> None:
    headers = caller.headers(f"/cds-services/{SERVICE_ID}")
    assert caller.client.get("/cds-services", headers=headers).status_code == 401


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_discovery_with_another_method_is_405(caller: HookCaller, method: str) -> None:
    response = getattr(caller.client, method)(
        "/cds-services", headers=caller.headers("/cds-services")
    )
    assert response.status_code == 405
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_discovery_usage_requirements_state_the_configured_age_limit(
    make_settings: MakeSettings, caller_for: CallerFor
) -> None:
    with_limit = _service(caller_for(create_app(make_settings(max_age_years=16))))
    without_limit = _service(caller_for(create_app(make_settings(max_age_years=None))))
    assert "under 16 years" in with_limit["usageRequirements"]
    assert "years" not in without_limit["usageRequirements"]


def test_discovery_asks_for_the_phoenix_inputs_bounded_by_count_without_a_date(
    make_settings: MakeSettings, caller_for: CallerFor
) -> None:
    app = create_app(make_settings(phoenix={"page_size": 300}))
    prefetch = _service(caller_for(app))["prefetch"]
    for key in PHOENIX_KEYS - {"phoenixGestationalAge"}:
        searched = dict(parse_qsl(prefetch[key].partition("?")[2]))
        assert searched["_count"] == "300", key
        assert not {"date", "effective-time", "authoredon"} & set(searched), key
    assert "_include=DeviceUseStatement:device" in prefetch["phoenixDeviceUse"]
    assert prefetch["phoenixInfusions"].startswith("MedicationAdministration?")
    assert "Procedure" in _service(caller_for(app))["usageRequirements"]


def test_discovery_leaves_the_phoenix_searches_out_when_the_layer_is_off(
    make_settings: MakeSettings, caller_for: CallerFor
) -> None:
    service = _service(caller_for(create_app(make_settings(phoenix={"enabled": False}))))
    assert set(service["prefetch"]) == {"patient", "panel", "encounters", "orders"}
    assert "Procedure" not in service["usageRequirements"]


def test_discovery_asks_for_the_infection_signal_only_when_it_is_configured(
    make_settings: MakeSettings, caller_for: CallerFor
) -> None:
    infection = {
        "condition_codes": ["http://snomed.info/sct|91302008"],
        "culture_codes": ["http://loinc.org|600-7"],
        "antimicrobial_codes": ["http://www.nlm.nih.gov/research/umls/rxnorm|2193"],
    }
    app = create_app(make_settings(phoenix={"infection": infection}))
    prefetch = _service(caller_for(app))["prefetch"]
    assert prefetch["infectionConditions"] == (
        "Condition?patient={{context.patientId}}&code=http://snomed.info/sct|91302008"
    )
    assert prefetch["infectionCultureOrders"].startswith("ServiceRequest?")
    assert "code=http://loinc.org|600-7" in prefetch["infectionCultureResults"]
    assert "rxnorm|2193" in prefetch["infectionAntimicrobials"]
    assert not any(
        key.startswith("infection")
        for key in _service(caller_for(create_app(make_settings())))["prefetch"]
    )
