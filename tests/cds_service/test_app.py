"""The application factory, /healthz, and the scorer chosen by settings."""

from __future__ import annotations

import importlib
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from flask import Flask

from cds_service.app import create_app
from cds_service.settings import Settings
from cds_service.state import app_state
from tests.cds_service.conftest import MakeSettings


def test_healthz_answers_without_authentication(app: Flask) -> None:
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ok",
        "database": "ok",
        "version": version("picu-endotype"),
    }


def test_factory_runs_the_app_with_the_given_settings(settings: Settings) -> None:
    app = create_app(settings)
    assert app_state(app).settings is settings
    assert app.config["MAX_CONTENT_LENGTH"] == settings.max_body_bytes


def test_factory_without_settings_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PICU_ENDOTYPE_PUBLIC_BASE_URL", "https://cds.from-env.test/")
    monkeypatch.setenv("PICU_ENDOTYPE_STATE_DIR", str(tmp_path))
    app = create_app()
    assert app_state(app).settings.public_base_url == "https://cds.from-env.test"


def test_factory_builds_independent_apps(make_settings: MakeSettings) -> None:
    first = create_app(make_settings(public_base_url="https://one.test"))
    second = create_app(make_settings(public_base_url="https://two.test"))
    assert app_state(first).settings.public_base_url == "https://one.test"
    assert app_state(second).settings.public_base_url == "https://two.test"


def _served_model_card(app: Flask) -> dict:
    return app.test_client().get("/model-card?format=json").get_json()


def test_rules_scorer_is_loaded_by_default(app: Flask) -> None:
    assert _served_model_card(app)["kind"] == "rules"


def test_model_scorer_is_loaded_when_settings_choose_it(make_settings: MakeSettings) -> None:
    card = _served_model_card(create_app(make_settings(scorer="model")))
    assert card["kind"] == "model"
    assert "SYNTHETIC" in card["warning"]


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
    assert app_state(wsgi.app).settings.public_base_url == "https://cds.wsgi.test"
    assert wsgi.app.test_client().get("/healthz").status_code == 200


START_UP_THEN_CONVERT = """
import sys
from cds_service.app import create_app
from cds_service.settings import Settings
from fhir_mappings.panel import load_panel
from fhir_mappings import units
from fhir_mappings.units import UNIT_TEXT_ALIASES, convert, is_valid_ucum

create_app(Settings(state_dir=sys.argv[1]))

def refuse(self, unit):
    raise RuntimeError(f"parsed at request time: {unit}")

units._Ucum.from_ucum = refuse
for analyte in load_panel().analytes.values():
    for coding in analyte.codes:
        if coding.unit and not coding.arbitrary_units:
            convert(1.0, coding.unit, analyte.unit, molar_mass=analyte.molar_mass)
assert all(is_valid_ucum(unit) for unit in UNIT_TEXT_ALIASES.values())
assert not is_valid_ucum("mkat/dL"), "the refusing parser was not in place"
print("ok")
"""


@pytest.mark.slow
def test_after_start_up_panel_and_unit_text_units_convert_without_parsing(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", START_UP_THEN_CONVERT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip() == "ok"
