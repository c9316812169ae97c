"""patient-view end to end: the service reads synthetic patients from a real FHIR server."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

import pytest

from cds_service.settings import Settings
from devtools import SandboxFhir, build_prefetch
from tests.support.hook_caller import hook_request
from tests.support.tokens import SigningKey

from .conftest import ASSESSMENT_EXTENSION, EHR_ISSUER, SERVICE_BASE_URL, HookCaller, e2e_settings

IL6_LOINC = "26881-3"
EXPECTED_PATHWAYS = [
    ("hyperinflammatory", "biomarker-guided"),
    ("quiescent", "standard"),
    ("missing-panel", "insufficient-data"),
    ("resolving", "standard"),
]


def _only_card(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.get_data(as_text=True)
    (card,) = response.get_json()["cards"]
    return card


def _without_uuids(value: Any) -> Any:
    """The value with every `uuid` removed (they are fresh on every call)."""
    if isinstance(value, dict):
        return {key: _without_uuids(item) for key, item in value.items() if key != "uuid"}
    if isinstance(value, list):
        return [_without_uuids(item) for item in value]
    return value


def _il6_in_window(resources: list[dict[str, Any]], now: datetime) -> list[float]:
    """IL-6 values of a scenario inside the default look-back window, oldest first."""
    window_start = now - timedelta(hours=Settings().window_hours)
    timed = [
        (datetime.fromisoformat(r["effectiveDateTime"]), r["valueQuantity"]["value"])
        for r in resources
        if r["resourceType"] == "Observation"
        and any(c["code"] == IL6_LOINC for c in r["code"]["coding"])
    ]
    return [value for when, value in sorted(timed) if when >= window_start]


@pytest.mark.parametrize(("kind", "pathway"), EXPECTED_PATHWAYS)
def test_direct_queries_to_the_fhir_server_give_each_scenario_its_pathway(
    hook_caller: HookCaller,
    scenario_patients: dict[str, str],
    fhir_access: dict[str, Any],
    kind: str,
    pathway: str,
) -> None:
    card = _only_card(hook_caller.call(hook_request(scenario_patients[kind], **fhir_access)))
    assert card["extension"][ASSESSMENT_EXTENSION]["pathway"] == pathway


def test_missing_panel_card_names_il6_and_ferritin_as_missing(
    hook_caller: HookCaller, scenario_patients: dict[str, str], fhir_access: dict[str, Any]
) -> None:
    patient_id = scenario_patients["missing-panel"]
    card = _only_card(hook_caller.call(hook_request(patient_id, **fhir_access)))
    assert {"il6", "ferritin"} <= set(card["extension"][ASSESSMENT_EXTENSION]["missing"])


def test_resolving_card_shows_the_il6_trend_from_baseline_to_latest_in_the_detail(
    hook_caller: HookCaller,
    scenario_patients: dict[str, str],
    scenario_resources: dict[str, list[dict[str, Any]]],
    scenario_now: datetime,
    fhir_access: dict[str, Any],
) -> None:
    values = _il6_in_window(scenario_resources["resolving"], scenario_now)
    assert len(values) >= 2 and values[0] > values[-1]  # the scenario: IL-6 falling in the window
    card = _only_card(hook_caller.call(hook_request(scenario_patients["resolving"], **fhir_access)))
    trend = re.compile(rf"baseline `{values[0]:g} pg/mL` \([^)]*\) → latest `{values[-1]:g} pg/mL`")
    assert trend.search(card["detail"]), card["detail"]


@pytest.mark.parametrize("kind", [kind for kind, _ in EXPECTED_PATHWAYS])
def test_prefetch_from_the_discovery_templates_gives_the_same_card_as_direct_queries(
    hook_caller: HookCaller,
    discovery_templates: dict[str, str],
    sandbox_fhir: SandboxFhir,
    scenario_patients: dict[str, str],
    fhir_access: dict[str, Any],
    kind: str,
) -> None:
    patient_id = scenario_patients[kind]
    prefetch = build_prefetch(sandbox_fhir.base_url, discovery_templates, {"patientId": patient_id})
    assert all(value is not None for value in prefetch.values())
    with_prefetch = _only_card(hook_caller.call(hook_request(patient_id, prefetch=prefetch)))
    with_queries = _only_card(hook_caller.call(hook_request(patient_id, **fhir_access)))
    assert json.dumps(_without_uuids(with_prefetch), sort_keys=True) == json.dumps(
        _without_uuids(with_queries), sort_keys=True
    )


@pytest.fixture(scope="module")
def model_hook_caller(
    sandbox_fhir: SandboxFhir, ehr_key: SigningKey, tmp_path_factory: pytest.TempPathFactory
) -> HookCaller:
    """The service with the packaged scikit-learn model as its scorer."""
    from cds_service.app import create_app

    settings = e2e_settings(sandbox_fhir, ehr_key, tmp_path_factory.mktemp("model-state"))
    app = create_app(settings.model_copy(update={"scorer": "model"}))
    return HookCaller(app.test_client(), ehr_key, EHR_ISSUER, SERVICE_BASE_URL)


@pytest.mark.parametrize("kind", ["hyperinflammatory", "quiescent"])
def test_packaged_model_card_says_it_was_trained_on_synthetic_data(
    model_hook_caller: HookCaller,
    scenario_patients: dict[str, str],
    fhir_access: dict[str, Any],
    kind: str,
) -> None:
    card = _only_card(model_hook_caller.call(hook_request(scenario_patients[kind], **fhir_access)))
    scorer = card["extension"][ASSESSMENT_EXTENSION]["scorer"]
    assert scorer["kind"] == "model"
    assert scorer["syntheticTrainingData"] is True
    assert "SYNTHETIC" in card["detail"]
    assert "synthetic" in card["summary"].lower()
