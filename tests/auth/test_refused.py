"""Every malformed, forged, misdirected, stale or replayed client token gets a bare 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from pytest_httpserver import HTTPServer

from cds_service.jwks import RemoteKeySet
from tests.auth.conftest import (
    BASE,
    DISCOVERY,
    EHR,
    FEEDBACK,
    OTHER_SERVICE,
    SERVICE,
    call,
    client_entry,
)
from tests.support.leak_guard import register_secret
from tests.support.tokens import SigningKey, jwks, make_token


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value).encode())


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": EHR, "aud": SERVICE, "iat": now, "exp": now + 300, "jti": f"jti-{now}-x"}
    claims.update(overrides)
    return claims


def assert_bare_401(response: Any) -> None:
    """401, an empty body, and a Bearer challenge."""
    assert response.status_code == 401
    assert response.get_data() == b""
    assert response.headers["WWW-Authenticate"] == "Bearer"


def refusal_reasons(caplog: pytest.LogCaptureFixture) -> str:
    """The refusal lines the authenticator logged during this test."""
    return "\n".join(
        record.getMessage()
        for record in caplog.records
        if record.name == "cds_service.auth" and "refused" in record.getMessage()
    )


@pytest.mark.parametrize("endpoint", [DISCOVERY, SERVICE, FEEDBACK])
def test_missing_authorization_header_is_refused_at_every_endpoint(probe, endpoint, caplog):
    assert_bare_401(call(probe(), endpoint, None))
    assert "no Authorization header" in refusal_reasons(caplog)


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer  ", "Bearer a b"])
def test_authorization_that_is_not_one_bearer_token_is_refused(probe, header):
    response = probe().post("/cds-services/picu-immune-endotype", headers={"Authorization": header})

    assert_bare_401(response)


def test_bearer_value_that_is_not_a_jwt_is_refused(probe, caplog):
    assert_bare_401(call(probe(), SERVICE, "not.a.jwt"))
    assert "not a JWT" in refusal_reasons(caplog)


def test_unsigned_alg_none_token_is_refused(probe, es_key, caplog):
    header = {"alg": "none", "typ": "JWT", "kid": es_key.kid}
    token = register_secret(f"{_segment(header)}.{_segment(_claims())}.")

    assert_bare_401(call(probe(), SERVICE, token))
    assert "alg 'none' is not allowed" in refusal_reasons(caplog)


def test_hs256_signed_with_the_public_key_text_is_refused(probe, es_key, caplog):
    public_pem = es_key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{_segment({'alg': 'HS256', 'typ': 'JWT', 'kid': es_key.kid})}."
    signing_input += _segment(_claims())
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    token = register_secret(f"{signing_input}.{_b64(signature)}")

    assert_bare_401(call(probe(), SERVICE, token))
    assert "alg 'HS256' is not allowed" in refusal_reasons(caplog)


def test_trusted_key_with_an_algorithm_off_the_allow_list_is_refused(probe, rs_key, caplog):
    claims = _claims()
    token = register_secret(
        jwt.encode(claims, rs_key.private_key, algorithm="RS256", headers={"kid": rs_key.kid})
    )

    assert_bare_401(call(probe(), SERVICE, token))
    assert "alg 'RS256' is not allowed" in refusal_reasons(caplog)


def test_tampered_payload_is_refused(probe, es_key, caplog):
    header, _, signature = make_token(es_key, iss=EHR, aud=DISCOVERY).split(".")
    forged = register_secret(f"{header}.{_segment(_claims())}.{signature}")

    assert_bare_401(call(probe(), SERVICE, forged))
    assert "InvalidSignatureError" in refusal_reasons(caplog)


def test_token_signed_by_an_untrusted_key_under_a_trusted_kid_is_refused(
    probe, es_key, stranger_key
):
    impostor = SigningKey(alg="ES384", kid=es_key.kid, private_key=stranger_key.private_key)
    token = make_token(impostor, iss=EHR, aud=SERVICE)

    assert_bare_401(call(probe(), SERVICE, token))


def test_es384_header_over_an_rsa_kid_is_refused(probe, es_key, rs_key):
    mismatched = SigningKey(alg="ES384", kid=rs_key.kid, private_key=es_key.private_key)
    token = make_token(mismatched, iss=EHR, aud=SERVICE)

    assert_bare_401(call(probe(), SERVICE, token))


def test_unknown_kid_is_refused(probe, stranger_key, caplog):
    token = make_token(stranger_key, iss=EHR, aud=SERVICE)

    assert_bare_401(call(probe(), SERVICE, token))
    assert "no configured key matches the kid" in refusal_reasons(caplog)


def test_jku_off_the_allow_list_is_refused_without_fetching_it(
    probe, httpserver: HTTPServer, es_key, caplog
):
    attacker_key = SigningKey.generate("ES384")
    httpserver.expect_request("/attacker/jwks.json").respond_with_json(jwks(attacker_key))
    client = probe([client_entry(es_key, allowed_jku=["https://ehr.example.org/jwks.json"])])
    token = make_token(
        attacker_key, iss=EHR, aud=SERVICE, jku=httpserver.url_for("/attacker/jwks.json")
    )

    assert_bare_401(call(client, SERVICE, token))
    assert httpserver.log == []
    assert "jku is not allow-listed" in refusal_reasons(caplog)


def test_unknown_iss_signed_with_a_trusted_key_is_refused(probe, es_key, caplog):
    token = make_token(es_key, iss="https://unknown-ehr.example.org", aud=SERVICE)

    assert_bare_401(call(probe(), SERVICE, token))
    assert "is not a configured client" in refusal_reasons(caplog)


@pytest.mark.parametrize(
    ("aud", "endpoint"),
    [
        (DISCOVERY, SERVICE),
        ("https://other.example/cds-services/picu-immune-endotype", SERVICE),
        (SERVICE, FEEDBACK),
        (FEEDBACK, SERVICE),
        (OTHER_SERVICE, SERVICE),
        (SERVICE, DISCOVERY),
        ([DISCOVERY, OTHER_SERVICE], SERVICE),
        (f"{SERVICE}/", SERVICE),
    ],
)
def test_token_for_another_endpoint_is_refused(probe, es_key, aud, endpoint, caplog):
    token = make_token(es_key, iss=EHR, aud=aud)

    assert_bare_401(call(probe(), endpoint, token))
    assert "does not match" in refusal_reasons(caplog)


def test_aud_built_from_the_request_host_is_not_trusted(probe, es_key):
    token = make_token(es_key, iss=EHR, aud="http://localhost/cds-services/picu-immune-endotype")

    assert_bare_401(call(probe(), SERVICE, token))
    assert BASE != "http://localhost"


def test_token_expired_beyond_the_leeway_is_refused(probe, es_key, caplog):
    token = make_token(es_key, iss=EHR, aud=SERVICE, now=time.time() - 420, lifetime=300)

    assert_bare_401(call(probe(), SERVICE, token))
    assert "ExpiredSignatureError" in refusal_reasons(caplog)


def test_spec_example_token_validly_signed_but_expired_is_refused(
    probe, conformance_example, monkeypatch, caplog
):
    example = conformance_example("spec-2.0.1-jwt-example.txt").strip()
    public_jwks = conformance_example("spec-2.0.1-jwks-public.json")
    spec_endpoint = f"{BASE}/cds-services/some-service"
    jku = jwt.get_unverified_header(example)["jku"]
    spec_key = jwt.PyJWK(public_jwks["keys"][0]).key
    unexpired = {"verify_exp": False}
    assert jwt.decode(
        example, spec_key, algorithms=["ES384"], audience=spec_endpoint, options=unexpired
    )["jti"]
    monkeypatch.setattr(RemoteKeySet, "_download", lambda self: {jku: public_jwks}[self.url])
    client = probe([{"iss": "https://fhir-ehr.example.com/", "allowed_jku": [jku]}])

    response = call(client, spec_endpoint, example)

    assert_bare_401(response)
    assert "ExpiredSignatureError" in refusal_reasons(caplog)


def test_token_issued_in_the_future_is_refused(probe, es_key, caplog):
    token = make_token(es_key, iss=EHR, aud=SERVICE, now=time.time() + 600)

    assert_bare_401(call(probe(), SERVICE, token))
    assert "ImmatureSignatureError" in refusal_reasons(caplog)


def test_token_not_yet_valid_by_nbf_is_refused(probe, es_key, caplog):
    token = make_token(es_key, iss=EHR, aud=SERVICE, extra_claims={"nbf": int(time.time()) + 600})

    assert_bare_401(call(probe(), SERVICE, token))
    assert "ImmatureSignatureError" in refusal_reasons(caplog)


@pytest.mark.parametrize("lifetime", [3601 + 60, 86_400])
def test_lifetime_over_one_hour_is_refused(probe, es_key, lifetime, caplog):
    token = make_token(es_key, iss=EHR, aud=SERVICE, lifetime=lifetime)

    assert_bare_401(call(probe(), SERVICE, token))
    assert "exceeds the maximum" in refusal_reasons(caplog)


@pytest.mark.parametrize("claim", ["jti", "exp", "iat", "aud", "iss"])
def test_token_missing_a_required_claim_is_refused(probe, es_key, claim):
    token = make_token(es_key, iss=EHR, aud=SERVICE, drop_claims=(claim,))

    assert_bare_401(call(probe(), SERVICE, token))


@pytest.mark.parametrize("jti", ["", 42])
def test_jti_that_is_not_a_non_empty_string_is_refused(probe, es_key, jti):
    token = make_token(es_key, iss=EHR, aud=SERVICE, extra_claims={"jti": jti})

    assert_bare_401(call(probe(), SERVICE, token))


def test_replayed_token_is_refused_after_first_use(probe, es_key, caplog):
    client = probe()
    token = make_token(es_key, iss=EHR, aud=SERVICE)

    first = call(client, SERVICE, token)
    second = call(client, SERVICE, token)

    assert first.status_code == 200
    assert_bare_401(second)
    assert "replayed" in refusal_reasons(caplog)


def test_reused_jti_in_a_fresh_token_is_refused(probe, es_key):
    client = probe()
    first = make_token(es_key, iss=EHR, aud=SERVICE, extra_claims={"jti": "same-jti-twice"})
    second = make_token(es_key, iss=EHR, aud=FEEDBACK, extra_claims={"jti": "same-jti-twice"})

    assert call(client, SERVICE, first).status_code == 200
    assert_bare_401(call(client, FEEDBACK, second))


def test_refused_token_does_not_use_up_its_jti(probe, es_key):
    client = probe()
    misdirected = make_token(es_key, iss=EHR, aud=DISCOVERY, extra_claims={"jti": "kept-jti"})
    good = make_token(es_key, iss=EHR, aud=SERVICE, extra_claims={"jti": "kept-jti"})

    assert_bare_401(call(client, SERVICE, misdirected))
    assert call(client, SERVICE, good).status_code == 200


def test_tenant_off_the_allow_list_is_refused(probe, es_key, caplog):
    client = probe([client_entry(es_key, tenants=["picu-a"])])
    token = make_token(es_key, iss=EHR, aud=SERVICE, extra_claims={"tenant": "adult-icu"})

    assert_bare_401(call(client, SERVICE, token))
    assert "tenant 'adult-icu' is not allowed" in refusal_reasons(caplog)


def test_missing_tenant_is_refused_when_required(probe, es_key, caplog):
    client = probe([client_entry(es_key, tenants=["picu-a"], tenant_required=True)])
    token = make_token(es_key, iss=EHR, aud=SERVICE)

    assert_bare_401(call(client, SERVICE, token))
    assert "tenant claim required" in refusal_reasons(caplog)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"kid": ""}, "kid missing"),
        ({"typ": None}, "typ None is not JWT"),
        ({"typ": "at+jwt"}, "typ 'at+jwt' is not JWT"),
    ],
)
def test_header_without_kid_or_jwt_typ_is_refused(probe, es_key, headers, reason, caplog):
    token = make_token(es_key, iss=EHR, aud=SERVICE, headers=headers)

    assert_bare_401(call(probe(), SERVICE, token))
    assert reason in refusal_reasons(caplog)


def test_header_with_no_kid_at_all_is_refused(probe, es_key, caplog):
    token = register_secret(jwt.encode(_claims(), es_key.private_key, algorithm="ES384"))

    assert_bare_401(call(probe(), SERVICE, token))
    assert "kid missing" in refusal_reasons(caplog)


def test_refusal_is_logged_without_the_token(probe, es_key, caplog):
    token = make_token(es_key, iss=EHR, aud=DISCOVERY)

    call(probe(), SERVICE, token)

    assert refusal_reasons(caplog)
    assert token not in caplog.text
    assert token.split(".")[2] not in caplog.text


def test_control_characters_in_the_called_path_cannot_forge_log_lines(probe, caplog):
    probe().post("/cds-services/x%0AINFO%20forged", headers={"Authorization": "Bearer x"})

    assert "\nINFO forged" not in refusal_reasons(caplog)
    assert "\\nINFO forged" in refusal_reasons(caplog)
