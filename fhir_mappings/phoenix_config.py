"""A site's additions to the Phoenix input codes: its own codes, routes, methods and sources."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SNOMED_SYSTEM = "http://snomed.info/sct"
RXNORM_SYSTEM = "http://www.nlm.nih.gov/research/umls/rxnorm"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PhoenixLocalCode(_Strict):
    """A site's own Observation code for a measured Phoenix input (e.g. `lactate`, `fio2`)."""

    input: str
    system: str
    code: str
    unit: str | None = None  # the unit the site sends when the Observation omits a UCUM code


class SupportCode(_Strict):
    """A site's own Procedure or Device code for IMV or other respiratory support."""

    support: Literal["imv", "other_respiratory_support"]
    system: str = SNOMED_SYSTEM
    code: str


class VasoactiveCode(_Strict):
    """A site's own medication code (e.g. a clinical-drug RxCUI) for one of the six agents."""

    agent: Literal[
        "epinephrine", "norepinephrine", "dopamine", "dobutamine", "vasopressin", "milrinone"
    ]
    system: str = RXNORM_SYSTEM
    code: str


class CodeRef(_Strict):
    """One coding, by system and code."""

    system: str = SNOMED_SYSTEM
    code: str


class PhoenixCodeSettings(_Strict):
    """Site additions to `phoenix_inputs.toml`; every list is empty by default."""

    local_codes: list[PhoenixLocalCode] = Field(default_factory=list)
    procedure_codes: list[SupportCode] = Field(default_factory=list)
    device_codes: list[SupportCode] = Field(default_factory=list)
    vasoactive_codes: list[VasoactiveCode] = Field(default_factory=list)
    systemic_route_codes: list[CodeRef] = Field(default_factory=list)
    arterial_method_codes: list[CodeRef] = Field(default_factory=list)  # BP Observation.method
    # FEU = factor x DDU holds only for a given assay: set it after checking the laboratory's
    # assay; unset, D-dimer reported in DDU is excluded.
    ddu_to_feu_factor: float | None = Field(None, gt=0)
    # where vasoactive infusions come from: MedicationAdministration, or MedicationRequest for a
    # site that has no administrations (orders overstate: an active order may be weaned off)
    vasoactives_from: Literal["administrations", "requests"] = "administrations"
