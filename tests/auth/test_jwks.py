"""Key sources per client: inline keys checked at start, remote sets cached and rate-limited."""

from __future__ import annotations

import json

import pytest
from pytest_httpserver import HTTPServer

from cds_service.auth import Authenticator
from tests.auth.conftest import EHR, SERVICE, call, client_entry
from tests.support.tokens import SigningKey, jwks, make_token

JWKS_PATH = "/.well-known/jwks.json"


def _serve(httpserver: HTTPServer, *keys: SigningKey) -> str:
    """Serve a JWK Set of `keys` at JWKS_PATH (replacing what was served) and return its URL."""
    httpserver.clear_all_handlers()
    httpserver.expect_request(JWKS_PATH).respond_with_json(jwks(*keys))
    return httpserver.url_for(JWKS_PATH)


def _fetches(httpserver: HTTPServer) -> int:
    return sum(1 for request, _ in httpserver.log if request.path == JWKS_PATH)


def test_rotated_key_is_found_by_one_refresh(probe, httpserver: HTTPServer):
    old_key, new_key = SigningKey.generate("ES384"), SigningKey.generate("ES384")
    url = _serve(httpserver, old_key)
    client = probe([client_entry(jwks_url=url)], jwks_refresh_min_interval_seconds=0)
    assert call(client, SERVICE, make_token(old_key, iss=EHR, aud=SERVICE)).status_code == 200
    _serve(httpserver, old_key, new_key)

    response = call(client, SERVICE, make_token(new_key, iss=EHR, aud=SERVICE))

    assert response.status_code == 200
    assert _fetches(httpserver) == 2


def test_unknown_kid_causes_at_most_one_refresh(probe, httpserver: HTTPServer, stranger_key):
    known = SigningKey.generate("ES384")
    url = _serve(httpserver, known)
    client = probe([client_entry(jwks_url=url)], jwks_refresh_min_interval_seconds=0)

    response = call(client, SERVICE, make_token(stranger_key, iss=EHR, aud=SERVICE))

    assert response.status_code == 401
    assert _fetches(httpserver) == 1  # the first load is already fresh: no second fetch


def test_flood_of_unknown_kids_is_limited_to_one_fetch_per_interval(probe, httpserver):
    known = SigningKey.generate("ES384")
    url = _serve(httpserver, known)
    client = probe([client_entry(jwks_url=url)], jwks_refresh_min_interval_seconds=3600)
    assert call(client, SERVICE, make_token(known, iss=EHR, aud=SERVICE)).status_code == 200

    statuses = {
        call(
            client, SERVICE, make_token(SigningKey.generate("ES384"), iss=EHR, aud=SERVICE)
        ).status_code
        for _ in range(15)
    }

    assert statuses == {401}
    assert _fetches(httpserver) <= 2


def test_key_from_an_allow_listed_jku_is_fetched_from_that_jku(probe, httpserver: HTTPServer):
    jku_key = SigningKey.generate("RS384")
    httpserver.expect_request("/org/keys").respond_with_json(jwks(jku_key))
    jku = httpserver.url_for("/org/keys")
    client = probe([client_entry(allowed_jku=["https://unused.example/keys", jku])])

    response = call(client, SERVICE, make_token(jku_key, iss=EHR, aud=SERVICE, jku=jku))

    assert response.status_code == 200
    assert [request.path for request, _ in httpserver.log] == ["/org/keys"]


def test_jku_equal_to_the_clients_jwks_url_is_accepted(probe, httpserver: HTTPServer):
    key = SigningKey.generate("ES384")
    url = _serve(httpserver, key)
    client = probe([client_entry(jwks_url=url)])

    assert call(client, SERVICE, make_token(key, iss=EHR, aud=SERVICE, jku=url)).status_code == 200


def test_jku_allowed_for_another_client_is_refused_without_a_fetch(
    probe, httpserver: HTTPServer, es_key
):
    other_key = SigningKey.generate("ES384")
    httpserver.expect_request("/other/keys").respond_with_json(jwks(other_key))
    other_jku = httpserver.url_for("/other/keys")
    client = probe(
        [
            client_entry(es_key),
            client_entry(iss="https://other-ehr.example.org", allowed_jku=[other_jku]),
        ]
    )

    response = call(client, SERVICE, make_token(other_key, iss=EHR, aud=SERVICE, jku=other_jku))

    assert response.status_code == 401
    assert httpserver.log == []


def test_token_without_jku_for_a_jku_only_client_is_refused(probe, httpserver: HTTPServer):
    key = SigningKey.generate("ES384")
    httpserver.expect_request("/org/keys").respond_with_json(jwks(key))
    client = probe([client_entry(allowed_jku=[httpserver.url_for("/org/keys")])])

    assert call(client, SERVICE, make_token(key, iss=EHR, aud=SERVICE)).status_code == 401
    assert httpserver.log == []


@pytest.mark.parametrize(
    "respond",
    [
        lambda handler: handler.respond_with_data("oops", status=500),
        lambda handler: handler.respond_with_data("<html>not json</html>"),
        lambda handler: handler.respond_with_json({"keys": []}),
        lambda handler: handler.respond_with_json(["not", "an", "object"]),
    ],
)
def test_unusable_jwks_response_is_a_401_not_a_crash(probe, httpserver: HTTPServer, respond):
    key = SigningKey.generate("ES384")
    respond(httpserver.expect_request(JWKS_PATH))
    client = probe([client_entry(jwks_url=httpserver.url_for(JWKS_PATH))])

    assert call(client, SERVICE, make_token(key, iss=EHR, aud=SERVICE)).status_code == 401


def test_unreachable_jwks_url_is_a_401(probe):
    key = SigningKey.generate("ES384")
    client = probe([client_entry(jwks_url="http://127.0.0.1:9/jwks.json")])

    assert call(client, SERVICE, make_token(key, iss=EHR, aud=SERVICE)).status_code == 401


@pytest.mark.parametrize(
    "inline",
    ["not json", json.dumps({"keys": []}), json.dumps({"keys": [{"kty": "EC"}]}), "[]"],
)
def test_unusable_inline_jwks_fails_at_start(make_settings, inline):
    settings = make_settings([{"iss": EHR, "jwks": inline}])

    with pytest.raises(ValueError, match="inline jwks"):
        Authenticator(settings)


def test_client_configured_twice_fails_at_start(make_settings, es_key):
    settings = make_settings([client_entry(es_key), client_entry(es_key)])

    with pytest.raises(ValueError, match="configured twice"):
        Authenticator(settings)


def test_remote_keys_are_not_fetched_at_start(make_settings, httpserver: HTTPServer):
    url = _serve(httpserver, SigningKey.generate("ES384"))

    Authenticator(make_settings([client_entry(jwks_url=url)]))

    assert httpserver.log == []
