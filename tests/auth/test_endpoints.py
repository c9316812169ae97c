"""The real discovery, hook and feedback endpoints refuse bad client tokens before any FHIR call."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from flask.testing import FlaskClient
from pytest_httpserver import HTTPServer
from werkzeug.wrappers import Request, Response

from cds_service.app import create_app
from cds_service.settings import Settings
from tests.auth.conftest import (
    BASE,
    DISCOVERY,
    EHR,
    FEEDBACK,
    OTHER_SERVICE,
    SERVICE,
    client_entry,
    path_of,
)
from tests.conftest import CONFORMANCE
from tests.support.hook_caller import hook_request
from tests.support.leak_guard import register_secret
from tests.support.tokens import SigningKey, fhir_authorization, jwks, make_token

PATIENT_ID = "picu-child-1"
SANDBOX = "https://sandbox.cds-hooks.org"
TokenFactory = Callable[..., str | None]


@dataclass
class ChildOnlyFhir:
    """A FHIR stub knowing one child and no results; it records each call's Authorization."""

    authorizations: list[str | None] = field(default_factory=list)

    def __call__(self, request: Request) -> Response:
        self.authorizations.append(request.headers.get("Authorization"))
        if request.path.endswith(f"/Patient/{PATIENT_ID}"):
            body = {"resourceType": "Patient", "id": PATIENT_ID, "birthDate": "2021-03-01"}
        else:
            body = {"resourceType": "Bundle", "type": "searchset", "total": 0}
        return Response(json.dumps(body), content_type="application/fhir+json")


@pytest.fixture
def fake_fhir(httpserver: HTTPServer) -> ChildOnlyFhir:
    """The stub, serving every path under /fhir/."""
    fake = ChildOnlyFhir()
    httpserver.expect_request(re.compile(r"/fhir/.*")).respond_with_handler(fake)
    return fake


@pytest.fixture
def settings(tmp_path: Path, httpserver: HTTPServer, es_key, rs_key) -> Settings:
    """The service at BASE trusting EHR, whose token may go to the stub FHIR server only."""
    return Settings(
        public_base_url=BASE,
        clients=[client_entry(es_key, rs_key, fhir_servers=[httpserver.url_for("/fhir")])],
        insecure_http_fhir_hosts=["localhost"],
        cors_allowed_origins=[SANDBOX],
        state_dir=tmp_path / "state",
    )


@pytest.fixture
def service(settings: Settings) -> FlaskClient:
    """A test client of the real application."""
    return create_app(settings).test_client()


@pytest.fixture
def hook_body(httpserver: HTTPServer) -> dict[str, Any]:
    """A patient-view call without prefetch, so the service must query the FHIR server."""
    return hook_request(
        PATIENT_ID, fhir_server=httpserver.url_for("/fhir"), fhir_authorization=fhir_authorization()
    )


def _post_hook(service: FlaskClient, token: str | None, body: dict[str, Any]) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return service.post(path_of(SERVICE), json=body, headers=headers)


def assert_bare_401(response: Any) -> None:
    assert response.status_code == 401
    assert response.get_data() == b""
    assert response.headers["WWW-Authenticate"] == "Bearer"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims() -> dict[str, Any]:
    now = int(time.time())
    return {"iss": EHR, "aud": SERVICE, "iat": now, "exp": now + 300, "jti": f"jti-{now}-e"}


def _unsigned(es_key: SigningKey, **_: Any) -> str:
    header = {"alg": "none", "typ": "JWT", "kid": es_key.kid}
    segments = [_b64(json.dumps(part).encode()) for part in (header, _claims())]
    return register_secret(".".join(segments) + ".")


def _hs256_with_public_key(es_key: SigningKey, **_: Any) -> str:
    secret = es_key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": es_key.kid}
    signing_input = ".".join(_b64(json.dumps(part).encode()) for part in (header, _claims()))
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return register_secret(f"{signing_input}.{_b64(signature)}")


def _tampered(es_key: SigningKey, **_: Any) -> str:
    header, _, signature = make_token(es_key, iss=EHR, aud=DISCOVERY).split(".")
    return register_secret(f"{header}.{_b64(json.dumps(_claims()).encode())}.{signature}")


def _foreign_jku(es_key: SigningKey, httpserver: HTTPServer, **_: Any) -> str:
    attacker = SigningKey.generate("ES384")
    httpserver.expect_request("/attacker/jwks.json").respond_with_json(jwks(attacker))
    return make_token(attacker, iss=EHR, aud=SERVICE, jku=httpserver.url_for("/attacker/jwks.json"))


def _spec_example(es_key: SigningKey, conformance: Path, **_: Any) -> str:
    return (conformance / "spec-2.0.1-jwt-example.txt").read_text().strip()


REFUSED: dict[str, TokenFactory] = {
    "no header": lambda es_key, **_: None,
    "not a JWT": lambda es_key, **_: "not.a.jwt",
    "alg none": _unsigned,
    "HS256 with the public key text": _hs256_with_public_key,
    "tampered payload": _tampered,
    "unknown kid": lambda es_key, **_: make_token(
        SigningKey.generate("ES384"), iss=EHR, aud=SERVICE
    ),
    "jku not allowed": _foreign_jku,
    "unknown iss": lambda es_key, **_: make_token(es_key, iss="https://nope.example", aud=SERVICE),
    "aud of discovery": lambda es_key, **_: make_token(es_key, iss=EHR, aud=DISCOVERY),
    "aud of feedback": lambda es_key, **_: make_token(es_key, iss=EHR, aud=FEEDBACK),
    "aud of another service": lambda es_key, **_: make_token(es_key, iss=EHR, aud=OTHER_SERVICE),
    "aud of another host": lambda es_key, **_: make_token(
        es_key, iss=EHR, aud=SERVICE.replace(BASE, "https://other.example")
    ),
    "expired": lambda es_key, **_: make_token(
        es_key, iss=EHR, aud=SERVICE, now=time.time() - 420, lifetime=300
    ),
    "spec example, expired": _spec_example,
    "iat in the future": lambda es_key, **_: make_token(
        es_key, iss=EHR, aud=SERVICE, now=time.time() + 600
    ),
    "nbf in the future": lambda es_key, **_: make_token(
        es_key, iss=EHR, aud=SERVICE, extra_claims={"nbf": int(time.time()) + 600}
    ),
    "lifetime over an hour": lambda es_key, **_: make_token(
        es_key, iss=EHR, aud=SERVICE, lifetime=86_400
    ),
    "missing jti": lambda es_key, **_: make_token(
        es_key, iss=EHR, aud=SERVICE, drop_claims=("jti",)
    ),
}


def test_good_token_reaches_the_fhir_server_with_the_access_token(
    service, es_key, fake_fhir, hook_body, httpserver
):
    response = _post_hook(service, make_token(es_key, iss=EHR, aud=SERVICE), hook_body)

    assert response.status_code == 200
    assert httpserver.log
    bearer = f"Bearer {hook_body['fhirAuthorization']['access_token']}"
    assert set(fake_fhir.authorizations) == {bearer}


@pytest.mark.parametrize("case", list(REFUSED))
def test_bad_client_token_on_the_hook_is_401_and_fhir_receives_nothing(
    service, es_key, fake_fhir, hook_body, httpserver, case
):
    token = REFUSED[case](es_key=es_key, httpserver=httpserver, conformance=CONFORMANCE)

    assert_bare_401(_post_hook(service, token, hook_body))
    assert httpserver.log == []


def test_replayed_hook_token_is_401_and_fhir_receives_nothing_more(
    service, es_key, fake_fhir, hook_body, httpserver
):
    token = make_token(es_key, iss=EHR, aud=SERVICE)
    assert _post_hook(service, token, hook_body).status_code == 200
    calls_after_first = len(httpserver.log)
    replay_body = {**hook_body, "hookInstance": "d3f1c9b2-4a8e-4c57-9c1e-6f0e2b7a1d44"}

    assert_bare_401(_post_hook(service, token, replay_body))
    assert len(httpserver.log) == calls_after_first


def test_rs384_token_is_accepted_by_the_hook(service, rs_key, fake_fhir, hook_body):
    token = make_token(rs_key, iss=EHR, aud=[SERVICE], lifetime=900)

    assert _post_hook(service, token, hook_body).status_code == 200


@pytest.mark.parametrize("case", ["no header", "not a JWT", "aud of another service", "expired"])
def test_bad_client_token_on_discovery_is_401(service, es_key, httpserver, case):
    token = REFUSED[case](es_key=es_key, httpserver=httpserver)
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    assert_bare_401(service.get(path_of(DISCOVERY), headers=headers))


def test_discovery_token_is_accepted_at_discovery_only(service, es_key):
    token = make_token(es_key, iss=EHR, aud=DISCOVERY)
    headers = {"Authorization": f"Bearer {token}"}

    assert service.get(path_of(DISCOVERY), headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("aud", "status"), [(FEEDBACK, 200), (SERVICE, 401), (DISCOVERY, 401), (None, 401)]
)
def test_feedback_accepts_only_a_token_for_the_feedback_url(
    service, es_key, conformance_example, aud, status
):
    body = conformance_example("spec-2.0.1-feedback-overridden.json")
    headers = {}
    if aud is not None:
        headers["Authorization"] = f"Bearer {make_token(es_key, iss=EHR, aud=aud)}"

    response = service.post(path_of(FEEDBACK), json=body, headers=headers)

    assert response.status_code == status
    if status == 401:
        assert_bare_401(response)


@pytest.mark.parametrize("url", [DISCOVERY, SERVICE, FEEDBACK])
def test_browser_preflight_to_each_endpoint_is_answered_without_a_token(service, url):
    response = service.options(
        path_of(url),
        headers={
            "Origin": SANDBOX,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )

    assert response.status_code in (200, 204)
    assert response.headers["Access-Control-Allow-Origin"] == SANDBOX
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_hook_flow_at_debug_logs_neither_the_jwt_nor_the_access_token(
    service, es_key, fake_fhir, hook_body, caplog
):
    caplog.set_level("DEBUG")
    token = make_token(es_key, iss=EHR, aud=SERVICE)

    assert _post_hook(service, token, hook_body).status_code == 200
    assert_bare_401(_post_hook(service, token, hook_body))

    assert caplog.records
    for secret in (token, hook_body["fhirAuthorization"]["access_token"]):
        assert secret not in caplog.text


def test_plain_http_fhir_server_not_listed_for_development_is_412_and_receives_nothing(
    settings, es_key, fake_fhir, hook_body, httpserver
):
    production = create_app(settings.model_copy(update={"insecure_http_fhir_hosts": []}))

    response = _post_hook(
        production.test_client(), make_token(es_key, iss=EHR, aud=SERVICE), hook_body
    )

    assert response.status_code == 412
    assert response.get_json()["resourceType"] == "OperationOutcome"
    assert httpserver.log == []
