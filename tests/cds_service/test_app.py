"""The application factory, /healthz, and the scorer chosen by settings."""

from __future__ import annotations

import importlib
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from flask import Flask

from cds_service.app import SCORER_KEY, create_app
from cds_service.settings import Settings
from tests.cds_service.conftest import MakeSettings


def test_healthz_answers_without_authentication(app: Flask) -> None:
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "version": version("picu-endotype")}


def test_factory_keeps_the_given_settings_in_app_extensions(settings: Settings) -> None:
    app = create_app(settings)
    assert app.extensions["picu_endotype"] is settings
    assert app.config["MAX_CONTENT_LENGTH"] == settings.max_body_bytes


def test_factory_without_settings_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PICU_ENDOTYPE_PUBLIC_BASE_URL", "https://cds.from-env.test/")
    monkeypatch.setenv("PICU_ENDOTYPE_STATE_DIR", str(tmp_path))
    app = create_app()
    assert app.extensions["picu_endotype"].public_base_url == "https://cds.from-env.test"


def test_factory_builds_independent_apps(make_settings: MakeSettings) -> None:
    first = create_app(make_settings(public_base_url="https://one.test"))
    second = create_app(make_settings(public_base_url="https://two.test"))
    assert first.extensions["picu_endotype"].public_base_url == "https://one.test"
    assert second.extensions["picu_endotype"].public_base_url == "https://two.test"


def test_rules_scorer_is_loaded_by_default(app: Flask) -> None:
    assert app.extensions[SCORER_KEY].info.kind == "rules"


def test_model_scorer_is_loaded_when_settings_choose_it(make_settings: MakeSettings) -> None:
    app = create_app(make_settings(scorer="model"))
    info = app.extensions[SCORER_KEY].info
    assert info.kind == "model"
    assert info.synthetic_training_data


def test_model_card_is_served(app: Flask) -> None:
    response = app.test_client().get("/model-card?format=json")
    assert response.status_code == 200


def test_dev_mode_app_on_a_public_host_is_refused(make_settings: MakeSettings) -> None:
    with pytest.raises(RuntimeError, match="loopback"):
        create_app(make_settings(dev_allow_unauthenticated=True, host="0.0.0.0"))


def test_preflight_from_an_allowed_origin_is_answered_without_authentication(
    make_settings: MakeSettings,
) -> None:
    origin = "https://sandbox.cds-hooks.org"
    app = create_app(make_settings(cors_allowed_origins=[origin]))
    response = app.test_client().options(
        "/cds-services/picu-immune-endotype",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert 200 <= response.status_code < 300
    assert response.headers["Access-Control-Allow-Origin"] == origin
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]


def test_wsgi_module_builds_the_app_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PICU_ENDOTYPE_PUBLIC_BASE_URL", "https://cds.wsgi.test")
    monkeypatch.setenv("PICU_ENDOTYPE_STATE_DIR", str(tmp_path))
    monkeypatch.delitem(sys.modules, "cds_service.wsgi", raising=False)
    wsgi = importlib.import_module("cds_service.wsgi")
    assert wsgi.app.extensions["picu_endotype"].public_base_url == "https://cds.wsgi.test"
    assert wsgi.app.test_client().get("/healthz").status_code == 200


def test_factory_builds_the_unit_registry_and_parses_the_panel_units(settings: Settings) -> None:
    from fhir_mappings import units

    units._registry.cache_clear()
    units._parse.cache_clear()

    create_app(settings)

    assert units._registry.cache_info().currsize == 1
    parsed_before = units._parse.cache_info()
    units.convert(1.0, "mg/dL", "mg/L")
    units.convert(1.0, "10*3/uL", "10*9/L")
    assert units._parse.cache_info().misses == parsed_before.misses
