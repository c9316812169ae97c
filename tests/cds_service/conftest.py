"""Service fixtures: settings with one trusted client, the app, a HookCaller and a FHIR stub."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from pytest_httpserver import HTTPServer

from cds_service import hooks
from cds_service.app import create_app
from cds_service.settings import ClientSettings, Settings
from tests.support.hook_caller import HookCaller
from tests.support.tokens import SigningKey, jwks

PUBLIC_BASE_URL = "https://cds.test"
CLIENT_ISS = "https://ehr.test"

MakeSettings = Callable[..., Settings]


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    """The trusted client's ES384 key."""
    return SigningKey.generate("ES384")


@pytest.fixture
def fhir_base(httpserver: HTTPServer) -> str:
    """The stub FHIR server's base URL (on the client's allow-list)."""
    return httpserver.url_for("/fhir")


@pytest.fixture
def make_settings(tmp_path: Path, signing_key: SigningKey, fhir_base: str) -> MakeSettings:
    """Settings for one client with inline JWKS, state in a temporary folder, plus overrides."""

    def build(**overrides: Any) -> Settings:
        client = ClientSettings(
            iss=CLIENT_ISS, jwks=json.dumps(jwks(signing_key)), fhir_servers=[fhir_base]
        )
        values: dict[str, Any] = {
            "public_base_url": PUBLIC_BASE_URL,
            "clients": [client],
            "insecure_http_fhir_hosts": ["localhost"],
            "state_dir": tmp_path / "state",
        }
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
def settings(make_settings: MakeSettings) -> Settings:
    """Default test settings."""
    return make_settings()


@pytest.fixture
def app(settings: Settings) -> Flask:
    """The service under test."""
    return create_app(settings)


@pytest.fixture
def caller_for(signing_key: SigningKey) -> Callable[[Flask], HookCaller]:
    """A trusted CDS client for any app built from `make_settings`."""

    def build(app: Flask) -> HookCaller:
        return HookCaller(app.test_client(), signing_key, CLIENT_ISS, PUBLIC_BASE_URL)

    return build


@pytest.fixture
def caller(app: Flask, caller_for: Callable[[Flask], HookCaller]) -> HookCaller:
    """A trusted CDS client calling the app."""
    return caller_for(app)


PinClock = Callable[[datetime], None]


@pytest.fixture
def pin_hook_clock(monkeypatch: pytest.MonkeyPatch) -> PinClock:
    """Pin the moment every hook takes as "now", for tests that compare the cards of several
    calls: a card shows the current minute (the Phoenix course's last point, hours since the
    anchor), so two calls either side of a minute's turn would differ for that alone."""

    def pin(moment: datetime) -> None:
        class PinnedDatetime(datetime):
            @classmethod
            def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
                return moment if tz is None else moment.astimezone(tz)

        monkeypatch.setattr(hooks, "datetime", PinnedDatetime)

    return pin
