"""The generator parameter file: panel analytes, scorer endotypes, resolved sources."""

from __future__ import annotations

import tomllib
from importlib import resources

import pytest

from fhir_mappings.panel import load_panel
from model.assessment import Endotype
from model.synth import ANALYTES, GROUPS, PARAMETERS
from model.synth.parameters import (
    PARAMETERS_RESOURCE,
    REPRESENTATIONS,
    SCHEDULE_HOURS,
    SEND_OUTS,
    _check_vocabulary,
    _ParameterFile,
)


def _packaged_file() -> dict:
    text = resources.files("model.synth").joinpath(PARAMETERS_RESOURCE).read_text("utf-8")
    return tomllib.loads(text)


def test_every_panel_analyte_is_simulated_once() -> None:
    panel = load_panel()
    assert sorted(ANALYTES) == sorted(panel.analytes)
    assert set(REPRESENTATIONS) == set(panel.analytes)
    assert set(SCHEDULE_HOURS) == set(panel.of_tier(1))
    assert set(panel.of_tier(2)) == SEND_OUTS


def test_reference_endotypes_are_the_scorer_endotypes() -> None:
    assert GROUPS == (Endotype.QUIESCENT, Endotype.INTERMEDIATE, Endotype.HYPERINFLAMMATORY)


def test_every_source_citation_is_filled_in() -> None:
    assert all(row.source and "{" not in row.source for row in PARAMETERS)


def test_sent_codes_are_panel_codes_of_their_analyte() -> None:
    panel = load_panel()
    for analyte, options in REPRESENTATIONS.items():
        codes = {coding.code for coding in panel.codes_for(analyte)}
        assert {rep.code for _, rep in options} <= codes, analyte


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda data: data["decimals"].update(tnf=1), "decimals"),
        (lambda data: data["draws"]["latent_order"].remove("il6"), "latent_order"),
        (lambda data: data["representations"]["il6"][0].update(code="1988-5"), "1988-5"),
    ],
)
def test_a_parameter_file_off_the_panel_vocabulary_is_refused(change, message: str) -> None:
    data = _packaged_file()
    change(data)
    parsed = _ParameterFile.model_validate(data)
    params = {row.key: row.value for row in PARAMETERS}
    with pytest.raises(ValueError, match=message):
        _check_vocabulary(parsed, load_panel(), params)
