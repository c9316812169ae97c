"""Keys, settings and a probe app for exercising client authentication on its own."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, jsonify
from flask.testing import FlaskClient

from cds_service import auth
from cds_service.app import create_app
from cds_service.settings import Settings
from tests.support.tokens import SigningKey, jwks

BASE = "https://cds.example.org"
DISCOVERY = f"{BASE}/cds-services"
SERVICE = f"{DISCOVERY}/picu-immune-endotype"
OTHER_SERVICE = f"{DISCOVERY}/another-service"
FEEDBACK = f"{SERVICE}/feedback"
EHR = "https://ehr.example.org"
EHR_FHIR = f"{EHR}/fhir"


@pytest.fixture(scope="session")
def es_key() -> SigningKey:
    """The trusted client's ES384 key."""
    return SigningKey.generate("ES384")


@pytest.fixture(scope="session")
def rs_key() -> SigningKey:
    """The trusted client's RS384 key."""
    return SigningKey.generate("RS384")


@pytest.fixture(scope="session")
def stranger_key() -> SigningKey:
    """A well-formed ES384 key that no configured client publishes."""
    return SigningKey.generate("ES384")


def client_entry(*keys: SigningKey, iss: str = EHR, **fields: Any) -> dict[str, Any]:
    """One `[[clients]]` table with the keys inline (unless a key source is given)."""
    entry: dict[str, Any] = {"iss": iss, "fhir_servers": [EHR_FHIR]}
    if keys:
        entry["jwks"] = json.dumps(jwks(*keys))
    entry.update(fields)
    return entry


@pytest.fixture
def make_settings(
    tmp_path: Path, es_key: SigningKey, rs_key: SigningKey
) -> Callable[..., Settings]:
    """Settings for BASE with one trusted EHR client (inline ES384 + RS384 keys) by default."""

    def build(clients: list[dict[str, Any]] | None = None, **overrides: Any) -> Settings:
        chosen = clients if clients is not None else [client_entry(es_key, rs_key)]
        overrides.setdefault("state_dir", tmp_path / "state")
        return Settings(public_base_url=BASE, clients=chosen, **overrides)

    return build


def probe_app(settings: Settings) -> Flask:
    """The real app with its three authenticated views answering with the caller they accepted."""
    app = create_app(settings)
    base = settings.public_base_url

    def answer(audience: str) -> Any:
        return jsonify(asdict(auth.authenticate(audience)))

    app.view_functions["discovery.list_services"] = lambda: answer(f"{base}/cds-services")
    app.view_functions["hooks.call_service"] = lambda service_id: answer(
        f"{base}/cds-services/{service_id}"
    )
    app.view_functions["feedback.receive_feedback"] = lambda service_id: answer(
        f"{base}/cds-services/{service_id}/feedback"
    )
    return app


@pytest.fixture
def probe(make_settings: Callable[..., Settings]) -> Callable[..., FlaskClient]:
    """A test client of the probe app for the given settings overrides."""

    def build(clients: list[dict[str, Any]] | None = None, **overrides: Any) -> FlaskClient:
        return probe_app(make_settings(clients, **overrides)).test_client()

    return build


def path_of(url: str) -> str:
    """The path of one of our endpoint URLs."""
    return url.removeprefix(BASE)


def call(client: FlaskClient, url: str, token: str | None) -> Any:
    """Call the endpoint `url` (GET for discovery, POST otherwise) with an optional bearer token."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    if url == DISCOVERY:
        return client.get(path_of(url), headers=headers)
    return client.post(path_of(url), headers=headers, json={})
