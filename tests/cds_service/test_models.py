"""The CDS Hooks models against the spec's own examples and the logical-model invariants."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from pydantic import ValidationError

from cds_service.models import (
    Action,
    Card,
    Feedback,
    FeedbackItem,
    FhirAuthorization,
    HookRequest,
    HookResponse,
    Link,
    PatientViewContext,
    Service,
    Services,
    Source,
    Suggestion,
    find_empty_value,
)
from tests.conftest import CONFORMANCE


def _card(**fields: Any) -> dict[str, Any]:
    card = {
        "summary": "Consider the standard pathway",
        "indicator": "info",
        "source": {"label": "x"},
    }
    card.update(fields)
    return card


def _suggestion(label: str, recommended: bool | None = None) -> dict[str, Any]:
    suggestion: dict[str, Any] = {"label": label}
    if recommended is not None:
        suggestion["isRecommended"] = recommended
    return suggestion


@pytest.mark.parametrize(
    "name",
    [
        "spec-2.0.1-discovery-response.json",
        "spec-2.0.1-discovery-with-extension.json",
        "tools-ig-CDSHookServices.json",
    ],
)
def test_spec_discovery_examples_parse_and_round_trip(conformance_example, name: str) -> None:
    example = conformance_example(name)
    assert Services.model_validate(example).to_json() == example


@pytest.mark.parametrize(
    "name",
    [
        "spec-2.0.1-request-patient-view.json",
        "tools-ig-CDSHooksRequestPV.json",
        "spec-2.0.1-request-with-extension.json",
    ],
)
def test_spec_request_examples_parse(conformance_example, name: str) -> None:
    example = conformance_example(name)
    request = HookRequest.model_validate(example)
    assert str(request.hookInstance) == example["hookInstance"]
    assert request.context == example["context"]


def test_spec_request_extension_object_is_kept(conformance_example) -> None:
    example = conformance_example("spec-2.0.1-request-with-extension.json")
    assert HookRequest.model_validate(example).extension == example["extension"]


def test_spec_patient_view_context_parses(conformance_example) -> None:
    example = conformance_example("spec-2.0.1-request-patient-view.json")
    context = PatientViewContext.model_validate(example["context"])
    assert (context.patientId, context.encounterId) == ("1288992", "89284")


def test_spec_fhir_authorization_token_is_hidden_from_repr(conformance_example) -> None:
    example = conformance_example("spec-2.0.1-request-patient-view.json")
    request = HookRequest.model_validate(example)
    token = example["fhirAuthorization"]["access_token"]
    assert token not in repr(request)
    assert request.access_token == token


@pytest.mark.parametrize(
    "name",
    [
        "spec-2.0.1-response-cards.json",
        "tools-ig-CDSHooksResponse.json",
        "spec-2.0.1-response-empty.json",
    ],
)
def test_spec_response_examples_parse_and_round_trip(conformance_example, name: str) -> None:
    example = conformance_example(name)
    assert HookResponse.model_validate(example).to_json() == example


@pytest.mark.parametrize(
    ("name", "missing"),
    [
        ("spec-2.0.1-response-autolaunchable.json", "indicator"),
        ("spec-2.0.1-response-systemActions.json", "description"),
    ],
)
def test_spec_response_examples_with_known_defects_are_refused_for_that_field_only(
    conformance_example, name: str, missing: str
) -> None:
    example = conformance_example(name)
    with pytest.raises(ValidationError) as caught:
        HookResponse.model_validate(example)
    assert {error["loc"][-1] for error in caught.value.errors()} == {missing}
    repaired = copy.deepcopy(example)
    for item in repaired["cards"] or repaired["systemActions"]:
        item[missing] = "info" if missing == "indicator" else "Record the appropriateness score"
    assert HookResponse.model_validate(repaired).to_json() == repaired


@pytest.mark.parametrize(
    "name",
    [
        "spec-2.0.1-action-create.json",
        "spec-2.0.1-action-update.json",
        "spec-2.0.1-action-delete.json",
    ],
)
def test_spec_action_examples_parse(conformance_example, name: str) -> None:
    example = conformance_example(name)
    assert Action.model_validate(example).to_json() == example


def test_spec_card_fragments_parse(conformance_example) -> None:
    source = conformance_example("spec-2.0.1-card-source.json")
    reasons = conformance_example("spec-2.0.1-card-overrideReasons.json")
    card = Card.model_validate(_card(**source, **reasons))
    assert card.to_json()["source"] == source["source"]
    assert card.to_json()["overrideReasons"] == reasons["overrideReasons"]


@pytest.mark.parametrize(
    "name",
    [
        "spec-2.0.1-feedback-accepted.json",
        "spec-2.0.1-feedback-overridden.json",
        "spec-2.0.1-feedback-overridden-with-reason.json",
    ],
)
def test_spec_feedback_examples_parse(conformance_example, name: str) -> None:
    example = conformance_example(name)
    feedback = Feedback.model_validate(example)
    assert [str(item.card) for item in feedback.feedback] == [
        item["card"] for item in example["feedback"]
    ]


def test_spec_fhir_authorization_fragment_parses(conformance_example) -> None:
    fragment = conformance_example("spec-2.0.1-request-fhirAuthorization.json")
    authorization = FhirAuthorization.model_validate(fragment["fhirAuthorization"])
    assert (authorization.token_type, authorization.expires_in) == ("Bearer", 300)


def test_spec_prefetch_templates_fragment_parses_as_a_service(conformance_example) -> None:
    fragment = conformance_example("spec-2.0.1-discovery-prefetch-templates.json")
    service = {"hook": "patient-view", "description": "d", "id": "s", **fragment}
    assert Service.model_validate(service).prefetch == fragment["prefetch"]


def test_spec_prefetch_data_fragment_parses_in_a_request(conformance_example) -> None:
    fragment = conformance_example("spec-2.0.1-request-prefetch-data.json")
    body = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/1", "patientId": "p1"},
        **fragment,
    }
    assert HookRequest.model_validate(body).prefetch == fragment["prefetch"]


def test_request_without_hook_instance_is_refused_rather_than_invented(conformance_example) -> None:
    example = conformance_example("spec-2.0.1-request-patient-view.json")
    del example["hookInstance"]
    with pytest.raises(ValidationError, match="hookInstance"):
        HookRequest.model_validate(example)


def test_request_with_authorization_but_no_fhir_server_is_refused(conformance_example) -> None:
    example = conformance_example("spec-2.0.1-request-patient-view.json")
    del example["fhirServer"]
    with pytest.raises(ValidationError, match="cds-r-1"):
        HookRequest.model_validate(example)


def test_request_with_non_bearer_token_type_is_refused(conformance_example) -> None:
    example = conformance_example("spec-2.0.1-request-patient-view.json")
    example["fhirAuthorization"]["token_type"] = "MAC"
    with pytest.raises(ValidationError, match="token_type"):
        HookRequest.model_validate(example)


def test_request_unknown_fields_are_ignored(conformance_example) -> None:
    example = conformance_example("spec-2.0.1-request-patient-view.json")
    example["futureField"] = {"anything": 1}
    assert not hasattr(HookRequest.model_validate(example), "futureField")


@pytest.mark.parametrize("user_id", ["abc", "Practitioner/", "/123", "Practitioner/a b"])
def test_context_user_id_must_be_type_slash_id(user_id: str) -> None:
    with pytest.raises(ValidationError, match="userId"):
        PatientViewContext.model_validate({"userId": user_id, "patientId": "p1"})


@pytest.mark.parametrize("patient_id", ["", "a/b", "x" * 65, "p 1"])
def test_context_patient_id_must_be_a_fhir_id(patient_id: str) -> None:
    with pytest.raises(ValidationError, match="patientId"):
        PatientViewContext.model_validate({"userId": "Practitioner/1", "patientId": patient_id})


def test_card_summary_of_139_characters_is_accepted_and_140_refused() -> None:
    assert Card.model_validate(_card(summary="x" * 139)).summary == "x" * 139
    with pytest.raises(ValidationError, match="summary"):
        Card.model_validate(_card(summary="x" * 140))


def test_card_suggestions_without_selection_behavior_are_refused() -> None:
    with pytest.raises(ValidationError, match="cds-resp-6"):
        Card.model_validate(_card(suggestions=[_suggestion("a")]))


def test_at_most_one_card_with_two_recommended_suggestions_is_refused() -> None:
    suggestions = [_suggestion("a", True), _suggestion("b", True)]
    with pytest.raises(ValidationError, match="cds-resp-1"):
        Card.model_validate(_card(suggestions=suggestions, selectionBehavior="at-most-one"))
    card = Card.model_validate(_card(suggestions=suggestions, selectionBehavior="any"))
    assert len(card.suggestions or []) == 2


def test_unknown_selection_behavior_is_refused() -> None:
    with pytest.raises(ValidationError, match="selectionBehavior"):
        Card.model_validate(_card(suggestions=[_suggestion("a")], selectionBehavior="all"))


def test_delete_action_must_use_resource_id() -> None:
    resource = {"resourceType": "ServiceRequest", "id": "1"}
    with pytest.raises(ValidationError, match="cds-resp-2"):
        Action.model_validate({"type": "delete", "description": "d", "resource": resource})


def test_create_action_without_resource_is_refused() -> None:
    with pytest.raises(ValidationError, match="needs a resource"):
        Action.model_validate({"type": "create", "description": "d"})


def test_app_context_on_absolute_link_is_refused() -> None:
    link = {"label": "l", "url": "https://a.test", "type": "absolute", "appContext": "{}"}
    with pytest.raises(ValidationError, match="cds-resp-3"):
        Link.model_validate(link)


@pytest.mark.parametrize("url", ["/relative/path", "example.org/x", "ftp://a.test/x"])
def test_link_url_must_be_absolute_http(url: str) -> None:
    with pytest.raises(ValidationError, match="absolute"):
        Link.model_validate({"label": "l", "url": url, "type": "absolute"})


def test_override_reason_without_display_is_refused() -> None:
    reason = {"system": "https://a.test/reasons", "code": "r1"}
    with pytest.raises(ValidationError, match="display"):
        Card.model_validate(_card(overrideReasons=[reason]))


@pytest.mark.parametrize(
    "card",
    [
        _card(detail=""),
        _card(links=[]),
        _card(extension={}),
        _card(source={"label": "x", "topic": {"system": "s", "code": ""}}),
    ],
)
def test_response_with_an_empty_value_is_refused(card: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        HookResponse.model_validate({"cards": [card]})


def test_response_with_empty_value_nested_in_extension_is_refused() -> None:
    card = _card(extension={"org.example.x": {"values": []}})
    with pytest.raises(ValidationError, match="empty value"):
        HookResponse.model_validate({"cards": [card]})


def test_response_dump_omits_unset_optional_fields() -> None:
    dumped = HookResponse.model_validate({"cards": [_card()]}).to_json()
    assert dumped == {"cards": [_card()]}
    assert find_empty_value(dumped["cards"]) is None


def test_outbound_card_refuses_unknown_fields() -> None:
    with pytest.raises(ValidationError, match="colour"):
        Card.model_validate(_card(colour="red"))


def test_accepted_feedback_without_accepted_suggestions_is_refused() -> None:
    item = {
        "card": "4e0a3a1e-3283-4575-ab82-028d55fe2719",
        "outcome": "accepted",
        "outcomeTimestamp": "2021-12-11T10:05:31Z",
    }
    with pytest.raises(ValidationError, match="cds-fb-2"):
        FeedbackItem.model_validate(item)


@pytest.mark.parametrize(
    "change",
    [
        {"outcome": "ignored"},
        {"overrideReason": {}},
        {"overrideReason": {"userComment": ""}},
        {"outcomeTimestamp": "2021-12-11T10:05:31"},
        {"card": "not-a-uuid"},
    ],
)
def test_invalid_feedback_items_are_refused(change: dict[str, Any]) -> None:
    item = {
        "card": "f6b95768-b1c8-40dc-8385-bf3504b82ffb",
        "outcome": "overridden",
        "outcomeTimestamp": "2020-12-11T00:00:00Z",
        **change,
    }
    with pytest.raises(ValidationError):
        FeedbackItem.model_validate(item)


def test_feedback_body_without_items_is_refused() -> None:
    with pytest.raises(ValidationError, match="feedback"):
        Feedback.model_validate({"feedback": []})


def test_response_with_an_empty_value_in_a_system_action_is_refused() -> None:
    action = {
        "type": "create",
        "description": "d",
        "resource": {"resourceType": "Task", "note": []},
    }
    with pytest.raises(ValidationError, match=r"systemActions\[0\]\.resource\.note"):
        HookResponse.model_validate({"cards": [], "systemActions": [action]})


# Logical model element path -> our model; FHIR tools IG StructureDefinitions (hl7.fhir.uv.tools).
LOGICAL_MODELS: dict[str, type] = {
    "CDSHooksResponse.cards": Card,
    "CDSHooksResponse.cards.source": Source,
    "CDSHooksResponse.cards.suggestions": Suggestion,
    "CDSHooksResponse.cards.suggestions.actions": Action,
    "CDSHooksResponse.cards.links": Link,
    "CDSHooksRequest": HookRequest,
    "CDSHooksRequest.fhirAuthorization": FhirAuthorization,
    "CDSHooksServices.services": Service,
    "CDSHookPatientViewContext": PatientViewContext,
}
JSON_NAMES = {"accessToken": "access_token", "tokenType": "token_type", "expiresIn": "expires_in"}


def _logical_elements() -> list[tuple[str, str, int]]:
    """(parent path, field, min) for every element whose parent we model."""
    elements = []
    for name in ("CDSHooksResponse", "CDSHooksRequest", "CDSHooksServices"):
        elements += _elements_of(name)
    return elements + _elements_of("CDSHookPatientViewContext")


def _elements_of(name: str) -> list[tuple[str, str, int]]:
    path = CONFORMANCE / "logical-models" / f"StructureDefinition-{name}.json"
    definition = json.loads(path.read_text())
    found = []
    for element in definition["differential"]["element"]:
        parent, _, field = element["path"].rpartition(".")
        if parent in LOGICAL_MODELS:
            found.append((parent, JSON_NAMES.get(field, field), element.get("min", 0)))
    return found


@pytest.mark.parametrize(("parent", "field", "minimum"), _logical_elements())
def test_every_logical_model_element_exists_and_required_ones_are_required(
    parent: str, field: str, minimum: int
) -> None:
    model = LOGICAL_MODELS[parent]
    assert field in model.model_fields, f"{parent}.{field} missing from {model.__name__}"
    if minimum >= 1:
        assert model.model_fields[field].is_required(), f"{model.__name__}.{field}"


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"a": [{"b": 1}, {"c": ""}]}, "a.[1].c"),
        ({"a": [1, []]}, "a.[1]"),
        ({"a": {"b": None}}, "a.b"),
        ([{"k": {}}], "[0].k"),
        ({}, "."),
        ({"zero": 0, "false": False, "floats": [0.0], "text": "x"}, None),
    ],
)
def test_find_empty_value_names_the_path_of_the_first_empty_value(value: Any, path: str | None):
    assert find_empty_value(value) == path
