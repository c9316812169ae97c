"""The generator's parameters, read from `parameters.toml` and checked against the panel.

Every number that shapes the cohort is one `Parameter` (key, value, unit, source); how results
are drawn and sent (schedules, reference limits, decimals, representations) comes from the same
file. Analyte keys must be the panel's: the file is refused at import otherwise.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

from fhir_mappings.panel import Panel, load_panel
from model.assessment import Endotype

PARAMETERS_RESOURCE = "parameters.toml"
ASSUMPTION = "assumption"

# Latent groups, index order used throughout (Lindell A, B, C): reference endotype labels, and
# the suffixes of the per-group parameter keys.
GROUPS: tuple[str, ...] = (
    Endotype.QUIESCENT.value,
    Endotype.INTERMEDIATE.value,
    Endotype.HYPERINFLAMMATORY.value,
)
GROUP_KEYS: tuple[str, ...] = ("quiescent", "intermediate", "hyperinflammatory")


@dataclass(frozen=True, slots=True)
class Parameter:
    """One number that shapes the cohort, with its unit and source (or "assumption")."""

    key: str
    value: float
    unit: str
    source: str


@dataclass(frozen=True, slots=True)
class Representation:
    """How one result is sent: the code, the unit and the factor from the canonical unit."""

    code: str
    unit: str  # valueQuantity.unit as displayed
    ucum: str | None  # valueQuantity.code; None sends the unit text only
    factor: float = 1.0
    decimals: int | None = None  # None: the analyte's default


class _Strict(BaseModel):
    """Immutable, and unknown keys in the parameter file are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class _Entry(_Strict):
    """One `[[parameters]]` entry: a single `value`, or one value per group in `by_group`."""

    key: str
    unit: str
    source: str
    value: int | float | None = None
    by_group: tuple[float, float, float] | None = None

    @model_validator(mode="after")
    def _one_value(self) -> _Entry:
        """Exactly one of `value` and `by_group`."""
        if (self.value is None) == (self.by_group is None):
            raise ValueError(f"parameter {self.key}: give exactly one of value and by_group")
        return self


class _Draws(_Strict):
    """Orders and times that are structure rather than cited numbers."""

    latent_order: tuple[str, ...]
    site_offsets_minutes: tuple[int, ...]
    send_out_hours: tuple[float, ...]
    send_out_day5_hour: float
    pre_onset: tuple[str, ...]


class _RepresentationEntry(_Strict):
    """One `[[representations.<analyte>]]` entry."""

    code: str
    unit: str
    share: str | None = None
    ucum: str | None = None
    factor: float = 1.0
    decimals: int | None = None


class _ParameterFile(_Strict):
    """The whole parameter file."""

    sources: dict[str, str]
    parameters: tuple[_Entry, ...]
    draws: _Draws
    schedule_hours: dict[str, tuple[float, ...]]
    reference_high: dict[str, float]
    reference_low: dict[str, float]
    decimals: dict[str, int]
    representations: dict[str, tuple[_RepresentationEntry, ...]]


def _rows(entry: _Entry, sources: Mapping[str, str]) -> list[Parameter]:
    """The parameter rows of one entry, its citations filled in."""
    try:
        source = entry.source.format_map(sources)
    except KeyError as unknown:
        raise ValueError(f"parameter {entry.key}: unknown source {unknown}") from None
    if entry.by_group is None:
        return [Parameter(entry.key, entry.value, entry.unit, source)]  # type: ignore[arg-type]
    return [
        Parameter(f"{entry.key}.{group}", value, entry.unit, source)
        for group, value in zip(GROUP_KEYS, entry.by_group, strict=True)
    ]


def _read_file() -> _ParameterFile:
    """The packaged parameter file, validated."""
    text = resources.files(__package__).joinpath(PARAMETERS_RESOURCE).read_text(encoding="utf-8")
    return _ParameterFile.model_validate(tomllib.loads(text))


def _check_keys(name: str, keys: Any, expected: Any) -> None:
    """Refuse a table whose analyte keys are not exactly the expected ones."""
    if set(keys) != set(expected) or len(list(keys)) != len(set(keys)):
        raise ValueError(
            f"{PARAMETERS_RESOURCE} {name}: {sorted(keys)}, expected {sorted(expected)}"
        )


def _check_vocabulary(data: _ParameterFile, panel: Panel, params: Mapping[str, float]) -> None:
    """Every analyte a panel key, every panel analyte described, every code and share known."""
    _check_keys("latent_order", data.draws.latent_order, panel.analytes)
    _check_keys("schedule_hours", data.schedule_hours, panel.of_tier(1))
    _check_keys("decimals", data.decimals, panel.analytes)
    _check_keys("representations", data.representations, panel.analytes)
    unknown = {*data.reference_high, *data.reference_low, *data.draws.pre_onset} - set(
        panel.analytes
    )
    if unknown:
        raise ValueError(f"{PARAMETERS_RESOURCE}: unknown analytes {sorted(unknown)}")
    for analyte, entries in data.representations.items():
        codes = {coding.code for coding in panel.codes_for(analyte)}
        shares = [entry.share for entry in entries]
        if shares[-1] is not None or None in shares[:-1]:
            raise ValueError(f"{analyte}: every representation but the last (default) has a share")
        for entry in entries:
            if entry.code not in codes or (entry.share and entry.share not in params):
                raise ValueError(f"{analyte}: representation {entry.code} ({entry.share}) unknown")


def _representation(entry: _RepresentationEntry) -> tuple[str | None, Representation]:
    """(share parameter key or None for the default, representation)."""
    rep = Representation(entry.code, entry.unit, entry.ucum, entry.factor, entry.decimals)
    return entry.share, rep


_FILE = _read_file()
PARAMETERS: tuple[Parameter, ...] = tuple(
    row for entry in _FILE.parameters for row in _rows(entry, _FILE.sources)
)
PARAMS: Mapping[str, float] = {row.key: row.value for row in PARAMETERS}
_check_vocabulary(_FILE, load_panel(), PARAMS)

ANALYTES: tuple[str, ...] = _FILE.draws.latent_order
SEND_OUTS: frozenset[str] = frozenset(load_panel().of_tier(2))
SITE_OFFSETS_MINUTES: tuple[int, ...] = _FILE.draws.site_offsets_minutes
SEND_OUT_HOURS: tuple[float, ...] = _FILE.draws.send_out_hours
SEND_OUT_DAY5_HOUR: float = _FILE.draws.send_out_day5_hour
PRE_ONSET_ANALYTES: tuple[str, ...] = _FILE.draws.pre_onset
SCHEDULE_HOURS: Mapping[str, tuple[float, ...]] = _FILE.schedule_hours
REFERENCE_HIGH: Mapping[str, float] = _FILE.reference_high
REFERENCE_LOW: Mapping[str, float] = _FILE.reference_low
DECIMALS: Mapping[str, int] = _FILE.decimals
# analyte -> (share parameter key or None for the default, representation), default last.
REPRESENTATIONS: Mapping[str, tuple[tuple[str | None, Representation], ...]] = {
    analyte: tuple(_representation(entry) for entry in entries)
    for analyte, entries in _FILE.representations.items()
}


def correlation_matrix() -> np.ndarray:
    """The marker correlation matrix (ANALYTES order) built from the `corr.*` parameters."""
    size = len(ANALYTES)
    matrix = np.eye(size)
    for row in PARAMETERS:
        if row.key.startswith("corr."):
            _, first, second = row.key.split(".")
            i, j = ANALYTES.index(first), ANALYTES.index(second)
            matrix[i, j] = matrix[j, i] = row.value
    return matrix


def render_parameter_table() -> str:
    """The markdown table of every generator parameter with its source."""
    lines = ["| Parameter | Value | Unit | Source |", "|---|---|---|---|"]
    for row in PARAMETERS:
        source = row.source.replace("|", "/")
        lines.append(f"| `{row.key}` | {row.value:g} | {row.unit} | {source} |")
    return "\n".join(lines) + "\n"
