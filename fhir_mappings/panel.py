"""The marker panel as data: analyte key -> codes -> canonical UCUM unit, loaded from panel.toml.

The panel is the product's one analyte vocabulary: its keys, names, tiers and model inputs are
read by the scorers, the synthetic cohort generator and the tests alike.
"""

from __future__ import annotations

import functools
import math
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from fhir_mappings.config import LocalCode
from fhir_mappings.units import UnitConversionError, convert

LOINC_SYSTEM = "http://loinc.org"
PANEL_RESOURCE = "panel.toml"
ANALYTE_KEYS = frozenset(
    {
        "display",
        "label",
        "tier",
        "unit",
        "codes",
        "model_feature",
        "molar_mass_g_per_mol",
        "plausible_min",
        "plausible_max",
        "plausible_min_exclusive",
    }
)


class _Frozen(BaseModel):
    """Immutable, strict base for the panel models."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Coding(_Frozen):
    """One code that identifies a panel analyte, with the unit it implies when one is known."""

    system: str
    code: str
    display: str
    unit: str | None = None  # UCUM unit implied by the code when the Observation sends none
    arbitrary_units: bool = False  # units/volume assay with no fixed conversion: never used
    local: bool = False  # a site's own code from settings: its unit applies to unknown unit text

    def as_fhir(self) -> dict[str, str]:
        """The FHIR Coding dict (system, code, display)."""
        return {"system": self.system, "code": self.code, "display": self.display}


class Analyte(_Frozen):
    """One marker of the panel and every code that may report it, the primary code first."""

    key: str
    display: str
    label: str  # short name in the sentences a scorer writes, e.g. "IL-6"
    tier: int = Field(ge=1, le=3)
    unit: str  # canonical UCUM unit of every Measurement of this analyte
    codes: tuple[Coding, ...] = Field(min_length=1)
    model_feature: int | None = Field(default=None, ge=1)  # model input column, 1-based
    molar_mass: float | None = Field(default=None, gt=0)  # g/mol; set only where legitimate
    plausible_min: float  # physically possible range, canonical unit (panel.toml says why)
    plausible_max: float
    plausible_min_exclusive: bool = False  # true where exactly the minimum (zero) is impossible

    @model_validator(mode="after")
    def _range_is_ordered(self) -> Analyte:
        if not self.plausible_min < self.plausible_max:
            raise ValueError(f"{self.key}: plausible_min must be below plausible_max")
        return self

    def is_plausible(self, value: float) -> bool:
        """True when `value` (canonical unit) is finite and physically possible."""
        if not math.isfinite(value) or value > self.plausible_max:
            return False
        if self.plausible_min_exclusive:
            return value > self.plausible_min
        return value >= self.plausible_min

    @property
    def primary(self) -> Coding:
        """The primary (first listed) coding."""
        return self.codes[0]


class Panel(_Frozen):
    """The marker panel, with an exact system+code index for matching Observations."""

    analytes: dict[str, Analyte]
    _index: dict[tuple[str, str], tuple[Analyte, Coding]] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        """Build the (system, code) index; refuse a code or a model input column claimed twice."""
        columns = [a.model_feature for a in self.analytes.values() if a.model_feature]
        if len(columns) != len(set(columns)):
            raise ValueError(f"model_feature columns must each be used once: {sorted(columns)}")
        for analyte in self.analytes.values():
            for coding in analyte.codes:
                key = (coding.system, coding.code)
                if key in self._index and self._index[key][0].key != analyte.key:
                    other = self._index[key][0].key
                    raise ValueError(
                        f"code {coding.system}|{coding.code} in {other} and {analyte.key}"
                    )
                self._index.setdefault(key, (analyte, coding))

    def match(self, codings: Iterable[Mapping[str, Any]]) -> tuple[Analyte, Coding] | None:
        """The analyte of the first coding whose system and code match exactly, else None."""
        for coding in codings:
            if not isinstance(coding, Mapping):
                continue
            system, code = coding.get("system"), coding.get("code")
            if isinstance(system, str) and isinstance(code, str) and (system, code) in self._index:
                return self._index[(system, code)]
        return None

    @property
    def model_features(self) -> tuple[str, ...]:
        """The analytes that are model inputs, in input-column order."""
        inputs = [a for a in self.analytes.values() if a.model_feature is not None]
        return tuple(a.key for a in sorted(inputs, key=lambda a: a.model_feature or 0))

    def of_tier(self, tier: int) -> tuple[str, ...]:
        """The analytes of one tier, in panel order."""
        return tuple(key for key, analyte in self.analytes.items() if analyte.tier == tier)

    @property
    def labels(self) -> dict[str, str]:
        """Analyte key -> short label, for sentences."""
        return {key: analyte.label for key, analyte in self.analytes.items()}

    def codes_for(self, key: str) -> tuple[Coding, ...]:
        """Every coding of one analyte, primary first; KeyError for an unknown analyte."""
        return self.analytes[key].codes

    def token_param(self, key: str) -> str:
        """The FHIR token search value for one analyte: `system|code,system|code`."""
        return ",".join(f"{coding.system}|{coding.code}" for coding in self.codes_for(key))


def _analyte_from_table(key: str, table: Mapping[str, Any]) -> Analyte:
    """One Analyte from its panel.toml table (codes default to the LOINC system)."""
    unknown = set(table) - ANALYTE_KEYS
    if unknown:
        raise ValueError(f"panel analyte {key}: unknown keys {sorted(unknown)}")
    codes = tuple(
        Coding(
            system=entry.get("system", LOINC_SYSTEM),
            **{k: v for k, v in entry.items() if k != "system"},
        )
        for entry in table["codes"]
    )
    return Analyte(
        key=key,
        display=table["display"],
        label=table["label"],
        tier=table["tier"],
        unit=table["unit"],
        codes=codes,
        model_feature=table.get("model_feature"),
        molar_mass=table.get("molar_mass_g_per_mol"),
        plausible_min=table["plausible_min"],
        plausible_max=table["plausible_max"],
        plausible_min_exclusive=table.get("plausible_min_exclusive", False),
    )


@functools.lru_cache(maxsize=1)
def _packaged_panel() -> Panel:
    """The panel packaged with the service, read once."""
    text = resources.files(__package__).joinpath(PANEL_RESOURCE).read_text(encoding="utf-8")
    tables = tomllib.loads(text)
    return Panel(analytes={key: _analyte_from_table(key, table) for key, table in tables.items()})


def _check_local_unit(analyte: Analyte, local: LocalCode) -> None:
    """Refuse a local code whose unit is not UCUM convertible to the analyte's canonical unit."""
    if local.unit is None:
        return
    try:
        convert(1.0, local.unit, analyte.unit, molar_mass=analyte.molar_mass)
    except UnitConversionError as error:
        raise ValueError(f"local code {local.code!r} for {analyte.key}: {error}") from None


def _with_local_code(analyte: Analyte, local: LocalCode) -> Analyte:
    """A copy of `analyte` with a site's local code appended to its codes."""
    _check_local_unit(analyte, local)
    coding = Coding(
        system=local.system,
        code=local.code,
        display=f"{analyte.display} (local code {local.code})",
        unit=local.unit,
        local=True,
    )
    return analyte.model_copy(update={"codes": (*analyte.codes, coding)})


def load_panel(local_codes: Sequence[LocalCode] = ()) -> Panel:
    """The packaged panel, with a site's local codes appended; ValueError for an unknown analyte."""
    panel = _packaged_panel()
    if not local_codes:
        return panel
    analytes = dict(panel.analytes)
    for local in local_codes:
        if local.analyte not in analytes:
            known = ", ".join(sorted(analytes))
            raise ValueError(
                f"local code {local.code!r}: unknown analyte {local.analyte!r} ({known})"
            )
        analytes[local.analyte] = _with_local_code(analytes[local.analyte], local)
    return Panel(analytes=analytes)
