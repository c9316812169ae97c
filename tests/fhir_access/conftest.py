"""A small in-process FHIR server (search, read, paging) and builders for FHIR test data."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from fhir_mappings.config import FhirSettings
from fhir_mappings.panel import Panel, load_panel
from fhir_mappings.prefetch import PATIENT_KEY
from tests.support.leak_guard import register_secret

PATIENT_ID = "pat-0042"
TOKEN = register_secret("fhir-access-token-0b9f3c1e5d7a")  # the session guard checks every log
FHIR_JSON = "application/fhir+json"


def observation(obs_id: str, code: str, value: float, when: str, patient: str = PATIENT_ID) -> dict:
    """A final numeric LOINC Observation for `patient`."""
    return {
        "resourceType": "Observation",
        "id": obs_id,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": "pg/mL", "system": "http://unitsofmeasure.org"},
    }


def patient_resource(patient_id: str = PATIENT_ID) -> dict:
    """A Patient resource with a birth date."""
    return {"resourceType": "Patient", "id": patient_id, "birthDate": "2019-03-01"}


def searchset(resources: list[dict], next_url: str | None = None) -> dict:
    """A searchset Bundle holding `resources`, with a next link when given."""
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
    }
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


def outcome(code: str = "exception", severity: str = "error", diagnostics: str = "") -> dict:
    """An OperationOutcome with one issue."""
    issue = {"severity": severity, "code": code}
    if diagnostics:
        issue["diagnostics"] = diagnostics
    return {"resourceType": "OperationOutcome", "issue": [issue]}


@dataclass
class FakeFhir:
    """Patients and Observations served over FHIR search and read, paged by `_count`."""

    server: HTTPServer
    patients: dict[str, dict] = field(default_factory=dict)
    observations: list[dict] = field(default_factory=list)
    outcome_entry: bool = False  # add an OperationOutcome entry with search.mode "outcome"
    next_base: str | None = None  # where next links point (default: this server)

    @property
    def base_url(self) -> str:
        return self.server.url_for("/fhir")

    def install(self) -> FakeFhir:
        """Register the read and search handlers on the server."""
        self.server.expect_request(re.compile(r"^/fhir/Patient/[^/]+$")).respond_with_handler(
            self._read_patient
        )
        self.server.expect_request("/fhir/Observation").respond_with_handler(self._search)
        return self

    def search_bundle(self, args: dict[str, str]) -> dict:
        """The searchset Bundle this server answers for one Observation search."""
        codes = {token.split("|")[-1] for token in args.get("code", "").split(",")}
        found = [
            obs
            for obs in self.observations
            if obs["subject"]["reference"] == f"Patient/{args.get('patient')}"
            and obs["code"]["coding"][0]["code"] in codes
        ]
        found.sort(key=lambda obs: obs["effectiveDateTime"], reverse=True)
        count, offset = int(args.get("_count", "50")), int(args.get("_offset", "0"))
        page = found[offset : offset + count]
        next_url = None
        if offset + count < len(found):
            base = self.next_base or self.base_url
            next_url = f"{base}/Observation?{urlencode({**args, '_offset': offset + count})}"
        bundle = searchset(page, next_url)
        if self.outcome_entry:
            bundle["entry"].append(
                {"resource": outcome("informational", "information"), "search": {"mode": "outcome"}}
            )
        return bundle

    def _read_patient(self, request: Request) -> Response:
        patient = self.patients.get(request.path.rsplit("/", 1)[-1])
        if patient is None:
            return _fhir_response(outcome("not-found"), 404)
        return _fhir_response(patient)

    def _search(self, request: Request) -> Response:
        return _fhir_response(self.search_bundle(dict(request.args)))


def _fhir_response(body: dict, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, content_type=FHIR_JSON)


def slow_handler(seconds: float, body: dict) -> Callable[[Request], Response]:
    """A handler that answers `body` after sleeping `seconds`."""

    def handle(request: Request) -> Response:
        time.sleep(seconds)
        return _fhir_response(body)

    return handle


class QuickHTTPServer(HTTPServer):
    """A threaded loopback HTTPServer that notices a stop request within 20 ms."""

    def __init__(self) -> None:
        super().__init__(host="127.0.0.1", threaded=True)

    def thread_target(self) -> None:
        assert self.server is not None
        self.server.serve_forever(poll_interval=0.02)


def _running_server() -> Iterator[HTTPServer]:
    server = QuickHTTPServer()
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.fixture
def fhir_server() -> Iterator[HTTPServer]:
    """A fresh threaded server per test, so parallel queries really run in parallel."""
    yield from _running_server()


@pytest.fixture
def other_server() -> Iterator[HTTPServer]:
    """A second server on another port: another origin, which must never be contacted."""
    yield from _running_server()


@pytest.fixture
def fake_fhir(fhir_server: HTTPServer) -> FakeFhir:
    """The fake FHIR server with one patient and no Observations yet."""
    fake = FakeFhir(fhir_server, patients={PATIENT_ID: patient_resource()})
    return fake.install()


@pytest.fixture
def panel() -> Panel:
    """The packaged marker panel."""
    return load_panel()


def analyte_templates(panel: Panel, page_size: int) -> dict[str, str]:
    """The patient read and one Observation search per analyte.

    Gathering is generic over templates; one key per analyte makes parallel queries, paging and
    per-key sources easy to observe. The service itself uses `prefetch_templates` (one `panel`
    search for every analyte).
    """
    templates = {PATIENT_KEY: "Patient/{{context.patientId}}"}
    for key in panel.analytes:
        codes = ",".join(f"{c.system}|{c.code}" for c in panel.codes_for(key))
        templates[key] = (
            f"Observation?patient={{{{context.patientId}}}}&code={codes}"
            f"&_sort=-date&_count={page_size}"
        )
    return templates


@pytest.fixture
def templates(panel: Panel) -> dict[str, str]:
    """Per-analyte templates with a small page size, so paging is easy to reach."""
    return analyte_templates(panel, page_size=2)


@pytest.fixture
def fhir_settings() -> FhirSettings:
    """Timeouts short enough for failing tests to finish quickly, long enough for a busy CI."""
    return FhirSettings(
        timeout_seconds=1.0, deadline_seconds=2.5, max_pages=3, page_size=2, max_workers=4
    )
