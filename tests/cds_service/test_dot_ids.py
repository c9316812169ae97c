"""Ids that a URL would resolve to another path (`.` and `..`) are refused before any request."""

from __future__ import annotations

import pytest
from pytest_httpserver import HTTPServer

from fhir_mappings.client import FhirClient
from fhir_mappings.prefetch import fill_template
from tests.cds_service.outcomes import assert_outcome
from tests.support.hook_caller import HookCaller, hook_request
from tests.support.tokens import fhir_authorization


@pytest.mark.parametrize("patient_id", ["..", "."])
def test_a_dot_patient_id_is_a_400_and_nothing_reaches_the_fhir_server(
    caller: HookCaller, httpserver: HTTPServer, fhir_base: str, patient_id: str
) -> None:
    body = hook_request(patient_id, fhir_server=fhir_base, fhir_authorization=fhir_authorization())

    response = caller.call(body)

    assert_outcome(response, 400, "PICU-400-INVALID-REQUEST")
    assert "context: patientId: Value error, must not be '.' or '..'" in response.get_data(
        as_text=True
    )
    assert httpserver.log == []


@pytest.mark.parametrize(
    ("context_field", "value"),
    [("encounterId", "."), ("encounterId", ".."), ("userId", "Practitioner/..")],
)
def test_other_dot_ids_in_the_context_are_a_400(
    caller: HookCaller, context_field: str, value: str
) -> None:
    body = hook_request("child-1")
    body["context"][context_field] = value

    assert_outcome(caller.call(body), 400, "PICU-400-INVALID-REQUEST")


def test_a_token_scoped_to_a_dot_patient_is_a_400(caller: HookCaller, fhir_base: str) -> None:
    body = hook_request(
        "child-1", fhir_server=fhir_base, fhir_authorization=fhir_authorization(patient="..")
    )

    assert_outcome(caller.call(body), 400, "PICU-400-INVALID-REQUEST")


@pytest.mark.parametrize("value", [".", ".."])
def test_prefetch_templates_refuse_dot_ids(value: str) -> None:
    with pytest.raises(ValueError, match="not a valid FHIR id"):
        fill_template("Patient/{{context.patientId}}", {"patientId": value})
    with pytest.raises(ValueError, match="not a valid FHIR id"):
        fill_template("X?u={{context.userId}}", {"userId": f"Practitioner/{value}"})


@pytest.mark.parametrize("path", ["Patient/..", "Patient/.", "Patient/", "Patient/%2e%2e"])
def test_the_fhir_client_refuses_dot_and_empty_segments(path: str) -> None:
    client = FhirClient("https://ehr.example.org/fhir", None, timeout=1.0, max_pages=1)

    with pytest.raises(ValueError, match="segment"):
        client.read(path)
