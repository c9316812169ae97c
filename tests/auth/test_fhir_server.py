"""A client's access token may go only to its own https FHIR servers (http only for dev hosts)."""

from __future__ import annotations

import pytest

from cds_service.auth import UNAUTHENTICATED, CdsClient, FhirServerNotAllowed, check_fhir_server
from tests.auth.conftest import EHR, EHR_FHIR


def _client(*fhir_servers: str, tenant: str | None = None) -> CdsClient:
    return CdsClient(
        iss=EHR, tenant=tenant, jti="jti-1", fhir_servers=fhir_servers, authenticated=True
    )


@pytest.mark.parametrize(
    "fhir_server",
    [
        EHR_FHIR,
        f"{EHR_FHIR}/",
        "HTTPS://EHR.example.org/fhir",
        "https://ehr.example.org:443/fhir",
    ],
)
def test_configured_https_server_is_allowed(make_settings, fhir_server):
    check_fhir_server(_client(EHR_FHIR), fhir_server, make_settings())


@pytest.mark.parametrize(
    "fhir_server",
    [
        "https://evil.example.org/fhir",
        "https://ehr.example.org.evil.example/fhir",
        "https://ehr.example.org/fhir-other",
        "https://ehr.example.org/fhir/../admin",
        "https://ehr.example.org/",
        "https://ehr.example.org:8443/fhir",
        "https://attacker@ehr.example.org/fhir",
        "https://ehr.example.org/fhir?_format=json",
        "https://ehr.example.org/fhir#x",
        "ftp://ehr.example.org/fhir",
        "/fhir",
        "not a url",
        "https://ehr.example.org:99999/fhir",
    ],
)
def test_server_not_on_the_clients_list_is_refused(make_settings, fhir_server):
    with pytest.raises(FhirServerNotAllowed):
        check_fhir_server(_client(EHR_FHIR), fhir_server, make_settings())


def test_plain_http_is_refused_even_when_configured(make_settings):
    with pytest.raises(FhirServerNotAllowed, match="https"):
        check_fhir_server(
            _client("http://ehr.example.org/fhir"), "http://ehr.example.org/fhir", make_settings()
        )


def test_plain_http_is_allowed_for_a_listed_development_host(make_settings):
    settings = make_settings(insecure_http_fhir_hosts=["127.0.0.1"])

    check_fhir_server(_client("http://127.0.0.1:8092/fhir"), "http://127.0.0.1:8092/fhir", settings)


def test_development_host_must_still_be_on_the_clients_list(make_settings):
    settings = make_settings(insecure_http_fhir_hosts=["127.0.0.1"])

    with pytest.raises(FhirServerNotAllowed):
        check_fhir_server(_client(EHR_FHIR), "http://127.0.0.1:8092/fhir", settings)


def test_client_with_no_servers_may_send_nowhere(make_settings):
    with pytest.raises(FhirServerNotAllowed):
        check_fhir_server(_client(), EHR_FHIR, make_settings())


def test_tenant_placeholder_is_filled_from_the_verified_tenant(make_settings):
    template = "https://fhir-ehr.cerner.com/r4/{tenant}"
    client = _client(template, tenant="ec2458f2-1e24-41c8-b71b-0e701af7583d")

    check_fhir_server(
        client,
        "https://fhir-ehr.cerner.com/r4/ec2458f2-1e24-41c8-b71b-0e701af7583d",
        make_settings(),
    )
    with pytest.raises(FhirServerNotAllowed):
        check_fhir_server(client, "https://fhir-ehr.cerner.com/r4/another-tenant", make_settings())


@pytest.mark.parametrize("tenant", [None, "../admin", "a/b"])
def test_tenant_placeholder_without_a_safe_tenant_allows_nothing(make_settings, tenant):
    client = _client("https://fhir-ehr.cerner.com/r4/{tenant}", tenant=tenant)

    with pytest.raises(FhirServerNotAllowed):
        check_fhir_server(client, f"https://fhir-ehr.cerner.com/r4/{tenant}", make_settings())


def test_unauthenticated_client_is_refused_outside_development_mode(make_settings):
    settings = make_settings(insecure_http_fhir_hosts=["127.0.0.1"])

    with pytest.raises(FhirServerNotAllowed):
        check_fhir_server(UNAUTHENTICATED, "http://127.0.0.1:8092/fhir", settings)


@pytest.mark.parametrize(
    "fhir_server",
    [
        "http://127.0.0.1:8092/fhir",
        "https://localhost/fhir",
        "http://[::1]:8092/r4",
        "http://10.1.1.5/r4",
    ],
)
def test_development_mode_allows_loopback_servers(make_settings, fhir_server):
    settings = make_settings(dev_allow_unauthenticated=True, insecure_http_fhir_hosts=["10.1.1.5"])

    check_fhir_server(UNAUTHENTICATED, fhir_server, settings)


@pytest.mark.parametrize(
    "fhir_server",
    ["https://launch.smarthealthit.org/v/r4/fhir", EHR_FHIR, "http://192.168.1.20/fhir"],
)
def test_development_mode_refuses_anything_but_loopback_or_listed_http(make_settings, fhir_server):
    settings = make_settings(dev_allow_unauthenticated=True, insecure_http_fhir_hosts=["127.0.0.1"])

    with pytest.raises(FhirServerNotAllowed):
        check_fhir_server(UNAUTHENTICATED, fhir_server, settings)
