"""`HookCaller`: post hooks, feedback and discovery calls with a JWT signed for the exact URL."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.support.tokens import SigningKey, make_token

SERVICE_ID = "picu-immune-endotype"


def without_uuids(value: Any) -> Any:
    """`value` with every `uuid` key removed, at any depth (a card's is fresh on every call)."""
    if isinstance(value, dict):
        return {key: without_uuids(item) for key, item in value.items() if key != "uuid"}
    if isinstance(value, list):
        return [without_uuids(item) for item in value]
    return value


@dataclass
class HookCaller:
    """Calls the service the way a trusted CDS client does: one fresh JWT per request."""

    client: FlaskClient
    key: SigningKey
    iss: str
    base_url: str  # the service's public_base_url, which the JWT audience must match

    def token(self, path: str, **token_options: Any) -> str:
        """A JWT whose `aud` is the public URL of `path` (e.g. `/cds-services`)."""
        return make_token(self.key, iss=self.iss, aud=f"{self.base_url}{path}", **token_options)

    def headers(self, path: str, **token_options: Any) -> dict[str, str]:
        """The Authorization header for a call to `path`."""
        return {"Authorization": f"Bearer {self.token(path, **token_options)}"}

    def discover(self) -> TestResponse:
        """GET /cds-services."""
        return self.client.get("/cds-services", headers=self.headers("/cds-services"))

    def prefetch_templates(self, service_id: str = SERVICE_ID) -> dict[str, str]:
        """The prefetch templates discovery advertises for one service."""
        services = {s["id"]: s for s in self.discover().get_json()["services"]}
        return dict(services[service_id].get("prefetch", {}))

    def call(
        self,
        body: Any,
        *,
        service_id: str = SERVICE_ID,
        content_type: str = "application/json",
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> TestResponse:
        """POST a hook request (`body` as JSON, or `raw` bytes as given)."""
        return self._post(f"/cds-services/{service_id}", body, content_type, raw, headers)

    def feedback(
        self,
        body: Any,
        *,
        service_id: str = SERVICE_ID,
        content_type: str = "application/json",
        raw: bytes | None = None,
    ) -> TestResponse:
        """POST to the service's feedback endpoint."""
        return self._post(f"/cds-services/{service_id}/feedback", body, content_type, raw, None)

    def _post(
        self,
        path: str,
        body: Any,
        content_type: str,
        raw: bytes | None,
        headers: dict[str, str] | None,
    ) -> TestResponse:
        data = raw if raw is not None else json.dumps(body).encode("utf-8")
        all_headers = {**self.headers(path), **(headers or {})}
        return self.client.post(path, data=data, content_type=content_type, headers=all_headers)


def hook_request(
    patient_id: str,
    *,
    prefetch: dict[str, Any] | None = None,
    fhir_server: str | None = None,
    fhir_authorization: dict[str, Any] | None = None,
    encounter_id: str | None = None,
    hook: str = "patient-view",
) -> dict[str, Any]:
    """A patient-view request body with a fresh hookInstance; optional parts only when given."""
    context: dict[str, Any] = {"userId": "Practitioner/picu-attending", "patientId": patient_id}
    if encounter_id is not None:
        context["encounterId"] = encounter_id
    body: dict[str, Any] = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": context}
    if prefetch is not None:
        body["prefetch"] = prefetch
    if fhir_server is not None:
        body["fhirServer"] = fhir_server
    if fhir_authorization is not None:
        body["fhirAuthorization"] = fhir_authorization
    return body
