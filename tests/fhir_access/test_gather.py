"""gather_patient_data: the decision table applied to every key, parallel queries, 412 cases."""

from __future__ import annotations

import http.server
import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from fhir_mappings.client import FhirClient
from fhir_mappings.config import FhirSettings
from fhir_mappings.gather import DataUnavailable, FhirAccess, PatientData, gather_patient_data
from fhir_mappings.panel import Panel
from fhir_mappings.prefetch import MalformedPrefetch, fill_template, prefetch_templates
from tests.fhir_access.conftest import (
    PATIENT_ID,
    TOKEN,
    FakeFhir,
    analyte_templates,
    observation,
    outcome,
    patient_resource,
    searchset,
)

CONTEXT = {"patientId": PATIENT_ID, "userId": "Practitioner/dr-7"}
SMALL_PANEL = ("il6", "ferritin", "crp")


def server_observations() -> list[dict]:
    """A few results of three analytes, one of another patient, and one without an id."""
    return [
        observation("il6-1", "26881-3", 120.0, "2026-11-20T06:00:00Z"),
        observation("il6-2", "26881-3", 95.0, "2026-11-20T12:00:00Z"),
        observation("il6-3", "26881-3", 60.0, "2026-11-21T06:00:00Z"),
        observation("fer-1", "2276-4", 2400.0, "2026-11-20T07:00:00Z"),
        observation("fer-2", "20567-4", 3100.0, "2026-11-21T07:00:00Z"),
        observation("crp-1", "1988-5", 80.0, "2026-11-21T05:00:00Z"),
        observation("il6-x", "26881-3", 9.0, "2026-11-21T05:00:00Z", patient="someone-else"),
    ]


def ids(data: PatientData) -> set[str]:
    """The ids of the gathered Observations."""
    return {obs["id"] for obs in data.observations}


def requested_codes(server: HTTPServer) -> list[str]:
    """The `code` parameter of every Observation search the server answered."""
    return [r.args["code"] for r, _ in server.log if r.path.endswith("/Observation")]


def first_page_prefetch(fake: FakeFhir, templates: dict[str, str]) -> dict[str, Any]:
    """The prefetch an EHR would send: exactly what the server answers to each filled template."""
    prefetch: dict[str, Any] = {}
    for key, template in templates.items():
        filled = fill_template(template, CONTEXT)
        if "?" in filled:
            prefetch[key] = fake.search_bundle(dict(parse_qsl(filled.partition("?")[2])))
        else:
            prefetch[key] = fake.patients.get(filled.rsplit("/", 1)[-1])
    return prefetch


@pytest.fixture
def small_templates(panel: Panel) -> dict[str, str]:
    """Templates for the patient and three analytes, with pages big enough for one page each."""
    templates = analyte_templates(panel, page_size=50)
    return {key: templates[key] for key in ("patient", *SMALL_PANEL)}


@pytest.fixture
def access(fake_fhir: FakeFhir) -> FhirAccess:
    """Access to the fake FHIR server with the test token."""
    return FhirAccess(fake_fhir.base_url, TOKEN)


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at teardown, so handlers that hold a request open let go quickly."""
    event = threading.Event()
    yield event
    event.set()


def holding_handler(release: threading.Event, arrivals: list[str]) -> Callable[..., Response]:
    """A handler that records each request on arrival, then holds it open for up to 2 s."""
    lock = threading.Lock()

    def handle(request: Request) -> Response:
        with lock:
            arrivals.append(request.full_path)
        release.wait(2.0)
        return Response(json.dumps(searchset([])), content_type="application/fhir+json")

    return handle


def test_absent_prefetch_queries_every_key_with_the_bearer_token(
    fake_fhir: FakeFhir,
    access: FhirAccess,
    small_templates: dict[str, str],
    fhir_settings: FhirSettings,
) -> None:
    fake_fhir.observations = server_observations()

    data = gather_patient_data(None, CONTEXT, small_templates, access, fhir_settings)

    assert data.patient == patient_resource()
    assert ids(data) == {"il6-1", "il6-2", "il6-3", "fer-1", "fer-2", "crp-1"}
    assert data.sources == {key: "query" for key in small_templates}  # complete: nothing unread
    assert fake_fhir.server.log, "the server was queried"
    for request, _ in fake_fhir.server.log:
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_queries_run_in_parallel(fhir_server: HTTPServer, panel: Panel) -> None:
    """Four searches meet at a barrier that only opens when all four are in flight at once."""
    barrier = threading.Barrier(4, timeout=2.0)

    def meet_then_answer(request: Request) -> Response:
        barrier.wait()
        return Response(json.dumps(searchset([])), content_type="application/fhir+json")

    fhir_server.expect_request("/fhir/Observation").respond_with_handler(meet_then_answer)
    templates = analyte_templates(panel, page_size=2)
    four = {key: templates[key] for key in ("il6", "ferritin", "crp", "lactate")}
    access = FhirAccess(fhir_server.url_for("/fhir"), TOKEN)

    settings = FhirSettings(timeout_seconds=3.0, deadline_seconds=4.0, max_workers=4)

    data = gather_patient_data(None, CONTEXT, four, access, settings)

    assert data.observations == ()
    assert len(fhir_server.log) == 4


def test_every_query_shares_one_deadline_and_the_configured_limits(
    fake_fhir: FakeFhir, access: FhirAccess, small_templates: dict[str, str]
) -> None:
    settings = FhirSettings(timeout_seconds=0.7, deadline_seconds=3.0, max_pages=4)
    made: list[dict[str, Any]] = []

    def recording_factory(base_url: str, token: str | None, **options: Any) -> FhirClient:
        made.append({"base_url": base_url, "token": token, **options})
        return FhirClient(base_url, token, **options)

    gather_patient_data(
        None, CONTEXT, small_templates, access, settings, client_factory=recording_factory
    )

    assert len(made) == len(small_templates)
    assert len({options["deadline"] for options in made}) == 1
    assert all(options["timeout"] == 0.7 and options["max_pages"] == 4 for options in made)
    assert all(options["base_url"] == fake_fhir.base_url for options in made)


@pytest.mark.parametrize("status", [401, 403])
def test_refused_token_makes_data_unavailable(
    fhir_server: HTTPServer,
    small_templates: dict[str, str],
    fhir_settings: FhirSettings,
    status: int,
) -> None:
    fhir_server.expect_request("/fhir/Observation").respond_with_json(outcome("login"), status)
    fhir_server.expect_request(f"/fhir/Patient/{PATIENT_ID}").respond_with_json(patient_resource())
    access = FhirAccess(fhir_server.url_for("/fhir"), TOKEN)

    with pytest.raises(DataUnavailable) as raised:
        gather_patient_data(None, CONTEXT, small_templates, access, fhir_settings)

    assert "refused the access token" in raised.value.reason
    assert set(raised.value.keys) & set(SMALL_PANEL), "a refused search is named"
    assert set(raised.value.keys) <= set(small_templates)
    assert TOKEN not in str(raised.value) and PATIENT_ID not in str(raised.value)


def test_server_error_makes_data_unavailable(
    fhir_server: HTTPServer, small_templates: dict[str, str], fhir_settings: FhirSettings
) -> None:
    fhir_server.expect_request("/fhir/Observation").respond_with_json(outcome(), 500)
    fhir_server.expect_request(f"/fhir/Patient/{PATIENT_ID}").respond_with_json(patient_resource())
    access = FhirAccess(fhir_server.url_for("/fhir"), TOKEN)

    with pytest.raises(DataUnavailable) as raised:
        gather_patient_data(None, CONTEXT, small_templates, access, fhir_settings)

    assert raised.value.reason == "the FHIR server is unavailable (HTTP 500)"


def test_slow_server_makes_data_unavailable_without_waiting_for_answers(
    fhir_server: HTTPServer,
    small_templates: dict[str, str],
    fhir_settings: FhirSettings,
    release: threading.Event,
) -> None:
    arrivals: list[str] = []
    fhir_server.expect_request(f"/fhir/Patient/{PATIENT_ID}").respond_with_handler(
        holding_handler(release, arrivals)
    )
    fhir_server.expect_request("/fhir/Observation").respond_with_handler(
        holding_handler(release, arrivals)
    )
    access = FhirAccess(fhir_server.url_for("/fhir"), TOKEN)

    with pytest.raises(DataUnavailable) as raised:
        gather_patient_data(None, CONTEXT, small_templates, access, fhir_settings)

    assert "did not answer in time" in raised.value.reason
    assert fhir_server.log == [], "gather returned before the server answered anything"
    assert len(arrivals) <= len(small_templates)
    assert len(set(arrivals)) == len(arrivals), "no key was requested twice"


def test_overall_deadline_ends_gather_even_with_long_call_timeouts(
    fhir_server: HTTPServer, small_templates: dict[str, str], release: threading.Event
) -> None:
    arrivals: list[str] = []
    for uri in (f"/fhir/Patient/{PATIENT_ID}", "/fhir/Observation"):
        fhir_server.expect_request(uri).respond_with_handler(holding_handler(release, arrivals))
    settings = FhirSettings(timeout_seconds=30, deadline_seconds=0.5)
    access = FhirAccess(fhir_server.url_for("/fhir"), TOKEN)

    with pytest.raises(DataUnavailable) as raised:
        gather_patient_data(None, CONTEXT, small_templates, access, settings)

    assert "did not answer in time" in raised.value.reason
    assert set(raised.value.keys) == set(small_templates)
    assert fhir_server.log == []


def test_paging_is_followed_up_to_max_pages_and_not_beyond(
    fake_fhir: FakeFhir, access: FhirAccess, templates: dict[str, str]
) -> None:
    fake_fhir.observations = [
        observation(f"il6-{n}", "26881-3", float(n), f"2026-11-20T{n:02d}:00:00Z") for n in range(9)
    ]
    settings = FhirSettings(timeout_seconds=1.0, deadline_seconds=2.5, max_pages=3, page_size=2)

    data = gather_patient_data(None, CONTEXT, {"il6": templates["il6"]}, access, settings)

    assert ids(data) == {f"il6-{n}" for n in range(3, 9)}
    assert len(fake_fhir.server.log) == 3
    assert data.sources == {"il6": "query:incomplete"}


def test_prefetched_page_is_completed_from_its_next_link(
    fake_fhir: FakeFhir, access: FhirAccess, templates: dict[str, str], fhir_settings: FhirSettings
) -> None:
    fake_fhir.observations = server_observations()
    prefetch = first_page_prefetch(fake_fhir, {"il6": templates["il6"]})

    data = gather_patient_data(prefetch, CONTEXT, {"il6": templates["il6"]}, access, fhir_settings)

    assert ids(data) == {"il6-1", "il6-2", "il6-3"}
    assert data.sources == {"il6": "prefetch+query:next-pages"}
    assert len(fake_fhir.server.log) == 1


def test_prefetched_page_without_fhir_access_makes_data_unavailable(
    fake_fhir: FakeFhir, templates: dict[str, str], fhir_settings: FhirSettings
) -> None:
    fake_fhir.observations = server_observations()
    prefetch = first_page_prefetch(fake_fhir, {"il6": templates["il6"]})

    with pytest.raises(DataUnavailable) as raised:
        gather_patient_data(prefetch, CONTEXT, {"il6": templates["il6"]}, None, fhir_settings)

    assert raised.value.keys == ("il6",)


def test_next_link_to_another_origin_is_not_followed(
    fake_fhir: FakeFhir,
    other_server: HTTPServer,
    access: FhirAccess,
    templates: dict[str, str],
    fhir_settings: FhirSettings,
) -> None:
    other_server.expect_request("/fhir/Observation").respond_with_json(searchset([]))
    fake_fhir.next_base = other_server.url_for("/fhir")
    fake_fhir.observations = server_observations()
    il6_only = {"il6": templates["il6"]}
    prefetched = first_page_prefetch(fake_fhir, il6_only)

    queried = gather_patient_data(None, CONTEXT, il6_only, access, fhir_settings)
    from_prefetch = gather_patient_data(prefetched, CONTEXT, il6_only, access, fhir_settings)

    assert other_server.log == []
    assert ids(queried) == ids(from_prefetch) == {"il6-2", "il6-3"}
    assert queried.sources["il6"] == "query:incomplete"
    assert from_prefetch.sources["il6"] == "prefetch+query:next-pages:incomplete"


def test_operation_outcome_in_prefetch_is_logged_then_queried(
    fake_fhir: FakeFhir,
    access: FhirAccess,
    small_templates: dict[str, str],
    fhir_settings: FhirSettings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_fhir.observations = server_observations()
    prefetch = first_page_prefetch(fake_fhir, small_templates)
    prefetch["crp"] = outcome("timeout", diagnostics=f"lab system slow for {PATIENT_ID}")

    with caplog.at_level(logging.DEBUG):
        data = gather_patient_data(prefetch, CONTEXT, small_templates, access, fhir_settings)

    assert data.sources["crp"] == "query:after-operation-outcome"
    assert "crp-1" in ids(data)
    assert requested_codes(fake_fhir.server) == ["http://loinc.org|1988-5,http://loinc.org|30522-7"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("error/timeout" in message for message in warnings)
    assert all(PATIENT_ID not in message for message in warnings)


@pytest.mark.parametrize(
    ("value", "source"), [(None, "prefetch:null"), (searchset([]), "prefetch:empty")]
)
def test_null_and_empty_bundle_mean_no_data_and_no_request(
    fake_fhir: FakeFhir,
    access: FhirAccess,
    small_templates: dict[str, str],
    fhir_settings: FhirSettings,
    value: Any,
    source: str,
) -> None:
    fake_fhir.observations = server_observations()
    prefetch = {key: value for key in small_templates}

    with_access = gather_patient_data(prefetch, CONTEXT, small_templates, access, fhir_settings)
    without_access = gather_patient_data(prefetch, CONTEXT, small_templates, None, fhir_settings)

    assert fake_fhir.server.log == []
    assert with_access == without_access
    assert with_access.observations == () and with_access.patient is None
    assert set(with_access.sources.values()) == {source}


def test_partial_prefetch_queries_only_the_missing_keys(
    fake_fhir: FakeFhir,
    access: FhirAccess,
    small_templates: dict[str, str],
    fhir_settings: FhirSettings,
) -> None:
    fake_fhir.observations = server_observations()
    prefetch = first_page_prefetch(fake_fhir, small_templates)
    del prefetch["ferritin"]

    data = gather_patient_data(prefetch, CONTEXT, small_templates, access, fhir_settings)

    assert requested_codes(fake_fhir.server) == ["http://loinc.org|2276-4,http://loinc.org|20567-4"]
    assert len(fake_fhir.server.log) == 1
    assert data.sources["ferritin"] == "query" and data.sources["crp"] == "prefetch"
    assert {"fer-1", "fer-2"} <= ids(data)


def test_missing_key_without_fhir_access_makes_data_unavailable(
    small_templates: dict[str, str], fhir_settings: FhirSettings
) -> None:
    prefetch = {"patient": patient_resource(), "il6": searchset([]), "crp": None}

    with pytest.raises(DataUnavailable) as raised:
        gather_patient_data(prefetch, CONTEXT, small_templates, None, fhir_settings)

    assert raised.value.keys == ("ferritin",)
    assert "no FHIR server access" in raised.value.reason


def test_operation_outcome_without_fhir_access_makes_data_unavailable(
    small_templates: dict[str, str], fhir_settings: FhirSettings
) -> None:
    """The client's fetch failed and we cannot fetch ourselves: required data is unobtainable."""
    prefetch: dict[str, Any] = {key: None for key in small_templates}
    prefetch["il6"] = outcome("transient")

    with pytest.raises(DataUnavailable) as raised:
        gather_patient_data(prefetch, CONTEXT, small_templates, None, fhir_settings)

    assert raised.value.keys == ("il6",)


def test_prefetch_and_query_give_the_same_observations(
    fake_fhir: FakeFhir, access: FhirAccess, panel: Panel, fhir_settings: FhirSettings
) -> None:
    """R45: prefetch 'MUST be equivalent to the data the CDS Service would receive' itself."""
    fake_fhir.observations = server_observations()
    fake_fhir.outcome_entry = True
    templates = prefetch_templates(panel, page_size=50)

    queried = gather_patient_data(None, CONTEXT, templates, access, fhir_settings)
    prefetched = gather_patient_data(
        first_page_prefetch(fake_fhir, templates), CONTEXT, templates, None, fhir_settings
    )

    assert queried.patient == prefetched.patient == patient_resource()
    as_json = {json.dumps(obs, sort_keys=True) for obs in queried.observations}
    assert as_json == {json.dumps(obs, sort_keys=True) for obs in prefetched.observations}
    assert len(queried.observations) == 6


def test_entries_of_other_types_are_skipped(
    fake_fhir: FakeFhir, access: FhirAccess, templates: dict[str, str], fhir_settings: FhirSettings
) -> None:
    fake_fhir.observations = server_observations()
    fake_fhir.outcome_entry = True
    prefetch = {"crp": searchset([observation("crp-9", "1988-5", 5.0, "2026-11-21T01:00:00Z")])}
    prefetch["crp"]["entry"].append({"resource": patient_resource(), "search": {"mode": "include"}})
    wanted = {"il6": templates["il6"], "crp": templates["crp"]}

    data = gather_patient_data(prefetch, CONTEXT, wanted, access, fhir_settings)

    assert {obs["resourceType"] for obs in data.observations} == {"Observation"}
    assert ids(data) == {"il6-1", "il6-2", "il6-3", "crp-9"}


def test_the_same_observation_in_two_keys_is_kept_once(
    small_templates: dict[str, str], fhir_settings: FhirSettings
) -> None:
    shared = observation("shared-1", "26881-3", 40.0, "2026-11-21T02:00:00Z")
    unnamed = {key: value for key, value in shared.items() if key != "id"}
    prefetch = {
        "patient": patient_resource(),
        "il6": searchset([shared, unnamed]),
        "ferritin": searchset([shared, unnamed]),
        "crp": None,
    }

    data = gather_patient_data(prefetch, CONTEXT, small_templates, None, fhir_settings)

    assert data.observations == (shared, unnamed)


def test_unknown_patient_on_query_gives_no_patient(
    fake_fhir: FakeFhir, access: FhirAccess, small_templates: dict[str, str]
) -> None:
    fake_fhir.patients = {}
    settings = FhirSettings(timeout_seconds=1.0, deadline_seconds=2.5)

    data = gather_patient_data(None, CONTEXT, small_templates, access, settings)

    assert data.patient is None
    assert data.sources["patient"] == "query:not-found"


@pytest.mark.parametrize(
    "patient",
    [patient_resource("someone-else"), {"resourceType": "Practitioner", "id": PATIENT_ID}],
    ids=["other-patient", "other-type"],
)
def test_prefetched_patient_that_is_not_the_context_patient_is_refused(
    small_templates: dict[str, str], fhir_settings: FhirSettings, patient: dict
) -> None:
    prefetch = {key: None for key in small_templates} | {"patient": patient}

    with pytest.raises(MalformedPrefetch) as raised:
        gather_patient_data(prefetch, CONTEXT, small_templates, None, fhir_settings)

    assert raised.value.key == "patient"


def test_prefetched_patient_without_id_is_accepted(
    small_templates: dict[str, str], fhir_settings: FhirSettings
) -> None:
    """The spec's own prefetch example sends a Patient without an id."""
    patient = {"resourceType": "Patient", "birthDate": "2019-03-01"}
    prefetch = {key: None for key in small_templates} | {"patient": patient}

    data = gather_patient_data(prefetch, CONTEXT, small_templates, None, fhir_settings)

    assert data.patient == patient


def test_single_resource_for_a_search_key_is_refused(
    small_templates: dict[str, str], fhir_settings: FhirSettings
) -> None:
    prefetch = {key: None for key in small_templates}
    prefetch["il6"] = observation("il6-1", "26881-3", 120.0, "2026-11-20T06:00:00Z")

    with pytest.raises(MalformedPrefetch):
        gather_patient_data(prefetch, CONTEXT, small_templates, None, fhir_settings)


def test_invalid_patient_id_is_refused_before_any_request(
    fake_fhir: FakeFhir,
    access: FhirAccess,
    small_templates: dict[str, str],
    fhir_settings: FhirSettings,
) -> None:
    context = {"patientId": "x&_id=other"}

    with pytest.raises(ValueError):
        gather_patient_data(None, context, small_templates, access, fhir_settings)

    assert fake_fhir.server.log == []


def test_token_never_appears_in_gather_logs_or_errors(
    fhir_server: HTTPServer,
    small_templates: dict[str, str],
    fhir_settings: FhirSettings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fhir_server.expect_request("/fhir/Observation").respond_with_json(outcome(), 401)
    fhir_server.expect_request(f"/fhir/Patient/{PATIENT_ID}").respond_with_json({}, 503)
    access = FhirAccess(fhir_server.url_for("/fhir"), TOKEN)

    with caplog.at_level(logging.DEBUG), pytest.raises(DataUnavailable) as raised:
        gather_patient_data(None, CONTEXT, small_templates, access, fhir_settings)

    assert TOKEN not in caplog.text
    assert TOKEN not in str(raised.value) and TOKEN not in repr(access)


class _KeepAliveFhir(http.server.BaseHTTPRequestHandler):
    """A FHIR server that keeps connections open and records each request's client port."""

    protocol_version = "HTTP/1.1"
    client_ports: list[int] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        type(self).client_ports.append(self.client_address[1])
        body = patient_resource() if "/Patient/" in self.path else searchset([])
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def keep_alive_fhir() -> Iterator[str]:
    """The base URL of a keep-alive FHIR server on loopback."""
    _KeepAliveFhir.client_ports = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _KeepAliveFhir)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/fhir"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_queries_of_successive_hooks_reuse_one_kept_alive_connection(
    keep_alive_fhir: str, small_templates: dict[str, str]
) -> None:
    access = FhirAccess(keep_alive_fhir, TOKEN)
    one_thread = FhirSettings(timeout_seconds=3.0, deadline_seconds=4.0, max_workers=1)

    first = gather_patient_data(None, CONTEXT, small_templates, access, one_thread)
    second = gather_patient_data(None, CONTEXT, small_templates, access, one_thread)

    assert first.patient == second.patient == patient_resource()
    assert len(_KeepAliveFhir.client_ports) == 2 * len(small_templates)
    assert len(set(_KeepAliveFhir.client_ports)) == 1


def test_a_cookie_set_by_the_fhir_server_is_never_sent_back(
    fhir_server: HTTPServer, small_templates: dict[str, str]
) -> None:
    def set_cookie(request: Request) -> Response:
        body = patient_resource() if "/Patient/" in request.path else searchset([])
        response = Response(json.dumps(body), content_type="application/fhir+json")
        response.set_cookie("session", "patient-bound-value")
        return response

    fhir_server.expect_request("/fhir/Patient/" + PATIENT_ID).respond_with_handler(set_cookie)
    fhir_server.expect_request("/fhir/Observation").respond_with_handler(set_cookie)
    access = FhirAccess(fhir_server.url_for("/fhir"), TOKEN)
    one_thread = FhirSettings(timeout_seconds=3.0, deadline_seconds=4.0, max_workers=1)

    gather_patient_data(None, CONTEXT, small_templates, access, one_thread)
    gather_patient_data(None, CONTEXT, small_templates, access, one_thread)

    assert len(fhir_server.log) == 2 * len(small_templates)
    assert all("Cookie" not in request.headers for request, _ in fhir_server.log)


def test_after_a_deadline_with_calls_in_flight_the_next_hook_still_gets_its_answers(
    fhir_server: HTTPServer, small_templates: dict[str, str]
) -> None:
    slow = threading.Event()

    def answer(request: Request) -> Response:
        if slow.is_set():
            threading.Event().wait(1.0)
        body = patient_resource() if "/Patient/" in request.path else searchset([])
        return Response(json.dumps(body), content_type="application/fhir+json")

    fhir_server.expect_request("/fhir/Patient/" + PATIENT_ID).respond_with_handler(answer)
    fhir_server.expect_request("/fhir/Observation").respond_with_handler(answer)
    access = FhirAccess(fhir_server.url_for("/fhir"), TOKEN)
    settings = FhirSettings(timeout_seconds=3.0, deadline_seconds=0.3, max_workers=3)

    slow.set()
    with pytest.raises(DataUnavailable):
        gather_patient_data(None, CONTEXT, small_templates, access, settings)
    slow.clear()
    data = gather_patient_data(None, CONTEXT, small_templates, access, settings)

    assert data.patient == patient_resource()


# --- the care-context searches ----------------------------------------------------------------


def test_an_encounter_search_keeps_its_included_locations_and_other_searches_their_types(
    fhir_settings: FhirSettings,
) -> None:
    encounter = {"resourceType": "Encounter", "id": "enc-1", "status": "in-progress"}
    ward = {"resourceType": "Location", "id": "picu", "status": "active"}
    bed = {"resourceType": "Location", "id": "bed-4", "partOf": {"reference": "Location/picu"}}
    encounters = searchset([encounter])
    encounters["entry"] += [
        {"resource": bed, "search": {"mode": "include"}},
        {"resource": ward, "search": {"mode": "include"}},
        {"resource": outcome("informational", "information"), "search": {"mode": "outcome"}},
    ]
    order = {"resourceType": "ServiceRequest", "id": "sr-1", "status": "active"}
    templates = {
        "encounters": "Encounter?patient={{context.patientId}}&status=in-progress",
        "orders": "ServiceRequest?patient={{context.patientId}}&status=active",
        "again": "Encounter?patient={{context.patientId}}",
    }
    prefetch = {"encounters": encounters, "orders": searchset([order]), "again": searchset([bed])}

    data = gather_patient_data(prefetch, CONTEXT, templates, None, fhir_settings)

    assert data.of_type("Encounter") == (encounter,)
    assert data.of_type("Location") == (bed, ward)  # the same Location twice is kept once
    assert data.of_type("ServiceRequest") == (order,)
    assert data.of_type("OperationOutcome") == () and data.observations == ()


def test_copies_of_one_id_are_merged_only_when_identical(
    small_templates: dict[str, str], fhir_settings: FhirSettings
) -> None:
    first = observation("il6-9", "26881-3", 12.0, "2026-11-20T06:00:00Z")
    altered = {**first, "valueQuantity": {**first["valueQuantity"], "value": 950.0}}
    prefetch: dict[str, Any] = {key: None for key in small_templates}
    prefetch["patient"] = patient_resource()
    prefetch["il6"] = searchset([first, dict(first), altered])

    data = gather_patient_data(prefetch, CONTEXT, small_templates, None, fhir_settings)

    assert [o["valueQuantity"]["value"] for o in data.observations] == [12.0, 950.0]
