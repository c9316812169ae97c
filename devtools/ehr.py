"""A demo EHR: a CDS client with a throw-away ES384 key, and the requests it sends.

It signs one fresh client JWT per call, runs the discovery prefetch templates against a FHIR
server as an EHR would, and builds patient-view requests with prefetch or with
`fhirAuthorization`. Nothing here logs or prints a token.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from cds_service.discovery import PATIENT_VIEW, SERVICE_ID
from fhir_mappings.prefetch import fill_template

DEMO_ISSUER = "https://demo-ehr.picu-endotype.invalid"
DEMO_USER = "Practitioner/demo-clinician"


@dataclass
class DemoEhr:
    """A CDS client with an ephemeral ES384 key; signs one fresh JWT per call."""

    issuer: str = DEMO_ISSUER
    kid: str = field(default_factory=lambda: f"demo-{uuid.uuid4().hex[:8]}")
    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1()), repr=False
    )

    def jwks_json(self) -> str:
        """The public key as a JWK Set, JSON text (what the service's settings hold inline)."""
        jwk = json.loads(ECAlgorithm.to_jwk(self.private_key.public_key()))
        jwk.update({"kid": self.kid, "alg": "ES384", "use": "sig"})
        return json.dumps({"keys": [jwk]})

    def token(self, audience: str, lifetime: int = 300) -> str:
        """A signed client JWT for exactly `audience`, with a fresh `jti`."""
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": audience,
            "iat": now,
            "exp": now + lifetime,
            "jti": str(uuid.uuid4()),
        }
        headers = {"kid": self.kid, "typ": "JWT"}
        return jwt.encode(claims, self.private_key, algorithm="ES384", headers=headers)


def build_prefetch(
    fhir_base: str, templates: Mapping[str, str], context: Mapping[str, Any], timeout: float = 30
) -> dict[str, Any]:
    """Run the discovery prefetch templates against the FHIR server, as an EHR would."""
    prefetch: dict[str, Any] = {}
    with requests.Session() as session:
        for key, template in templates.items():
            response = session.get(
                f"{fhir_base.rstrip('/')}/{fill_template(template, context)}",
                headers={"Accept": "application/fhir+json"},
                timeout=timeout,
            )
            prefetch[key] = response.json() if response.status_code == 200 else None
    return prefetch


def hook_request(
    patient_id: str,
    fhir_base: str,
    *,
    prefetch: Mapping[str, Any] | None = None,
    access_token: str | None = None,
) -> dict[str, Any]:
    """A patient-view request: with prefetch, or with `fhirAuthorization` for direct queries."""
    body: dict[str, Any] = {
        "hookInstance": str(uuid.uuid4()),
        "hook": PATIENT_VIEW,
        "fhirServer": fhir_base,
        "context": {"userId": DEMO_USER, "patientId": patient_id},
    }
    if prefetch is not None:
        body["prefetch"] = dict(prefetch)
    if access_token is not None:
        body["fhirAuthorization"] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/Patient.read user/Observation.read",
            "subject": "picu-endotype-demo",
        }
    return body


def discover(session: requests.Session, service_url: str, ehr: DemoEhr) -> dict[str, Any]:
    """GET /cds-services and return the endotype service's entry."""
    url = f"{service_url}/cds-services"
    response = session.get(url, headers={"Authorization": f"Bearer {ehr.token(url)}"}, timeout=30)
    response.raise_for_status()
    services = {service["id"]: service for service in response.json()["services"]}
    return services[SERVICE_ID]


def call_hook(
    session: requests.Session, service_url: str, ehr: DemoEhr, body: Mapping[str, Any]
) -> dict[str, Any]:
    """POST one hook request with a fresh JWT; RuntimeError with the status on failure."""
    url = f"{service_url}/cds-services/{SERVICE_ID}"
    response = session.post(
        url, json=body, headers={"Authorization": f"Bearer {ehr.token(url)}"}, timeout=30
    )
    if response.status_code != 200:
        raise RuntimeError(f"patient-view answered {response.status_code}: {response.text[:500]}")
    return response.json()
