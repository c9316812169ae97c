"""Every settings example in docs/registering-clients.md loads and builds an authenticator."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cds_service.auth import Authenticator
from cds_service.settings import load_settings

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
