"""FhirClient: headers, paging bounds, origin checks, and the error tree at its one seam."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import pytest
import requests
import urllib3.exceptions
from pytest_httpserver import HTTPServer

from fhir_mappings.client import (
    FhirBadResponse,
    FhirClient,
    FhirError,
    FhirNotFound,
    FhirTimeout,
    FhirUnauthorized,
    FhirUnavailable,
    safe_path,
    same_origin,
    translate_exception,
)
from tests.fhir_access.conftest import (
    PATIENT_ID,
    TOKEN,
    FakeFhir,
    observation,
    outcome,
    patient_resource,
    searchset,
    slow_handler,
)

READ_TIMEOUT_WHILE_STREAMING = urllib3.exceptions.ReadTimeoutError(None, "/", "slow")
IL6_QUERY = f"Observation?patient={PATIENT_ID}&code=http://loinc.org|26881-3&_count=2"


def client_for(base_url: str, **overrides: Any) -> FhirClient:
    """A client with the test token and short limits, unless overridden."""
    options: dict[str, Any] = {"timeout": 2.0, "max_pages": 3}
    options.update(overrides)
    token = options.pop("access_token", TOKEN)
    return FhirClient(base_url, token, **options)


def il6_history(count: int) -> list[dict]:
    """`count` IL-6 results, one per hour, newest last."""
    return [
        observation(f"il6-{n}", "26881-3", 10.0 + n, f"2026-11-20T{n:02d}:00:00Z")
        for n in range(count)
    ]


class RaisingSession(requests.Session):
    """A session whose every request raises `error`, recording the keyword arguments it got."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error
        self.calls: list[dict[str, Any]] = []

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        self.calls.append({"url": url, **kwargs})
        raise self.error


def requests_exception_types() -> list[type[requests.RequestException]]:
    """Every exception class `requests` defines."""
    return [
        value
        for value in vars(requests.exceptions).values()
        if isinstance(value, type) and issubclass(value, requests.RequestException)
    ]


def make_exception(exc_type: type[BaseException]) -> BaseException:
    """An instance of `exc_type`, whatever its constructor needs."""
    try:
        return exc_type("simulated failure")
    except TypeError:
        return exc_type("simulated failure", "", 0)  # JSONDecodeError(msg, doc, pos)


def closed_port_url() -> str:
    """A loopback URL on a port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/fhir"


def test_read_sends_bearer_token_and_fhir_accept_header(fake_fhir: FakeFhir) -> None:
    with client_for(fake_fhir.base_url) as client:
        patient = client.read(f"Patient/{PATIENT_ID}")

    assert patient == patient_resource()
    request, _ = fake_fhir.server.log[0]
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Accept"] == "application/fhir+json"


def test_read_without_token_sends_no_authorization_header(fake_fhir: FakeFhir) -> None:
    with client_for(fake_fhir.base_url, access_token=None) as client:
        client.read(f"Patient/{PATIENT_ID}")

    request, _ = fake_fhir.server.log[0]
    assert "Authorization" not in request.headers


def test_read_of_unknown_resource_returns_none(fake_fhir: FakeFhir) -> None:
    with client_for(fake_fhir.base_url) as client:
        assert client.read("Patient/nobody") is None


def test_read_answering_another_resource_type_is_bad_response(fhir_server: HTTPServer) -> None:
    fhir_server.expect_request(f"/fhir/Patient/{PATIENT_ID}").respond_with_json(
        searchset([patient_resource()])
    )
    with client_for(fhir_server.url_for("/fhir")) as client, pytest.raises(FhirBadResponse):
        client.read(f"Patient/{PATIENT_ID}")


def test_search_follows_next_links_until_the_last_page(fake_fhir: FakeFhir) -> None:
    fake_fhir.observations = il6_history(5)

    with client_for(fake_fhir.base_url, max_pages=5) as client:
        found = client.search(IL6_QUERY)

    assert sorted(obs["id"] for obs in found) == sorted(obs["id"] for obs in il6_history(5))
    assert len(fake_fhir.server.log) == 3
    assert client.pages_not_followed == 0


def test_search_stops_at_max_pages_and_reads_no_further_page(fake_fhir: FakeFhir) -> None:
    fake_fhir.observations = il6_history(10)

    with client_for(fake_fhir.base_url, max_pages=3) as client:
        found = client.search(IL6_QUERY)

    assert len(fake_fhir.server.log) == 3
    assert client.pages_not_followed == 1
    newest_six = sorted(il6_history(10), key=lambda obs: obs["effectiveDateTime"])[-6:]
    assert {obs["id"] for obs in found} == {obs["id"] for obs in newest_six}


def test_search_does_not_follow_next_link_to_another_origin(
    fake_fhir: FakeFhir, other_server: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    other_server.expect_request("/fhir/Observation").respond_with_json(searchset([]))
    fake_fhir.next_base = other_server.url_for("/fhir")
    fake_fhir.observations = il6_history(4)

    with caplog.at_level(logging.WARNING), client_for(fake_fhir.base_url) as client:
        found = client.search(IL6_QUERY)

    assert len(found) == 2
    assert other_server.log == []
    assert client.pages_not_followed == 1
    assert "not following a next link outside the FHIR base URL" in caplog.text


def test_search_does_not_follow_next_link_outside_the_base_path(
    fake_fhir: FakeFhir,
) -> None:
    fake_fhir.server.expect_request("/admin/Observation").respond_with_json(searchset([]))
    fake_fhir.next_base = fake_fhir.server.url_for("/admin")
    fake_fhir.observations = il6_history(4)

    with client_for(fake_fhir.base_url) as client:
        client.search(IL6_QUERY)

    assert [request.path for request, _ in fake_fhir.server.log] == ["/fhir/Observation"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://ehr.example.org/fhir/Observation?page=2", True),
        ("https://ehr.example.org:443/fhir/Observation", True),
        ("https://EHR.example.org/fhir", True),
        ("http://ehr.example.org/fhir/Observation", False),
        ("https://ehr.example.org:8443/fhir/Observation", False),
        ("https://evil.example.org/fhir/Observation", False),
        ("https://ehr.example.org/fhirish/Observation", False),
        ("https://ehr.example.org/other/Observation", False),
        ("https://user@ehr.example.org/fhir/Observation", False),
        ("https://ehr.example.org/fhir/../admin/Observation", False),
        ("https://ehr.example.org/fhir/%2e%2e/admin/Observation", False),
    ],
)
def test_same_origin_requires_scheme_host_port_and_base_path(url: str, expected: bool) -> None:
    assert same_origin(url, "https://ehr.example.org/fhir") is expected


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (401, FhirUnauthorized),
        (403, FhirUnauthorized),
        (404, FhirNotFound),
        (400, FhirBadResponse),
        (429, FhirUnavailable),
        (500, FhirUnavailable),
        (503, FhirUnavailable),
    ],
)
def test_search_error_status_raises_its_fhir_error(
    fhir_server: HTTPServer, status: int, error_type: type[FhirError]
) -> None:
    fhir_server.expect_request("/fhir/Observation").respond_with_json({}, status=status)

    with client_for(fhir_server.url_for("/fhir")) as client, pytest.raises(error_type) as raised:
        client.search(IL6_QUERY)

    assert raised.value.status == status
    assert raised.value.path == "/fhir/Observation"


def test_redirect_is_not_followed_and_is_a_bad_response(
    fhir_server: HTTPServer, other_server: HTTPServer
) -> None:
    target = other_server.url_for("/fhir/Observation")
    fhir_server.expect_request("/fhir/Observation").respond_with_data(
        "", status=302, headers={"Location": target}
    )
    with client_for(fhir_server.url_for("/fhir")) as client, pytest.raises(FhirBadResponse):
        client.search(IL6_QUERY)

    assert other_server.log == []


@pytest.mark.parametrize(
    "body",
    ["<html>gateway error</html>", '["not", "an", "object"]', '{"resourceType": "Patient"}'],
    ids=["not-json", "json-array", "not-a-bundle"],
)
def test_search_answer_that_is_not_a_bundle_is_a_bad_response(
    fhir_server: HTTPServer, body: str
) -> None:
    fhir_server.expect_request("/fhir/Observation").respond_with_data(
        body, content_type="application/fhir+json"
    )
    with client_for(fhir_server.url_for("/fhir")) as client, pytest.raises(FhirBadResponse):
        client.search(IL6_QUERY)


def test_searchset_carrying_an_error_outcome_is_a_bad_response(
    fhir_server: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    bundle = searchset(il6_history(1))
    bundle["entry"].append({"resource": outcome("too-costly"), "search": {"mode": "outcome"}})
    fhir_server.expect_request("/fhir/Observation").respond_with_json(bundle)

    with client_for(fhir_server.url_for("/fhir")) as client, pytest.raises(FhirBadResponse):
        client.search(IL6_QUERY)

    assert "too-costly" in caplog.text


def test_searchset_carrying_an_informational_outcome_is_used(fake_fhir: FakeFhir) -> None:
    fake_fhir.observations = il6_history(1)
    fake_fhir.outcome_entry = True

    with client_for(fake_fhir.base_url) as client:
        found = client.search(IL6_QUERY)

    assert [r["resourceType"] for r in found] == ["Observation", "OperationOutcome"]


def test_server_slower_than_the_call_timeout_raises_fhir_timeout(fhir_server: HTTPServer) -> None:
    fhir_server.expect_request("/fhir/Observation").respond_with_handler(
        slow_handler(1.0, searchset([]))
    )
    client = client_for(fhir_server.url_for("/fhir"), timeout=0.2)
    with client, pytest.raises(FhirTimeout):
        client.search(IL6_QUERY)


def test_refused_connection_raises_fhir_unavailable() -> None:
    with client_for(closed_port_url()) as client, pytest.raises(FhirUnavailable):
        client.search(IL6_QUERY)


def test_passed_deadline_raises_fhir_timeout_without_calling_the_server(
    fake_fhir: FakeFhir,
) -> None:
    client = client_for(fake_fhir.base_url, deadline=time.monotonic() - 1)
    with client, pytest.raises(FhirTimeout):
        client.read(f"Patient/{PATIENT_ID}")

    assert fake_fhir.server.log == []


def test_call_timeout_is_shortened_to_what_is_left_before_the_deadline() -> None:
    session = RaisingSession(requests.ConnectionError("refused"))
    client = client_for(
        "https://ehr.example.org/fhir",
        timeout=30.0,
        deadline=time.monotonic() + 5.0,
        session=session,
    )
    with pytest.raises(FhirUnavailable):
        client.search(IL6_QUERY)

    sent = session.calls[0]
    assert 0 < sent["timeout"] <= 5.0
    assert sent["allow_redirects"] is False


@pytest.mark.parametrize("exc_type", requests_exception_types(), ids=lambda t: t.__name__)
def test_every_requests_exception_becomes_a_fhir_error(
    exc_type: type[requests.RequestException],
) -> None:
    session = RaisingSession(make_exception(exc_type))
    client = client_for("https://ehr.example.org/fhir", session=session)

    with pytest.raises(FhirError) as raised:
        client.search(IL6_QUERY)

    assert type(raised.value) is not FhirError
    assert raised.value.__cause__ is None


def test_leaked_urllib3_error_becomes_a_fhir_error() -> None:
    session = RaisingSession(urllib3.exceptions.ProtocolError("connection aborted"))
    client = client_for("https://ehr.example.org/fhir", session=session)

    with pytest.raises(FhirUnavailable):
        client.search(IL6_QUERY)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (requests.ConnectTimeout(), FhirTimeout),
        (requests.ReadTimeout(), FhirTimeout),
        (requests.ConnectionError(READ_TIMEOUT_WHILE_STREAMING), FhirTimeout),
        (requests.ConnectionError(), FhirUnavailable),
        (requests.exceptions.SSLError(), FhirUnavailable),
        (requests.TooManyRedirects(), FhirBadResponse),
        (requests.JSONDecodeError("bad", "", 0), FhirBadResponse),
    ],
    ids=lambda value: type(value).__name__,
)
def test_requests_exceptions_map_to_the_documented_branch(
    error: BaseException, expected: type[FhirError]
) -> None:
    assert type(translate_exception(error, "/fhir/Observation")) is expected


def test_translate_refuses_exceptions_that_are_not_from_requests() -> None:
    with pytest.raises(TypeError):
        translate_exception(KeyError("x"), "/fhir")


def test_absolute_or_rooted_request_paths_are_refused() -> None:
    client = client_for("https://ehr.example.org/fhir")
    for path in ("https://evil.example.org/Patient/1", "//evil.example.org/Patient/1", "/Patient"):
        with pytest.raises(ValueError):
            client.read(path)


def test_safe_path_hides_resource_ids() -> None:
    assert safe_path(f"https://ehr.example.org/fhir/Patient/{PATIENT_ID}") == "/fhir/Patient/{id}"
    assert safe_path("https://ehr.example.org/fhir/Observation?patient=1") == "/fhir/Observation"
    epic_like = "https://ehr.example.org/api/FHIR/R4/Patient/eXyZ.3"
    assert safe_path(epic_like) == "/api/FHIR/R4/Patient/{id}"


def test_token_and_patient_id_never_appear_in_errors_or_logs(
    fhir_server: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    fhir_server.expect_request(f"/fhir/Patient/{PATIENT_ID}").respond_with_json({}, status=401)
    fhir_server.expect_request("/fhir/Observation").respond_with_handler(
        slow_handler(1.0, searchset([]))
    )
    errors: list[FhirError] = []
    with caplog.at_level(logging.DEBUG):
        for base, call in [
            (fhir_server.url_for("/fhir"), lambda c: c.read(f"Patient/{PATIENT_ID}")),
            (fhir_server.url_for("/fhir"), lambda c: c.search(IL6_QUERY)),
            (closed_port_url(), lambda c: c.search(IL6_QUERY)),
        ]:
            with client_for(base, timeout=0.2) as client, pytest.raises(FhirError) as raised:
                call(client)
            errors.append(raised.value)
            assert TOKEN not in repr(client)

    assert [type(e) for e in errors] == [FhirUnauthorized, FhirTimeout, FhirUnavailable]
    for error in errors:
        assert TOKEN not in str(error) and TOKEN not in repr(error)
        assert PATIENT_ID not in str(error)
    assert TOKEN not in caplog.text
    assert PATIENT_ID in caplog.text  # the full URL is logged, but only at DEBUG
    ours = [r for r in caplog.records if r.name.startswith("fhir_mappings")]
    assert all(PATIENT_ID not in r.getMessage() for r in ours if r.levelno > logging.DEBUG)


@pytest.mark.parametrize(
    "url",
    ["http://ehr.example.org/fhir/Patient/1", "https://internal.example.org/fhir/Observation?x=1"],
)
def test_thread_session_applies_environment_proxies_and_no_proxy_like_requests(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    from fhir_mappings.client import _KeptSession

    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example.org:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.org:3129")
    monkeypatch.setenv("NO_PROXY", "internal.example.org")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/site-bundle.pem")
    kept = _KeptSession()

    expected = requests.Session().merge_environment_settings(url, {}, None, None, None)
    first = kept.merge_environment_settings(url, {}, None, None, None)
    again = kept.merge_environment_settings(url, {}, None, None, None)

    assert first == again == expected
    assert expected["verify"] == "/etc/ssl/site-bundle.pem"


def test_thread_session_is_one_per_thread_and_kept_between_calls() -> None:
    from fhir_mappings.client import thread_session

    other: list[requests.Session] = []
    thread = threading.Thread(target=lambda: other.append(thread_session()))
    thread.start()
    thread.join(timeout=10)

    assert thread_session() is thread_session()
    assert other and other[0] is not thread_session()
