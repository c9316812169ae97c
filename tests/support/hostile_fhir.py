"""A hostile FHIR server on loopback: bombs, drips, oversized and over-deep replies, on demand.

`HostileFhir(fault)` answers `GET {base}/Patient/{id}` with a plain Patient and every
`GET {base}/Observation?...` search with the chosen fault; `GET /jwks.json` serves `jwks` (with the
fault too when `fault_jwks` is set). Every reply closes its connection, so `open_connections` counts
exactly the requests still being answered. Used by the tests and by `benchmarks/fault_run.py`.
"""

from __future__ import annotations

import functools
import http.server
import json
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

FHIR_JSON = "application/fhir+json"
BUNDLE_OPEN = b'{"resourceType":"Bundle","type":"searchset","entry":['
BUNDLE_CLOSE = b"]}"
MIB = 1024 * 1024


class Fault(StrEnum):
    """What the server does to an Observation search."""

    NORMAL = "normal"  # a searchset of `observations`
    GZIP_BOMB = "gzip-bomb"  # Content-Encoding gzip: a small body that unpacks to `size` bytes
    DEFLATE_BOMB = "deflate-bomb"  # the same with Content-Encoding deflate (zlib)
    OVERSIZED = "oversized"  # a plain `size`-byte Bundle, chunked (no Content-Length)
    OVERSIZED_DECLARED = "oversized-declared"  # the same with its Content-Length
    EMPTY_ENTRIES = "empty-entries"  # a Bundle of `size` empty entries
    IGNORES_COUNT = "ignores-count"  # every one of `size` bytes of real Observations, one page
    DRIP = "drip"  # headers at once, then the body one byte per `interval` seconds, forever
    DRIP_HEADERS = "drip-headers"  # the status line and headers one byte per `interval`
    DEEP = "deep"  # a Bundle whose one entry nests `size` arrays deep
    NEXT_PAGE_OVERSIZED = "next-page-oversized"  # page 1 normal with a next link; page 2 OVERSIZED


@functools.lru_cache(maxsize=8)
def compressed_padding(size: int, wbits: int) -> bytes:
    """A Bundle opening, `size` spaces and its closing, compressed (31: gzip, 15: zlib)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    parts = [compressor.compress(BUNDLE_OPEN)]
    block = b" " * MIB
    for start in range(0, size, MIB):
        parts.append(compressor.compress(block[: min(MIB, size - start)]))
    parts.append(compressor.compress(BUNDLE_CLOSE))
    parts.append(compressor.flush())
    return b"".join(parts)


def lab_observation(number: int, patient_id: str = "hostile-1") -> dict[str, Any]:
    """A realistic final IL-6 Observation (about 1 kB of JSON)."""
    return {
        "resourceType": "Observation",
        "id": f"il6-{number}",
        "meta": {"lastUpdated": "2026-11-20T08:00:00Z", "versionId": "1"},
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                        "display": "Laboratory",
                    }
                ]
            }
        ],
        "code": {
            "coding": [
                {
                    "system": "http://loinc.org",
                    "code": "26881-3",
                    "display": "Interleukin 6 [Mass/volume] in Serum or Plasma",
                }
            ],
            "text": "IL-6",
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2026-11-20T06:00:00Z",
        "issued": "2026-11-20T07:30:00Z",
        "valueQuantity": {
            "value": 12.5 + number % 7,
            "unit": "pg/mL",
            "system": "http://unitsofmeasure.org",
            "code": "pg/mL",
        },
        "referenceRange": [{"high": {"value": 7.0, "unit": "pg/mL"}, "text": "< 7 pg/mL"}],
    }


@dataclass
class HostileFhir:
    """A threaded loopback FHIR server with one fault; use as a context manager."""

    fault: Fault = Fault.NORMAL
    size: int = 20 * MIB  # decoded bytes, entries or nesting depth, depending on the fault
    interval: float = 0.1  # seconds between dripped bytes
    observations: list[dict[str, Any]] = field(default_factory=list)
    jwks: dict[str, Any] | None = None
    fault_jwks: bool = False
    requests: list[str] = field(default_factory=list)
    _server: http.server.ThreadingHTTPServer | None = field(default=None, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _open: int = 0

    @property
    def port(self) -> int:
        assert self._server is not None, "start the server first"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    @property
    def jwks_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/jwks.json"

    @property
    def open_connections(self) -> int:
        """Requests still being answered (every reply closes its connection)."""
        with self._lock:
            return self._open

    def wait_until_idle(self, timeout: float) -> bool:
        """Wait until no request is being answered; False if some still are after `timeout`."""
        ends = time.monotonic() + timeout
        while time.monotonic() < ends:
            if self.open_connections == 0:
                return True
            time.sleep(0.02)
        return self.open_connections == 0

    def prepare(self) -> HostileFhir:
        """Build the fault's reply now, so building it does not count as the client's memory."""
        if self.fault in (Fault.GZIP_BOMB, Fault.DEFLATE_BOMB):
            compressed_padding(self.size, 31 if self.fault is Fault.GZIP_BOMB else 15)
        elif self.fault in (Fault.EMPTY_ENTRIES, Fault.IGNORES_COUNT, Fault.DEEP):
            prepared_body(self.fault, self.size)
        return self

    def start(self) -> HostileFhir:
        """Listen on a free loopback port and serve in daemon threads."""
        handler = type("Handler", (_HostileHandler,), {"hostile": self})
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; dripping replies end within one interval."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> HostileFhir:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _opened(self, change: int) -> None:
        with self._lock:
            self._open += change


class _HostileHandler(http.server.BaseHTTPRequestHandler):
    """Answers one request per connection according to the server's fault."""

    protocol_version = "HTTP/1.1"
    hostile: HostileFhir

    def handle(self) -> None:
        self.hostile._opened(+1)
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the client gave up, which is what the faults are for
        finally:
            self.hostile._opened(-1)

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self.hostile.requests.append(self.path)
        self.close_connection = True
        path = self.path.split("?", 1)[0]
        if path == "/jwks.json":
            document = json.dumps(self.hostile.jwks or {"keys": []}).encode()
            if self.hostile.fault_jwks:
                self._fault(document)
            else:
                self._send(document)
        elif path.startswith("/fhir/Patient/"):
            patient = {"resourceType": "Patient", "id": path.rsplit("/", 1)[-1]}
            self._send(json.dumps({**patient, "birthDate": "2019-03-01"}).encode())
        elif path == "/fhir/Observation":
            self._fault(self._searchset(), first_page="_page=2" not in self.path)
        else:
            self._send(b'{"resourceType":"OperationOutcome"}', status=404)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def _searchset(self) -> bytes:
        entries = [{"resource": resource} for resource in self.hostile.observations]
        bundle = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
        return json.dumps(bundle).encode()

    def _fault(self, normal: bytes, first_page: bool = True) -> None:
        fault, size = self.hostile.fault, self.hostile.size
        if fault is Fault.NORMAL:
            self._send(normal)
        elif fault is Fault.GZIP_BOMB:
            self._send(compressed_padding(size, 31), encoding="gzip")
        elif fault is Fault.DEFLATE_BOMB:
            self._send(compressed_padding(size, 15), encoding="deflate")
        elif fault is Fault.OVERSIZED or (fault is Fault.NEXT_PAGE_OVERSIZED and not first_page):
            self._send_chunked(_padding_chunks(size))
        elif fault is Fault.NEXT_PAGE_OVERSIZED:
            self._send(self._with_next_link(normal))
        elif fault is Fault.OVERSIZED_DECLARED:
            self._send(b"".join(_padding_chunks(size)))
        elif fault in (Fault.EMPTY_ENTRIES, Fault.IGNORES_COUNT, Fault.DEEP):
            self._send(prepared_body(fault, size))
        elif fault is Fault.DRIP:
            self._drip(body_only=True)
        elif fault is Fault.DRIP_HEADERS:
            self._drip(body_only=False)

    def _with_next_link(self, page: bytes) -> bytes:
        bundle = json.loads(page)
        next_url = f"{self.hostile.base_url}/Observation?_page=2"
        bundle["link"] = [{"relation": "next", "url": next_url}]
        return json.dumps(bundle).encode()

    def _send(self, body: bytes, status: int = 200, encoding: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", FHIR_JSON)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.end_headers()
        self.wfile.write(body)

    def _send_chunked(self, chunks: Iterator[bytes]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", FHIR_JSON)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        for chunk in chunks:
            if self.hostile._stopping.is_set():
                return
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    def _drip(self, body_only: bool) -> None:
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: {FHIR_JSON}\r\nConnection: close\r\n\r\n"
        ).encode()
        if body_only:
            self.wfile.write(head)
            self.wfile.flush()
            head = b""
        stream = head + BUNDLE_OPEN
        index = 0
        while not self.hostile._stopping.wait(self.hostile.interval):
            byte = stream[index : index + 1] if index < len(stream) else b" "
            self.wfile.write(byte)
            self.wfile.flush()
            index += 1


@functools.lru_cache(maxsize=4)
def prepared_body(fault: Fault, size: int) -> bytes:
    """The whole reply of a fault answered with a Content-Length, built once per size."""
    if fault is Fault.EMPTY_ENTRIES:
        return BUNDLE_OPEN + b"{}," * (size - 1) + b"{}" + BUNDLE_CLOSE
    if fault is Fault.IGNORES_COUNT:
        return _observations_of_size(size)
    if fault is Fault.DEEP:
        return BUNDLE_OPEN + b'{"resource":' + b"[" * size + b"]" * size + b"}" + BUNDLE_CLOSE
    raise ValueError(f"{fault} has no prepared body")


def _padding_chunks(size: int) -> Iterator[bytes]:
    """A `size`-byte Bundle: its opening, spaces, and its closing, in 64 kB pieces."""
    yield BUNDLE_OPEN
    block = b" " * (64 * 1024)
    for start in range(0, size, len(block)):
        yield block[: min(len(block), size - start)]
    yield BUNDLE_CLOSE


def _observations_of_size(size: int) -> bytes:
    """A searchset of distinct realistic Observations, `size` bytes or a little more."""
    one = len(json.dumps({"resource": lab_observation(0)})) + 1
    entries = [{"resource": lab_observation(n)} for n in range(size // one + 1)]
    return json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": entries}).encode()
