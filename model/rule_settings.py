"""The `[rules]` settings: which rule set scores, and a site's own limits and multiples for v2.

Kept free of other imports so the settings object can use it without loading the scoring code.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SiteUpperLimit(BaseModel):
    """A site's upper limit of normal for one assay of an axis analyte."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    analyte: str
    code: str | None = Field(default=None, pattern=r"^\S+\|\S+$")  # "system|code"; None: any
    value: float = Field(gt=0)
    unit: str
    source: str = Field(min_length=1)  # e.g. "Site lab, Roche Elecsys IL-6, serum"


class RuleSettings(BaseModel):
    """Which rule set scores, and the site's own limits and multiples for rules v2."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = Field(2, ge=1, le=2)  # 2: rules v2; 1: the v1 rule set
    upper_limits: list[SiteUpperLimit] = Field(default_factory=list)
    marked_uln_multiple: dict[str, float] = Field(default_factory=dict)
