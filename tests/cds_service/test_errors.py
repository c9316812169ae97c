"""Every refusal is an OperationOutcome with its status and stable code, never a stack trace."""

from __future__ import annotations

import io
import logging
import re
from typing import Any

import pytest
import werkzeug.exceptions
from flask import Flask

from cds_service.errors import CdsError, from_http_exception
from cds_service.hooks import HookEngine
from tests.cds_service.outcomes import assert_outcome
from tests.support.hook_caller import HookCaller, hook_request
from tests.support.tokens import fhir_authorization

TWO_MEGABYTES = 2 * 1024 * 1024


def test_truncated_json_is_400_malformed(caller: HookCaller) -> None:
    response = caller.call(None, raw=b'{"hook": "patient-view",')
    assert_outcome(response, 400, "PICU-400-MALFORMED-JSON")


def test_body_that_is_not_utf8_is_400_malformed(caller: HookCaller) -> None:
    response = caller.call(None, raw=b'{"hook": "\xff\xfe"}')
    assert_outcome(response, 400, "PICU-400-MALFORMED-JSON")


def test_json_nested_deeper_than_the_parser_allows_is_400_malformed(caller: HookCaller) -> None:
    depth = 100_000
    body = b"[" * depth + b"]" * depth
    path = "/cds-services/picu-immune-endotype"
    response = caller.client.post(
        path,
        content_type="application/json",
        headers=caller.headers(path),
        environ_overrides={"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))},
    )
    assert_outcome(response, 400, "PICU-400-MALFORMED-JSON")


def test_text_plain_body_is_415(caller: HookCaller) -> None:
    response = caller.call(hook_request("p1"), content_type="text/plain")
    assert_outcome(response, 415, "PICU-415-NOT-JSON")


def test_fhir_json_media_type_is_accepted_as_json(caller: HookCaller) -> None:
    body = hook_request("p1")
    del body["hookInstance"]
    response = caller.call(body, content_type="application/fhir+json")
    assert_outcome(response, 400, "PICU-400-INVALID-REQUEST")


def test_two_megabyte_body_is_413_before_parsing(caller: HookCaller) -> None:
    response = caller.call(None, raw=b"{" + b" " * TWO_MEGABYTES)
    assert_outcome(response, 413, "PICU-413-BODY-TOO-LARGE")


def test_streamed_body_without_content_length_over_the_limit_is_413(
    app: Flask, caller: HookCaller
) -> None:
    path = "/cds-services/picu-immune-endotype"
    body = b'{"hook": "patient-view"' + b" " * TWO_MEGABYTES + b"}"
    environ = {"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": "", "wsgi.input_terminated": True}
    response = app.test_client().post(
        path,
        content_type="application/json",
        headers=caller.headers(path),
        environ_overrides=environ,
    )
    assert_outcome(response, 413, "PICU-413-BODY-TOO-LARGE")


def test_declared_length_over_the_limit_is_413_even_with_a_small_body(
    app: Flask, caller: HookCaller
) -> None:
    path = "/cds-services/picu-immune-endotype"
    response = app.test_client().post(
        path,
        data=b"{}",
        content_type="application/json",
        headers=caller.headers(path),
        environ_overrides={"CONTENT_LENGTH": str(TWO_MEGABYTES)},
    )
    assert_outcome(response, 413, "PICU-413-BODY-TOO-LARGE")


def test_declared_length_below_the_body_reads_only_that_much(
    app: Flask, caller: HookCaller
) -> None:
    path = "/cds-services/picu-immune-endotype"
    response = app.test_client().post(
        path,
        data=b'{"hook": "patient-view"}' + b" " * TWO_MEGABYTES,
        content_type="application/json",
        headers=caller.headers(path),
        environ_overrides={"CONTENT_LENGTH": "10"},
    )
    assert_outcome(response, 400, "PICU-400-MALFORMED-JSON")


@pytest.mark.parametrize("field", ["hook", "hookInstance", "context"])
def test_missing_required_field_is_400_naming_it(caller: HookCaller, field: str) -> None:
    body = hook_request("p1")
    del body[field]
    issue = assert_outcome(caller.call(body), 400, "PICU-400-INVALID-REQUEST")
    assert field in issue["diagnostics"]


@pytest.mark.parametrize("context", [{}, {"userId": "Practitioner/1"}, {"patientId": "p1"}])
def test_incomplete_context_is_400(caller: HookCaller, context: dict[str, Any]) -> None:
    body = hook_request("p1")
    body["context"] = context
    issue = assert_outcome(caller.call(body), 400, "PICU-400-INVALID-REQUEST")
    assert issue["diagnostics"].startswith("PICU-400-INVALID-REQUEST: context:")


def test_user_id_not_in_type_slash_id_form_is_400(caller: HookCaller) -> None:
    body = hook_request("p1")
    body["context"]["userId"] = "abc"
    issue = assert_outcome(caller.call(body), 400, "PICU-400-INVALID-REQUEST")
    assert "userId" in issue["diagnostics"]


def test_hook_instance_that_is_not_a_uuid_is_400(caller: HookCaller) -> None:
    body = hook_request("p1")
    body["hookInstance"] = "1234"
    assert_outcome(caller.call(body), 400, "PICU-400-INVALID-REQUEST")


def test_other_hook_sent_to_the_patient_view_service_is_400_wrong_hook(caller: HookCaller) -> None:
    response = caller.call(hook_request("p1", hook="order-sign"))
    assert_outcome(response, 400, "PICU-400-WRONG-HOOK")


def test_fhir_authorization_without_fhir_server_is_400(caller: HookCaller) -> None:
    response = caller.call(hook_request("p1", fhir_authorization=fhir_authorization()))
    issue = assert_outcome(response, 400, "PICU-400-INVALID-REQUEST")
    assert "cds-r-1" in issue["diagnostics"]


def test_non_bearer_token_type_is_400_without_echoing_values(
    caller: HookCaller, fhir_base: str
) -> None:
    authorization = fhir_authorization(token_type="MAC-distinctive-value")
    response = caller.call(
        hook_request("p1", fhir_server=fhir_base, fhir_authorization=authorization)
    )
    issue = assert_outcome(response, 400, "PICU-400-INVALID-REQUEST")
    assert "token_type" in issue["diagnostics"]
    assert "MAC-distinctive-value" not in response.get_data(as_text=True)


def test_json_array_body_is_400(caller: HookCaller) -> None:
    assert_outcome(caller.call([1, 2]), 400, "PICU-400-INVALID-REQUEST")


def test_prefetch_value_that_is_not_a_resource_is_400(caller: HookCaller) -> None:
    response = caller.call(hook_request("p1", prefetch={"panel": "not a resource"}))
    assert_outcome(response, 400, "PICU-400-INVALID-PREFETCH")


def test_unknown_service_id_is_404(caller: HookCaller) -> None:
    response = caller.call(hook_request("p1"), service_id="does-not-exist")
    assert_outcome(response, 404, "PICU-404-UNKNOWN-SERVICE")


def test_unknown_path_is_404(app: Flask) -> None:
    assert_outcome(app.test_client().get("/nothing-here"), 404, "PICU-404-NOT-FOUND")


def test_get_on_the_service_is_405_with_allow_header(caller: HookCaller) -> None:
    path = "/cds-services/picu-immune-endotype"
    response = caller.client.get(path, headers=caller.headers(path))
    assert_outcome(response, 405, "PICU-405-METHOD-NOT-ALLOWED")
    assert "POST" in response.headers["Allow"]


def test_error_media_type_follows_accept_header(caller: HookCaller) -> None:
    response = caller.call(None, raw=b"{", headers={"Accept": "application/fhir+json"})
    assert response.mimetype == "application/fhir+json"
    assert caller.call(None, raw=b"{").mimetype == "application/json"


def test_missing_authorization_is_401_with_empty_body(app: Flask) -> None:
    response = app.test_client().post("/cds-services/picu-immune-endotype", json=hook_request("p1"))
    assert response.status_code == 401
    assert response.get_data() == b""
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_unexpected_exception_is_500_logging_only_its_type(
    caller: HookCaller, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(*_: Any) -> None:
        raise RuntimeError("ferritin 123456 for patient p1")

    monkeypatch.setattr(HookEngine, "respond", explode)
    with caplog.at_level(logging.DEBUG):
        response = caller.call(hook_request("p1"))
    assert_outcome(response, 500, "PICU-500-INTERNAL")
    assert "123456" not in response.get_data(as_text=True)
    assert "RuntimeError" in caplog.text
    assert '"outcome":"PICU-500-INTERNAL"' in caplog.text
    assert "123456" not in caplog.text
    assert all(record.exc_info is None for record in caplog.records)


@pytest.mark.parametrize(
    ("exception", "status", "code"),
    [
        (werkzeug.exceptions.BadRequest, 400, "PICU-400-BAD-REQUEST"),
        (werkzeug.exceptions.NotFound, 404, "PICU-404-NOT-FOUND"),
        (werkzeug.exceptions.RequestEntityTooLarge, 413, "PICU-413-BODY-TOO-LARGE"),
        (werkzeug.exceptions.UnsupportedMediaType, 415, "PICU-415-NOT-JSON"),
        (werkzeug.exceptions.Conflict, 409, "PICU-409-HTTP"),
        (werkzeug.exceptions.ServiceUnavailable, 503, "PICU-503-HTTP"),
    ],
)
def test_werkzeug_errors_map_to_coded_errors(
    exception: type[werkzeug.exceptions.HTTPException], status: int, code: str
) -> None:
    error = from_http_exception(exception(description="quoting the request: secret"))
    assert (error.status, error.code) == (status, code)
    assert "secret" not in error.diagnostics


def test_werkzeug_unauthorized_is_an_empty_401_with_bearer_challenge(app: Flask) -> None:
    @app.get("/needs-login")
    def needs_login() -> None:
        raise werkzeug.exceptions.Unauthorized()

    response = app.test_client().get("/needs-login")
    assert response.status_code == 401
    assert response.get_data() == b""
    assert response.headers["WWW-Authenticate"] == "Bearer"


def _subclasses(cls: type) -> list[type]:
    return [sub for direct in cls.__subclasses__() for sub in (direct, *_subclasses(direct))]


def test_every_error_class_has_its_own_code_naming_its_status() -> None:
    classes = _subclasses(CdsError)
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes))
    for cls in classes:
        assert re.fullmatch(rf"PICU-{cls.status}-[A-Z-]+", cls.code), cls


def test_a_prefetch_nested_past_the_depth_limit_is_400_before_any_mapping(
    caller: HookCaller,
) -> None:
    nested: Any = {}
    for _ in range(70):  # parses fine, but deeper than limits.max_json_depth (64)
        nested = {"x": nested}
    body = hook_request("p1", prefetch={"il6": {"resourceType": "Bundle", "entry": [nested]}})

    response = caller.call(body)

    assert_outcome(response, 400, "PICU-400-MALFORMED-JSON")
    assert "nests deeper than 64 levels" in response.get_data(as_text=True)
