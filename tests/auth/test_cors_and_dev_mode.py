"""CORS for allow-listed browser origins only; unauthenticated mode only on loopback, loudly."""

from __future__ import annotations

import logging

import pytest
from flask import Flask

from cds_service import auth
from cds_service.auth import DevModeNotAllowed, assert_dev_mode_safe
from tests.auth.conftest import DISCOVERY, EHR, SERVICE, call, probe_app
from tests.support.tokens import make_token

SANDBOX = "https://sandbox.cds-hooks.org"
PREFLIGHT = {"Origin": SANDBOX, "Access-Control-Request-Method": "POST"}


def _cors_probe(probe):
    return probe(cors_allowed_origins=[SANDBOX])


def test_preflight_from_an_allowed_origin_needs_no_token(probe):
    response = _cors_probe(probe).options(
        "/cds-services/picu-immune-endotype",
        headers={**PREFLIGHT, "Access-Control-Request-Headers": "authorization, content-type"},
    )

    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == SANDBOX
    methods = {m.strip() for m in response.headers["Access-Control-Allow-Methods"].split(",")}
    assert methods == {"GET", "POST", "OPTIONS"}
    allowed = {
        h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")
    }
    assert {"authorization", "content-type"} <= allowed
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert "Origin" in response.headers["Vary"]


def test_preflight_from_another_origin_gets_no_cors_grant(probe):
    response = _cors_probe(probe).options(
        "/cds-services", headers={**PREFLIGHT, "Origin": "https://evil.example"}
    )

    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Methods" not in response.headers


def test_preflight_for_an_unknown_path_is_not_answered_as_cors(probe):
    response = _cors_probe(probe).options("/no-such-path", headers=PREFLIGHT)

    assert response.status_code == 404


@pytest.mark.parametrize("origin", [SANDBOX, "https://evil.example", None])
def test_refusal_carries_cors_headers_only_for_allowed_origins(probe, origin):
    headers = {"Origin": origin} if origin else {}
    response = _cors_probe(probe).get("/cds-services", headers=headers)

    assert response.status_code == 401
    granted = response.headers.get("Access-Control-Allow-Origin")
    assert granted == (SANDBOX if origin == SANDBOX else None)
    assert granted != "*"


def test_authenticated_response_to_an_allowed_origin_names_that_origin(probe, es_key):
    client = _cors_probe(probe)
    token = make_token(es_key, iss=EHR, aud=DISCOVERY)

    response = client.get(
        "/cds-services", headers={"Origin": SANDBOX, "Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == SANDBOX


def test_no_origin_is_allowed_by_default(probe):
    response = probe().options("/cds-services", headers=PREFLIGHT)

    assert "Access-Control-Allow-Origin" not in response.headers


def test_default_settings_never_accept_unauthenticated_calls(probe):
    assert call(probe(), SERVICE, None).status_code == 401


def test_development_mode_accepts_calls_without_a_token(probe):
    response = call(probe(dev_allow_unauthenticated=True), SERVICE, None)

    assert response.status_code == 200
    assert response.get_json() == {
        "iss": None,
        "tenant": None,
        "jti": None,
        "fhir_servers": [],
        "authenticated": False,
    }


def test_development_mode_warns_at_every_start(make_settings, caplog):
    settings = make_settings(dev_allow_unauthenticated=True)

    for _ in range(2):
        auth.init_app(Flask("dev"), settings)

    warnings = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and "DEVELOPMENT MODE" in r.message
    ]
    assert len(warnings) == 2


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "cds.example.org"])
def test_development_mode_refuses_to_bind_beyond_loopback(make_settings, host, caplog):
    settings = make_settings(dev_allow_unauthenticated=True)

    with pytest.raises(DevModeNotAllowed):
        assert_dev_mode_safe(settings, host)
    assert any(r.levelno == logging.ERROR for r in caplog.records)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.5"])
def test_development_mode_may_bind_to_loopback(make_settings, host):
    assert_dev_mode_safe(make_settings(dev_allow_unauthenticated=True), host)


def test_app_with_development_mode_and_a_public_host_fails_at_start(make_settings):
    settings = make_settings(dev_allow_unauthenticated=True, host="0.0.0.0")

    with pytest.raises(DevModeNotAllowed):
        probe_app(settings)


def test_public_host_is_fine_without_development_mode(make_settings, caplog):
    assert_dev_mode_safe(make_settings(host="0.0.0.0"), "0.0.0.0")

    assert not [r for r in caplog.records if "DEVELOPMENT MODE" in r.getMessage()]


def test_start_without_any_client_warns_that_every_call_will_be_refused(make_settings, caplog):
    probe_app(make_settings(clients=[]))

    assert "no CDS clients are configured" in caplog.text


def test_start_names_the_trusted_issuers(make_settings, caplog):
    probe_app(make_settings())

    assert f"trusted CDS clients: {EHR}" in caplog.text
