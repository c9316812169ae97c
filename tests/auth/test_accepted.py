"""Tokens shaped like real CDS clients' are accepted and yield the right CdsClient."""

from __future__ import annotations

import json
import time

import pytest
from pytest_httpserver import HTTPServer

from tests.auth.conftest import (
    DISCOVERY,
    EHR,
    EHR_FHIR,
    FEEDBACK,
    SERVICE,
    call,
    client_entry,
)
from tests.support.tokens import SigningKey, jwks, make_token

SANDBOX_ISS = "https://sandbox.cds-hooks.org"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
@pytest.mark.parametrize("endpoint", [DISCOVERY, SERVICE, FEEDBACK])
def test_inline_key_token_for_each_endpoint_is_accepted(probe, es_key, rs_key, alg, endpoint):
    key = es_key if alg == "ES384" else rs_key
    token = make_token(key, iss=EHR, aud=endpoint)

    response = call(probe(), endpoint, token)

    assert response.status_code == 200
    body = response.get_json()
    assert body["iss"] == EHR
    assert body["authenticated"] is True
    assert body["jti"]
    assert body["fhir_servers"] == [EHR_FHIR]


def test_aud_as_array_containing_the_endpoint_is_accepted(probe, es_key):
    token = make_token(es_key, iss=EHR, aud=[SERVICE])

    assert call(probe(), SERVICE, token).status_code == 200


def test_returned_jti_is_the_tokens_jti(probe, es_key):
    token = make_token(es_key, iss=EHR, aud=SERVICE, extra_claims={"jti": "jti-returned-1"})

    assert call(probe(), SERVICE, token).get_json()["jti"] == "jti-returned-1"


def test_epic_shaped_rs384_token_with_allow_listed_jku_is_accepted(probe, httpserver: HTTPServer):
    epic_key = SigningKey.generate("RS384")
    jku = httpserver.url_for("/api/epic/2019/Security/Open/PublicKeys/530013/530013")
    httpserver.expect_request(
        "/api/epic/2019/Security/Open/PublicKeys/530013/530013"
    ).respond_with_json(jwks(epic_key))
    epic_iss = "https://fhir.epic-customer.example/interconnect-fhir-oauth/api/FHIR/R4"
    client = probe([client_entry(iss=epic_iss, allowed_jku=[jku])])
    issued = int(time.time())
    token = make_token(
        epic_key,
        iss=epic_iss,
        aud=SERVICE,
        lifetime=900,
        jku=jku,
        now=issued,
        extra_claims={"sub": "epic-cds-client-id", "nbf": issued - 300},
    )

    response = call(client, SERVICE, token)

    assert response.status_code == 200
    assert response.get_json()["iss"] == epic_iss
    assert len(httpserver.log) == 1


def test_sandbox_shaped_es384_token_is_accepted(probe):
    lab_key = SigningKey.generate("ES384", kid=SANDBOX_KID)
    client = probe([client_entry(lab_key, iss=SANDBOX_ISS, fhir_servers=[])])
    token = make_token(lab_key, iss=SANDBOX_ISS, aud=SERVICE, lifetime=300)

    response = call(client, SERVICE, token)

    assert response.status_code == 200
    assert response.get_json()["iss"] == SANDBOX_ISS


def test_real_sandbox_jwks_is_a_valid_inline_key_set(make_settings, conformance_example):
    from cds_service.auth import Authenticator

    sandbox_jwks = json.dumps(conformance_example("sandbox-jwks.json"))
    settings = make_settings([{"iss": SANDBOX_ISS, "jwks": sandbox_jwks}])

    keys = Authenticator(settings).clients[SANDBOX_ISS][1]

    assert keys.signing_key(SANDBOX_KID, None).key_id == SANDBOX_KID


def test_key_fetched_from_jwks_url_is_accepted(probe, httpserver: HTTPServer, es_key):
    httpserver.expect_request("/.well-known/jwks.json").respond_with_json(jwks(es_key))
    client = probe([client_entry(jwks_url=httpserver.url_for("/.well-known/jwks.json"))])
    token = make_token(es_key, iss=EHR, aud=SERVICE)

    assert call(client, SERVICE, token).status_code == 200
    assert len(httpserver.log) == 1


def test_jwks_url_is_fetched_once_for_many_tokens(probe, httpserver: HTTPServer, es_key):
    httpserver.expect_request("/.well-known/jwks.json").respond_with_json(jwks(es_key))
    client = probe([client_entry(jwks_url=httpserver.url_for("/.well-known/jwks.json"))])

    statuses = [
        call(client, SERVICE, make_token(es_key, iss=EHR, aud=SERVICE)).status_code
        for _ in range(5)
    ]

    assert statuses == [200] * 5
    assert len(httpserver.log) == 1


def test_allowed_tenant_is_accepted_and_returned(probe, es_key):
    client = probe([client_entry(es_key, tenants=["picu-a", "picu-b"])])
    token = make_token(es_key, iss=EHR, aud=SERVICE, extra_claims={"tenant": "picu-b"})

    response = call(client, SERVICE, token)

    assert response.status_code == 200
    assert response.get_json()["tenant"] == "picu-b"


def test_token_without_tenant_is_accepted_when_tenant_not_required(probe, es_key):
    client = probe([client_entry(es_key, tenants=["picu-a"])])
    token = make_token(es_key, iss=EHR, aud=SERVICE)

    response = call(client, SERVICE, token)

    assert response.status_code == 200
    assert response.get_json()["tenant"] is None


def test_any_tenant_is_accepted_when_no_tenants_are_configured(probe, es_key):
    token = make_token(es_key, iss=EHR, aud=SERVICE, extra_claims={"tenant": "whatever-site"})

    assert call(probe(), SERVICE, token).get_json()["tenant"] == "whatever-site"


def test_token_issued_just_inside_the_leeway_is_accepted(probe, es_key):
    token = make_token(es_key, iss=EHR, aud=SERVICE, now=time.time() + 30)

    assert call(probe(), SERVICE, token).status_code == 200


def test_lifetime_of_exactly_the_maximum_is_accepted(probe, es_key):
    token = make_token(es_key, iss=EHR, aud=SERVICE, lifetime=3600)

    assert call(probe(), SERVICE, token).status_code == 200
