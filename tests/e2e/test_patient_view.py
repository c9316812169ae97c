"""patient-view end to end: the service reads synthetic children from a real FHIR server, by its
own queries and from prefetch filled with its discovery templates: gate, anchor, persistence."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devtools import SandboxFhir, build_prefetch
from model.synth.scenarios import SCENARIOS, scenario_onset
from tests.support.hook_caller import hook_request, without_uuids
from tests.support.tokens import SigningKey

from .conftest import ASSESSMENT_EXTENSION, EHR_ISSUER, SERVICE_BASE_URL, HookCaller, e2e_settings

EXPECTED = {  # kind -> (pathway, persistence)
    "hyperinflammatory": ("biomarker-guided", "persistent"),
    "quiescent": ("standard", "never-high"),
    "missing-panel": ("insufficient-data", "unknown"),
    "resolving": ("standard", "resolving"),
}
FORMS = ("query", "prefetch")


def _cards(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["cards"]


def _only_card(response: Any) -> dict[str, Any]:
    (card,) = _cards(response)
    return card


@pytest.fixture
def call(
    hook_caller: HookCaller,
    discovery_templates: dict[str, str],
    sandbox_fhir: SandboxFhir,
    scenario_patients: dict[str, str],
    fhir_access: dict[str, Any],
):
    """Call patient-view for one child in one form: direct queries, or prefetch from templates."""

    def calling(kind: str, form: str) -> Any:
        patient_id = scenario_patients[kind]
        if form == "query":
            return hook_caller.call(hook_request(patient_id, **fhir_access))
        context = {"patientId": patient_id}
        prefetch = build_prefetch(sandbox_fhir.base_url, discovery_templates, context)
        assert all(value is not None for value in prefetch.values())
        return hook_caller.call(hook_request(patient_id, prefetch=prefetch))

    return calling


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_each_picu_child_gets_its_pathway_and_persistence(call, kind: str, form: str) -> None:
    extension = _only_card(call(kind, form))["extension"][ASSESSMENT_EXTENSION]
    assert (extension["pathway"], extension["persistence"]["state"]) == EXPECTED[kind]


@pytest.mark.parametrize("form", FORMS)
def test_the_child_on_a_general_ward_gets_no_card(call, form: str) -> None:
    assert _cards(call("general-ward", form)) == []


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_the_anchor_is_the_phoenix_onset_found_in_the_chart(
    call, kind: str, form: str, scenario_now: datetime
) -> None:
    card = _only_card(call(kind, form))
    context = card["extension"][ASSESSMENT_EXTENSION]["context"]
    assert context["in_picu"] is True
    assert context["encounter"].startswith("Encounter/e2e-")
    assert context["anchor"]["source"] == "phoenix"
    anchor = datetime.fromisoformat(context["anchor"]["time"])
    assert anchor == scenario_onset(kind, scenario_now)
    admitted = scenario_now - timedelta(hours=SCENARIOS[kind].admitted_hours_ago)
    assert admitted <= anchor < admitted + timedelta(hours=4)
    hours_before_call = (scenario_now - anchor) / timedelta(hours=1)
    hours_after_call = (datetime.now(UTC) - anchor) / timedelta(hours=1)
    # the service counts from the current minute and rounds to 0.1 h
    slack = 0.05 + 1 / 60
    assert hours_before_call - slack <= context["hours_since_anchor"] <= hours_after_call + slack
    assert "since onset (organ dysfunction, Phoenix score ≥ 2, " in card["detail"]
    assert re.search(r"^Phoenix \d+ at \d\d:\d\d UTC.*; onset .* ago\.", card["detail"], re.M)


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_prefetch_from_the_discovery_templates_gives_the_same_card_as_direct_queries(
    call, kind: str
) -> None:
    with_prefetch, with_queries = (
        _at_one_moment(_only_card(call(kind, "prefetch"))),
        _at_one_moment(_only_card(call(kind, "query"))),
    )
    assert json.dumps(without_uuids(with_prefetch), sort_keys=True) == json.dumps(
        without_uuids(with_queries), sort_keys=True
    )


def _at_one_moment(card: dict[str, Any]) -> dict[str, Any]:
    """The card without what depends on the second it was made: the Phoenix course's last point
    (now), its clock time on the card, and the hours since the anchor."""
    context = card["extension"][ASSESSMENT_EXTENSION]["context"]
    context.pop("hours_since_anchor")
    phoenix = context["phoenix"]
    phoenix["series"], phoenix["latest"] = phoenix["series"][:-1], None
    card["detail"] = re.sub(r"^(Phoenix \d+) at \d\d:\d\d", r"\1", card["detail"], flags=re.M)
    return card


def test_the_persistent_child_card_leads_with_persistence_and_shows_since_when(call) -> None:
    card = _only_card(call("hyperinflammatory", "query"))
    assert card["detail"].startswith("**Persistent IL-6/IFN-γ-high pattern**")
    assert re.search(r"\*\*High since\*\* .*, early window: IL-6 `820 pg/mL`", card["detail"])
    assert len(card["detail"]) <= 1500


def test_the_resolving_child_card_says_resolving_and_shows_the_earlier_values(call) -> None:
    card = _only_card(call("resolving", "query"))
    assert card["summary"].startswith("Resolving:")
    earlier = next(line for line in card["detail"].splitlines() if "**Earlier high**" in line)
    assert "IL-6 `640 pg/mL`" in earlier and "Ferritin `5,200 ng/mL`" in earlier


def test_the_missing_panel_child_shows_the_pending_order_and_is_not_offered_it(call) -> None:
    card = _only_card(call("missing-panel", "prefetch"))
    extension = card["extension"][ASSESSMENT_EXTENSION]
    assert extension["pending"] == ["cxcl9"]
    assert {"il6", "ferritin"} <= set(extension["missing"])
    assert "Ordered, pending: CXCL9." in card["detail"]
    assert "CXCL9" not in card["suggestions"][0]["label"]


@pytest.fixture(scope="module")
def model_hook_caller(
    sandbox_fhir: SandboxFhir, ehr_key: SigningKey, tmp_path_factory: pytest.TempPathFactory
) -> HookCaller:
    """The service with the packaged scikit-learn model as its scorer."""
    from cds_service.app import create_app

    settings = e2e_settings(sandbox_fhir, ehr_key, tmp_path_factory.mktemp("model-state"))
    app = create_app(settings.model_copy(update={"scorer": "model"}))
    return HookCaller(app.test_client(), ehr_key, EHR_ISSUER, SERVICE_BASE_URL)


@pytest.mark.parametrize("kind", ["hyperinflammatory", "quiescent", "resolving"])
def test_the_packaged_model_agrees_and_says_it_was_trained_on_synthetic_data(
    model_hook_caller: HookCaller,
    scenario_patients: dict[str, str],
    fhir_access: dict[str, Any],
    kind: str,
) -> None:
    card = _only_card(model_hook_caller.call(hook_request(scenario_patients[kind], **fhir_access)))
    extension = card["extension"][ASSESSMENT_EXTENSION]
    assert (extension["pathway"], extension["persistence"]["state"]) == EXPECTED[kind]
    assert extension["scorer"]["syntheticTrainingData"] is True
    assert card["detail"].startswith("**SYNTHETIC-data model: not for clinical use.**")
    assert "synthetic" in card["summary"].lower()
