"""Every settings example in docs/registering-clients.md loads and builds an authenticator."""

from __future__ import annotations

import json
import re
import socket
import time
import uuid
from pathlib import Path

import jwt
import pytest

from cds_service.auth import Authenticator
from cds_service.settings import load_settings
from tests.support.leak_guard import register_secret
from tests.support.tokens import SigningKey

DOC = Path(__file__).parents[2] / "docs" / "registering-clients.md"
TOML_BLOCKS = re.findall(r"```toml\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_the_document_has_an_example_per_client_kind():
    assert len(TOML_BLOCKS) == 4


@pytest.mark.parametrize("block", TOML_BLOCKS, ids=["generic", "epic", "oracle", "sandbox"])
def test_settings_example_loads_and_builds_an_authenticator(tmp_path: Path, block: str):
    config = tmp_path / "settings.toml"
    config.write_text(block)

    settings = load_settings(config, state_dir=tmp_path / "state")
    authenticator = Authenticator(settings)

    assert set(authenticator.clients) == {client.iss for client in settings.clients}
    assert settings.clients


def test_sandbox_example_holds_the_published_sandbox_key(conformance_example):
    sandbox_block = TOML_BLOCKS[3]
    published = conformance_example("sandbox-jwks.json")["keys"][0]

    for field in ("kid", "x", "y"):
        assert published[field] in sandbox_block


SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
SANDBOX_ISS = "https://sandbox.cds-hooks.org"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"


def _sandbox_shaped_token(key: SigningKey, audience: str) -> str:
    """A token as the sandbox signs it: ES384, its kid, its jku, sub, a five-minute lifetime."""
    now = int(time.time())
    claims = {
        "iss": SANDBOX_ISS,
        "sub": "48163c5e-88b5-4cb3-92d3-23b800caa927",
        "aud": audience,
        "exp": now + 300,
        "iat": now,
        "jti": str(uuid.uuid4()),
    }
    header = {"alg": "ES384", "typ": "JWT", "kid": SANDBOX_KID, "jku": SANDBOX_JKU}
    return register_secret(jwt.encode(claims, key.private_key, algorithm="ES384", headers=header))


def _doc_entry_with_key(block: str, key: SigningKey) -> str:
    """The sandbox block as documented, with its public x and y swapped for a test key's.

    The sandbox's private key is not part of this repository, so a test key stands in for it;
    everything else (iss, kid, crv, alg, use, the rest of the settings) is the documented text.
    """
    published = json.loads(re.search(r"jwks = '(.*)'", block).group(1))["keys"][0]
    ours = key.public_jwk()
    return block.replace(published["x"], ours["x"]).replace(published["y"], ours["y"])


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_the_documented_sandbox_entry_verifies_a_sandbox_token_without_network(
    tmp_path: Path, no_network: None
):
    key = SigningKey.generate("ES384", kid=SANDBOX_KID)
    config = tmp_path / "settings.toml"
    config.write_text(_doc_entry_with_key(TOML_BLOCKS[3], key))
    settings = load_settings(
        config, public_base_url="https://cds.test.example", state_dir=tmp_path / "state"
    )
    authenticator = Authenticator(settings)
    service_url = "https://cds.test.example/cds-services/picu-immune-endotype"

    caller = authenticator.verify(_sandbox_shaped_token(key, service_url), service_url)

    assert caller.iss == SANDBOX_ISS and caller.authenticated
    assert settings.cors_allowed_origins == ["https://sandbox.cds-hooks.org"]


def test_the_sandbox_discovers_the_service_with_or_without_a_trailing_slash(
    tmp_path: Path, no_network: None
):
    from cds_service.app import create_app

    key = SigningKey.generate("ES384", kid=SANDBOX_KID)
    config = tmp_path / "settings.toml"
    config.write_text(_doc_entry_with_key(TOML_BLOCKS[3], key))
    base = "https://cds.test.example"
    settings = load_settings(config, public_base_url=base, state_dir=tmp_path / "state")
    client = create_app(settings).test_client()

    for typed in ("/cds-services", "/cds-services/"):
        token = _sandbox_shaped_token(key, f"{base}{typed}")
        response = client.get(typed, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, typed
        assert [s["id"] for s in response.get_json()["services"]] == ["picu-immune-endotype"]
