"""Key-set fetches are bounded in time and size, and configured keys win over a token's `jku`."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from pytest_httpserver import HTTPServer

from tests.auth.conftest import EHR, SERVICE, call, client_entry
from tests.support.hostile_fhir import Fault, HostileFhir
from tests.support.memory import rss_growth
from tests.support.tokens import SigningKey, jwks, make_token

JWKS_TIMEOUT = 1.0
SLACK = 2.0  # generous: proves the answer is bounded, not that it is fast


@pytest.fixture
def hostile_jwks() -> Iterator[HostileFhir]:
    """A JWKS endpoint that drips its reply one byte per 50 ms."""
    server = HostileFhir(Fault.DRIP, interval=0.05, fault_jwks=True).start()
    yield server
    server.stop()


def refusal_reasons(caplog: pytest.LogCaptureFixture) -> str:
    return " ".join(r.getMessage() for r in caplog.records if "refused" in r.getMessage())


def test_a_dripping_jwks_url_is_cut_off_at_the_total_time_limit(
    probe, hostile_jwks: HostileFhir, caplog: pytest.LogCaptureFixture
):
    key = SigningKey.generate("ES384")
    client = probe(
        [client_entry(jwks_url=hostile_jwks.jwks_url)],
        limits={"jwks_timeout_seconds": JWKS_TIMEOUT},
    )

    started = time.monotonic()
    response = call(client, SERVICE, make_token(key, iss=EHR, aud=SERVICE))

    assert response.status_code == 401
    assert time.monotonic() - started < JWKS_TIMEOUT + SLACK
    assert hostile_jwks.wait_until_idle(timeout=SLACK), "the dripping connection was closed"
    assert "not fetched within the time limit" in refusal_reasons(caplog)


def test_concurrent_calls_on_a_dripping_jwks_url_are_all_answered_in_bounded_time(
    probe, hostile_jwks: HostileFhir
):
    client = probe(
        [client_entry(jwks_url=hostile_jwks.jwks_url)],
        limits={"jwks_timeout_seconds": JWKS_TIMEOUT},
    )
    tokens = [make_token(SigningKey.generate("ES384"), iss=EHR, aud=SERVICE) for _ in range(4)]
    statuses: list[int] = []

    def one(token: str) -> None:
        statuses.append(call(client, SERVICE, token).status_code)

    started = time.monotonic()
    threads = [threading.Thread(target=one, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert statuses == [401, 401, 401, 401]
    # one fetch runs to its limit; the others wait for it at most that long, then fail fast
    assert time.monotonic() - started < 2 * JWKS_TIMEOUT + SLACK
    assert len(hostile_jwks.requests) == 1, "a failed fetch is not retried at once"


@pytest.mark.parametrize("fault", [Fault.GZIP_BOMB, Fault.OVERSIZED])
def test_an_oversized_key_set_is_refused_at_the_cap(probe, fault: Fault, caplog):
    with HostileFhir(fault, size=100 * 1024 * 1024, fault_jwks=True) as server:
        server.prepare()
        client = probe([client_entry(jwks_url=server.jwks_url)])
        token = make_token(SigningKey.generate("ES384"), iss=EHR, aud=SERVICE)

        with rss_growth() as growth:
            response = call(client, SERVICE, token)

    assert response.status_code == 401
    assert growth.grown_mib < 50
    assert f"larger than {256 * 1024} bytes" in refusal_reasons(caplog)


def test_an_inline_key_is_used_although_the_token_names_a_jku(
    probe, hostile_jwks: HostileFhir, es_key: SigningKey
):
    client = probe([client_entry(es_key, allowed_jku=[hostile_jwks.jwks_url])])
    token = make_token(es_key, iss=EHR, aud=SERVICE, jku=hostile_jwks.jwks_url)

    assert call(client, SERVICE, token).status_code == 200
    assert hostile_jwks.requests == [], "no fetch when a configured key matches the kid"


def test_a_jku_off_the_allow_list_is_ignored_when_the_jwks_url_holds_the_key(
    probe, httpserver: HTTPServer
):
    key = SigningKey.generate("ES384")
    httpserver.expect_request("/.well-known/jwks.json").respond_with_json(jwks(key))
    httpserver.expect_request("/attacker/jwks.json").respond_with_json(jwks(key))
    client = probe([client_entry(jwks_url=httpserver.url_for("/.well-known/jwks.json"))])
    token = make_token(key, iss=EHR, aud=SERVICE, jku=httpserver.url_for("/attacker/jwks.json"))

    assert call(client, SERVICE, token).status_code == 200
    assert [request.path for request, _ in httpserver.log] == ["/.well-known/jwks.json"]


def test_a_failed_jku_fetch_falls_back_to_the_jwks_url(probe, httpserver: HTTPServer):
    key = SigningKey.generate("ES384")
    httpserver.expect_request("/jwks.json").respond_with_json(jwks(key))
    httpserver.expect_request("/jku-down").respond_with_data("down", status=503)
    jku = httpserver.url_for("/jku-down")
    client = probe([client_entry(jwks_url=httpserver.url_for("/jwks.json"), allowed_jku=[jku])])

    response = call(client, SERVICE, make_token(key, iss=EHR, aud=SERVICE, jku=jku))

    assert response.status_code == 200
    assert [request.path for request, _ in httpserver.log] == ["/jku-down", "/jwks.json"]


def test_a_key_cached_from_the_jwks_url_serves_a_token_naming_another_allowed_jku(
    probe, httpserver: HTTPServer
):
    key = SigningKey.generate("ES384")
    httpserver.expect_request("/jwks.json").respond_with_json(jwks(key))
    jku = httpserver.url_for("/other-keys")
    client = probe([client_entry(jwks_url=httpserver.url_for("/jwks.json"), allowed_jku=[jku])])
    assert call(client, SERVICE, make_token(key, iss=EHR, aud=SERVICE)).status_code == 200

    response = call(client, SERVICE, make_token(key, iss=EHR, aud=SERVICE, jku=jku))

    assert response.status_code == 200
    assert [request.path for request, _ in httpserver.log] == ["/jwks.json"]
