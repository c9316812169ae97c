"""Configuration types the FHIR layer owns; `cds_service.settings.Settings` composes them.

Both are frozen and refuse unknown keys, so a typo in the settings file fails at start-up.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    """Immutable, and unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class FhirSettings(_Strict):
    """How we query the EHR's FHIR server when prefetch is absent or incomplete."""

    timeout_seconds: float = Field(1.5, gt=0)  # total time of one call
    deadline_seconds: float = Field(4.0, gt=0)  # all queries of one hook together
    max_pages: int = Field(5, ge=1)  # pages followed per query, the first included
    page_size: int = Field(50, ge=1, le=1000)  # `_count` on our own queries
    max_workers: int = Field(16, ge=1)  # parallel queries per hook
    # how far back the first round of our own panel query reaches; a care context anchored
    # earlier (minus its look-back) adds one date-bounded search for the rest
    history_days: float = Field(14.0, gt=0)


class LocalCode(_Strict):
    """A site's own code for a panel analyte, added to the packaged LOINC codes."""

    analyte: str
    system: str
    code: str
    unit: str | None = None  # the unit the site sends when the Observation omits a UCUM code
