"""The settings object: file, environment, precedence and refusals at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from cds_service.settings import load_settings


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(text)
    return path


def test_environment_overrides_file_and_nested_keys_merge(tmp_path, monkeypatch):
    config = write_toml(tmp_path, "window_hours = 24\n[fhir]\ntimeout_seconds = 2\n")
    monkeypatch.setenv("PICU_ENDOTYPE_WINDOW_HOURS", "12")
    monkeypatch.setenv("PICU_ENDOTYPE_FHIR__DEADLINE_SECONDS", "3")
    settings = load_settings(config)
    assert settings.window_hours == 12
    assert settings.fhir.timeout_seconds == 2
    assert settings.fhir.deadline_seconds == 3


def test_config_path_comes_from_environment(tmp_path, monkeypatch):
    config = write_toml(tmp_path, 'public_base_url = "https://cds.example.org/"\n')
    monkeypatch.setenv("PICU_ENDOTYPE_CONFIG", str(config))
    assert load_settings().public_base_url == "https://cds.example.org"


@pytest.mark.parametrize("written", ['"none"', '"None"'])
def test_age_gate_switched_off_from_toml(tmp_path, written):
    config = write_toml(tmp_path, f"max_age_years = {written}\n")
    assert load_settings(config).max_age_years is None


def test_age_gate_switched_off_from_environment(monkeypatch):
    monkeypatch.setenv("PICU_ENDOTYPE_MAX_AGE_YEARS", "none")
    assert load_settings().max_age_years is None


def test_age_gate_default_is_eighteen_years():
    assert load_settings().max_age_years == 18


@pytest.mark.parametrize(
    "text",
    [
        "max_age_years = 0\n",
        'max_age_years = "never"\n',
        "unknown_key = 1\n",
        'allowed_algorithms = ["ES384", "HS256"]\n',
        'public_base_url = "cds.example.org"\n',
        '[[clients]]\niss = "https://ehr.example.org"\n',
    ],
)
def test_invalid_settings_fail_at_start(tmp_path, text):
    with pytest.raises(ValidationError):
        load_settings(write_toml(tmp_path, text))


def test_missing_settings_file_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "absent.toml")
