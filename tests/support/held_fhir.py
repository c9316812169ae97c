"""A FHIR server that can hold its answers: for tests of hooks waiting on a stalled EHR.

`HeldFhir` answers every `Patient/{id}` read with a Patient and every search with an empty
searchset. While held, each request waits (its connection open, nothing sent) until `release()`,
so a test can observe what else the service does while hooks are stuck on FHIR: `wait_for(n)`
returns once n requests are waiting at the same time. Runs on pytest-httpserver with one thread
per connection, so any number of requests can wait at once.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

FHIR_JSON = "application/fhir+json"
HOLD_LIMIT_SECONDS = 300.0  # a held request is answered anyway after this (a test went wrong)


@dataclass
class HeldFhir:
    """The server, whether it holds answers, and the requests it has seen."""

    server: HTTPServer
    answer_delay: float = 0.0  # seconds before every answer, held or not
    _released: threading.Event = field(default_factory=threading.Event)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    waiting: int = 0  # requests held right now
    most_waiting: int = 0  # the most ever held at once
    most_patients: int = 0  # the most distinct patients with requests held at once
    paths: list[str] = field(default_factory=list)
    _patients: Counter[str] = field(default_factory=Counter)

    @property
    def base_url(self) -> str:
        return self.server.url_for("/fhir").rstrip("/")

    def hold(self) -> None:
        """From now on, every request waits for `release()`."""
        self._released.clear()

    def release(self) -> None:
        """Answer every held request, and answer later ones at once."""
        self._released.set()

    def wait_for(self, count: int, timeout: float = 60.0) -> bool:
        """True once `count` requests are held at the same time (False after `timeout`)."""
        ends = time.monotonic() + timeout
        with self._changed:
            while self.waiting < count:
                left = ends - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def handle(self, request: Request) -> Response:
        patient = _patient_of(request)
        with self._changed:
            self.paths.append(request.path)
            self.waiting += 1
            self.most_waiting = max(self.most_waiting, self.waiting)
            self._patients[patient] += 1
            self.most_patients = max(self.most_patients, len(+self._patients))
            self._changed.notify_all()
        try:
            self._released.wait(HOLD_LIMIT_SECONDS)
            if self.answer_delay:
                time.sleep(self.answer_delay)
        finally:
            with self._changed:
                self.waiting -= 1
                self._patients[patient] -= 1
                self._changed.notify_all()
        return _answer(request)


def _patient_of(request: Request) -> str:
    """The patient a request is about: the id read, or the `patient` search parameter."""
    match = re.fullmatch(r"/fhir/Patient/([A-Za-z0-9\-.]+)", request.path)
    return match.group(1) if match else request.args.get("patient", "")


def _answer(request: Request) -> Response:
    match = re.fullmatch(r"/fhir/Patient/([A-Za-z0-9\-.]+)", request.path)
    if match:
        body = {"resourceType": "Patient", "id": match.group(1), "birthDate": "2019-03-01"}
    else:
        body = {"resourceType": "Bundle", "type": "searchset", "total": 0, "entry": []}
    return Response(json.dumps(body), status=200, content_type=FHIR_JSON)


@contextmanager
def held_fhir(answer_delay: float = 0.0) -> Iterator[HeldFhir]:
    """A running `HeldFhir` that answers at once until `hold()` is called."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    fhir = HeldFhir(server, answer_delay)
    fhir.release()
    server.expect_request(re.compile("/fhir/.*")).respond_with_handler(fhir.handle)
    server.start()
    try:
        yield fhir
    finally:
        fhir.release()
        server.clear()
        server.stop()
