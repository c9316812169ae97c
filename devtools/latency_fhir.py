"""A loopback FHIR stub that answers searches from memory after an injected latency.

The benchmarks use it as the EHR's FHIR server: it costs next to no CPU, keeps connections
alive, answers every request after `latency` seconds (asyncio, so hundreds can wait at once),
and counts the requests it answers. It implements the few search parameters the service sends:
`patient`/`subject`, `code` (comma lists of `system|code` or `code`), `status`, `date` (with the
`ge`, `gt`, `le`, `lt` and `eq` prefixes), `_sort=-date`, `_count` with next links, and
`_include`/`_include:iterate` for `Encounter:location` and `Location:partof`; other parameters
are ignored. `GET /_stats` (outside FHIR) answers the request count; `POST /_reset` zeroes it.

Run it in its own process (`LatencyFhir.spawn(...)`) so that
its event loop does not share an interpreter with the load generator.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests

from devtools.sandbox_fhir import LOOPBACK, free_port

FHIR_JSON = "application/fhir+json"
BASE_PATH = "/fhir"
DEFAULT_PAGE_SIZE = 50
_RUN = "import sys; from devtools.latency_fhir import main; sys.exit(main(sys.argv[1:]))"
# search parameter -> where a resource keeps the reference it matches
_INCLUDES: dict[str, tuple[str, str]] = {
    "Encounter:location": ("Encounter", "location"),
    "Location:partof": ("Location", "partOf"),
}

Resource = dict[str, Any]


# --- the search semantics (pure) ---


def _subject_id(resource: Resource) -> str | None:
    for field_name in ("subject", "patient"):
        reference = (resource.get(field_name) or {}).get("reference")
        if isinstance(reference, str) and reference.startswith("Patient/"):
            return reference.removeprefix("Patient/")
    return None


def _codings(resource: Resource) -> Iterator[tuple[str | None, str | None]]:
    for coding in (resource.get("code") or {}).get("coding") or []:
        yield coding.get("system"), coding.get("code")


def _matches_code(resource: Resource, tokens: str) -> bool:
    wanted = [
        token.partition("|") if "|" in token else ("", "", token) for token in tokens.split(",")
    ]
    for system, code in _codings(resource):
        for want_system, bar, want_code in wanted:
            if code == want_code and (not bar or want_system in ("", system)):
                return True
    return False


def _effective(resource: Resource) -> datetime | None:
    text = resource.get("effectiveDateTime") or (resource.get("effectivePeriod") or {}).get("start")
    if not isinstance(text, str):
        text = (resource.get("period") or {}).get("start") or resource.get("authoredOn")
    if not isinstance(text, str):
        return None
    return _instant(text)


def _instant(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _matches_date(resource: Resource, value: str) -> bool:
    prefix, bound_text = (value[:2], value[2:]) if value[:2].isalpha() else ("eq", value)
    bound, moment = _instant(bound_text), _effective(resource)
    if bound is None or moment is None:
        return False
    tests = {
        "ge": moment >= bound,
        "gt": moment > bound,
        "le": moment <= bound,
        "lt": moment < bound,
        "eq": moment == bound,
    }
    return tests.get(prefix, False)


def _matches(resource: Resource, name: str, value: str) -> bool:
    if name in ("patient", "subject"):
        return _subject_id(resource) == value.removeprefix("Patient/")
    if name == "code":
        return _matches_code(resource, value)
    if name == "status":
        return resource.get("status") in value.split(",")
    if name == "date":
        return _matches_date(resource, value)
    return True  # parameters the stub does not implement are ignored


def _sort_key(resource: Resource) -> float:
    moment = _effective(resource)
    return moment.timestamp() if moment else float("-inf")


@dataclass(frozen=True)
class Store:
    """The resources the stub serves, by type and id."""

    by_type: Mapping[str, Mapping[str, Resource]]

    @classmethod
    def of(cls, resources: Iterable[Resource]) -> Store:
        by_type: dict[str, dict[str, Resource]] = {}
        for resource in resources:
            by_type.setdefault(resource["resourceType"], {})[resource["id"]] = resource
        return cls(by_type)

    def read(self, resource_type: str, resource_id: str) -> Resource | None:
        return self.by_type.get(resource_type, {}).get(resource_id)

    def search(self, resource_type: str, params: Sequence[tuple[str, str]]) -> list[Resource]:
        """Matches of every filter parameter, most recent first when `_sort=-date`."""
        found = [
            resource
            for resource in self.by_type.get(resource_type, {}).values()
            if all(_matches(resource, name, value) for name, value in params if name[0] != "_")
        ]
        if ("_sort", "-date") in params:
            found.sort(key=_sort_key, reverse=True)
        return found

    def included(self, matches: Sequence[Resource], params: Sequence[tuple[str, str]]) -> list:
        """Resources named by `_include` (and, iterating, `_include:iterate`) of the matches."""
        rules = [_INCLUDES.get(value) for name, value in params if name.startswith("_include")]
        known = [rule for rule in rules if rule is not None]
        seen: dict[tuple[str, str], Resource] = {}
        frontier = list(matches)
        while frontier:
            added = []
            for resource in frontier:
                for source_type, field_name in known:
                    if resource.get("resourceType") != source_type:
                        continue
                    for target in self._referenced(resource, field_name):
                        key = (target["resourceType"], target["id"])
                        if key not in seen:
                            seen[key] = target
                            added.append(target)
            frontier = added
        return list(seen.values())

    def _referenced(self, resource: Resource, field_name: str) -> Iterator[Resource]:
        values = resource.get(field_name)
        items = values if isinstance(values, list) else [values]
        for item in items:
            reference = (item or {}).get("location", item) if field_name == "location" else item
            text = (reference or {}).get("reference")
            if isinstance(text, str) and "/" in text:
                target = self.read(*text.split("/", 1))
                if target is not None:
                    yield target


def search_bundle(store: Store, base: str, resource_type: str, query: str) -> Resource:
    """The searchset Bundle one page of a search answers, with its next link."""
    params = parse_qsl(query, keep_blank_values=True)
    options = dict(params)
    count = int(options.get("_count", DEFAULT_PAGE_SIZE))
    offset = int(options.get("_offset", 0))
    matches = store.search(resource_type, params)
    page = matches[offset : offset + count]
    entries = [_entry(base, resource, "match") for resource in page]
    entries += [_entry(base, resource, "include") for resource in store.included(page, params)]
    links = [{"relation": "self", "url": f"{base}/{resource_type}?{query}"}]
    if offset + count < len(matches):
        following = [(k, v) for k, v in params if k != "_offset"] + [
            ("_offset", str(offset + count))
        ]
        links.append({"relation": "next", "url": f"{base}/{resource_type}?{urlencode(following)}"})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(matches),
        "link": links,
        "entry": entries,
    }


def _entry(base: str, resource: Resource, mode: str) -> Resource:
    return {
        "fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}",
        "resource": resource,
        "search": {"mode": mode},
    }


# --- the server ---


class _Server:
    """The asyncio HTTP/1.1 server: keep-alive, GET only, one answer per request after a delay."""

    def __init__(self, store: Store, latency: float, port: int) -> None:
        self.store = store
        self.latency = latency
        self.port = port
        self.base = f"http://{LOOPBACK}:{port}{BASE_PATH}"
        self.requests = 0
        self._cache: dict[str, tuple[int, bytes]] = {}

    async def serve(self) -> None:
        server = await asyncio.start_server(self._connection, LOOPBACK, self.port, backlog=1024)
        async with server:
            await server.serve_forever()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, target, headers = _parse_head(head)
                length = int(headers.get("content-length", "0") or 0)
                if length:
                    await reader.readexactly(length)
                status, body = await self._answer(method, target)
                closing = headers.get("connection", "").lower() == "close"
                writer.write(_response(status, body, closing))
                await writer.drain()
                if closing:
                    break
        writer.close()

    async def _answer(self, method: str, target: str) -> tuple[int, bytes]:
        parts = urlsplit(target)
        if parts.path == "/_stats":
            return 200, json.dumps({"requests": self.requests}).encode()
        if parts.path == "/_reset" and method == "POST":
            self.requests = 0
            return 200, b"{}"
        self.requests += 1
        answer = self._cache.get(target)
        if answer is None:
            answer = self._fhir(method, parts.path, parts.query)
            self._cache[target] = answer
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        return answer

    def _fhir(self, method: str, path: str, query: str) -> tuple[int, bytes]:
        if method != "GET" or not path.startswith(BASE_PATH + "/"):
            return 404, _outcome("not-found")
        segments = path[len(BASE_PATH) + 1 :].split("/")
        if segments == ["metadata"]:
            return 200, json.dumps(
                {"resourceType": "CapabilityStatement", "status": "active"}
            ).encode()
        if len(segments) == 2:
            resource = self.store.read(*segments)
            return (
                (200, json.dumps(resource).encode()) if resource else (404, _outcome("not-found"))
            )
        if len(segments) == 1:
            bundle = search_bundle(self.store, self.base, segments[0], query)
            return 200, json.dumps(bundle).encode()
        return 404, _outcome("not-found")


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    return method, target, headers


def _response(status: int, body: bytes, closing: bool) -> bytes:
    reason = {200: "OK", 404: "Not Found"}.get(status, "Error")
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {FHIR_JSON}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: {'close' if closing else 'keep-alive'}\r\n\r\n"
    )
    return head.encode() + body


def _outcome(code: str) -> bytes:
    issue = {"severity": "error", "code": code}
    return json.dumps({"resourceType": "OperationOutcome", "issue": [issue]}).encode()


# --- running it ---


@dataclass
class LatencyFhir:
    """A stub running in its own process; `base_url` is its FHIR base."""

    process: subprocess.Popen[bytes]
    port: int
    latency: float

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}{BASE_PATH}"

    @classmethod
    @contextlib.contextmanager
    def spawn(cls, resources: Iterable[Resource], latency: float) -> Iterator[LatencyFhir]:
        """Start a stub process serving `resources` after `latency` seconds; stop it at the end."""
        port = free_port()
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as data:
            json.dump(list(resources), data)
        command = [sys.executable, "-c", _RUN, data.name, str(port), str(latency)]
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        stub = cls(process, port, latency)
        try:
            stub._wait_until_up()
            yield stub
        finally:
            process.terminate()
            process.wait(timeout=10)
            Path(data.name).unlink(missing_ok=True)

    def _wait_until_up(self, timeout: float = 30.0) -> None:
        ends = time.monotonic() + timeout
        while time.monotonic() < ends:
            if self.process.poll() is not None:
                raise RuntimeError("the FHIR stub exited during start-up")
            with contextlib.suppress(requests.RequestException):
                requests.get(f"http://{LOOPBACK}:{self.port}/_stats", timeout=1)
                return
            time.sleep(0.05)
        raise RuntimeError("the FHIR stub did not come up")

    def request_count(self) -> int:
        """Requests answered (FHIR requests only) since start or the last reset."""
        reply = requests.get(f"http://{LOOPBACK}:{self.port}/_stats", timeout=5)
        return int(reply.json()["requests"])

    def reset_count(self) -> None:
        """Set the request count back to zero."""
        requests.post(f"http://{LOOPBACK}:{self.port}/_reset", timeout=5)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve: `RESOURCES.json PORT LATENCY_SECONDS`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("resources", type=Path, help="JSON list of FHIR resources to serve")
    parser.add_argument("port", type=int)
    parser.add_argument("latency", type=float, help="seconds before each answer")
    args = parser.parse_args(argv)
    store = Store.of(json.loads(args.resources.read_text()))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_Server(store, args.latency, args.port).serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
