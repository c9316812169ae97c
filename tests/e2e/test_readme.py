"""The README documents every setting, so a new key cannot ship undocumented."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from cds_service.settings import ENV_PREFIX, ClientSettings, Settings, load_settings

README = Path(__file__).resolve().parents[2] / "README.md"
TABLE_SETTINGS = {"clients": ClientSettings}  # lists of tables documented in their own table


def _dotted_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += _dotted_keys(annotation, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


@pytest.mark.parametrize("key", _dotted_keys(Settings))
def test_readme_documents_each_setting_with_its_environment_form(key: str) -> None:
    text = README.read_text()
    environment_name = ENV_PREFIX + key.replace(".", "__").upper()
    assert f"| `{key}` |" in text
    assert f"`{environment_name}`" in text


@pytest.mark.parametrize(
    "key",
    [f"{table}.{name}" for table, model in TABLE_SETTINGS.items() for name in model.model_fields],
)
def test_readme_documents_each_client_table_key(key: str) -> None:
    assert f"| `{key.split('.', 1)[1]}` |" in README.read_text()


def test_readme_settings_example_loads_as_valid_settings(tmp_path: Path) -> None:
    section = README.read_text().split("## Configuration", 1)[1]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    config = tmp_path / "settings.toml"
    config.write_text(example)
    settings = load_settings(config)
    assert settings.clients[0].fhir_servers == ["https://ehr.example-hospital.org/fhir/r4"]
    assert settings.fhir.timeout_seconds == 1.5
