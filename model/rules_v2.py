"""Rules v2 as data: `rules_v2.toml` validated into a `RuleSetV2` at load.

The file holds the two axes (IL-6; IFN-γ or CXCL9), each axis marker's published default upper
limit and its "markedly raised" threshold with the primary source, the findings shown beside the
decision, and the limitations. How the code applies it: model/limits.py (upper limits and
thresholds), model/persistence.py (per-sample states, persistence), model/decision.py (the
pathway), model/rules_scorer.py (the scorer).
"""

from __future__ import annotations

import hashlib
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fhir_mappings.panel import Panel, load_panel
from model.rules import Criterion

RULES_V2_PATH = Path(__file__).with_name("rules_v2.toml")
DOI_URL = "https://doi.org/"
PUBMED_URL = "https://pubmed.ncbi.nlm.nih.gov/"


class _Frozen(BaseModel):
    """Immutable, and unknown keys in the rule file are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Source(_Frozen):
    """A primary source: a DOI or PubMed id, or (for a registry or catalogue) an https URL."""

    short: str = Field(min_length=1)  # e.g. "Xu 2012", shown on cards
    citation: str = Field(min_length=1)
    doi: str | None = Field(default=None, pattern=r"^10\.\d{4,}/\S+$")
    pmid: str | None = Field(default=None, pattern=r"^\d{1,9}$")
    url: str | None = Field(default=None, pattern=r"^https://")

    @model_validator(mode="after")
    def _traceable(self) -> Source:
        """Every source can be looked up."""
        if not (self.doi or self.pmid or self.url):
            raise ValueError(f"source {self.short!r} needs a doi, pmid or url")
        return self

    @property
    def link(self) -> str:
        """The DOI resolver link, else PubMed, else the URL given."""
        if self.doi:
            return DOI_URL + self.doi
        if self.pmid:
            return f"{PUBMED_URL}{self.pmid}/"
        return self.url or ""

    @property
    def identifiers(self) -> str:
        """ "doi:…; PMID …" for the model card."""
        parts = [f"doi:{self.doi}" if self.doi else "", f"PMID {self.pmid}" if self.pmid else ""]
        return "; ".join(part for part in parts if part) or (self.url or "")


class DefaultUpperLimit(_Frozen):
    """A published upper limit of normal, naming its source population, specimen and assay."""

    value: float = Field(gt=0)
    source: str = Field(min_length=1)
    population: str = Field(min_length=1)
    specimen: str = Field(min_length=1)
    assay: str = Field(min_length=1)
    url: str = Field(pattern=r"^https://")

    @property
    def text(self) -> str:
        """Short text for cards: the source and the specimen."""
        return f"{self.source}, {self.specimen}"


class MarkedSpec(_Frozen):
    """ "Markedly raised": a cited absolute cut-off, or a default multiple of the upper limit."""

    operator: Literal[">=", ">"]
    value: float | None = Field(default=None, gt=0)  # absolute cut-off, in the marker's unit
    multiple: float | None = Field(default=None, gt=1)  # of the upper limit of normal
    basis: str = Field(min_length=1)
    source: Source | None = None
    population: str = ""
    assay: str = ""
    separates: str = ""
    context: str = ""

    @model_validator(mode="after")
    def _one_kind(self) -> MarkedSpec:
        """Exactly one of a cut-off (with its source) or a multiple."""
        if (self.value is None) == (self.multiple is None):
            raise ValueError("a marked threshold needs exactly one of value and multiple")
        if self.value is not None and self.source is None:
            raise ValueError("a marked cut-off needs its primary source")
        return self

    @property
    def inclusive(self) -> bool:
        """True for ≥, False for >."""
        return self.operator == ">="


class MarkerSpec(_Frozen):
    """One axis analyte: its label, unit, default upper limit and marked threshold."""

    label: str
    unit: str
    upper_limit: DefaultUpperLimit
    marked: MarkedSpec


class Axis(_Frozen):
    """One axis of the decision and the analytes that can show it, in display order."""

    id: str
    label: str
    analytes: tuple[str, ...] = Field(min_length=1)


class FindingSpec(_Frozen):
    """A finding shown beside the decision; "inflammation" ones separate intermediate."""

    id: str
    label: str  # short name on cards, e.g. "ferritin > 500"
    kind: Literal["inflammation", "context"]
    description: str
    note: str = ""
    criteria: tuple[Criterion, ...] = Field(min_length=1)
    source: Source

    @property
    def analytes(self) -> tuple[str, ...]:
        """The analytes this finding reads, in criterion order."""
        return tuple(dict.fromkeys(c.analyte for c in self.criteria))


class FerritinFall(_Frozen):
    """The kinetic note: a fall smaller than `max_fall_fraction` over at least `min_span_hours`."""

    id: str
    label: str
    analyte: str
    unit: str
    max_fall_fraction: float = Field(gt=0, lt=1)
    min_span_hours: float = Field(gt=0)
    min_first_value: float = Field(ge=0)  # judged only when the first value exceeds this
    description: str
    note: str = ""
    source: Source


class RuleSetV2(_Frozen):
    """The whole rule file, validated at load."""

    id: str
    version: str = Field(pattern=r"^2\.")
    title: str
    description: str
    pairing_hours: float = Field(gt=0)
    persistence_gap_hours: float = Field(gt=0)
    required: tuple[str, ...]
    labels: dict[str, str] = Field(default_factory=dict)  # from the panel at load, not the file
    limitations: tuple[str, ...] = Field(min_length=1)
    study: Source
    axes: tuple[Axis, Axis]
    markers: dict[str, MarkerSpec]
    findings: tuple[FindingSpec, ...] = Field(min_length=1)
    ferritin_fall: FerritinFall

    @model_validator(mode="after")
    def _consistent(self) -> RuleSetV2:
        """Unique ids and a marker for every axis analyte."""
        ids = [axis.id for axis in self.axes] + [f.id for f in self.findings]
        ids.append(self.ferritin_fall.id)
        if len(ids) != len(set(ids)):
            raise ValueError("axis and finding ids must be unique")
        unmarked = set(self.axis_analytes) - set(self.markers)
        if unmarked or set(self.markers) - set(self.axis_analytes):
            raise ValueError("every axis analyte needs exactly one marker table")
        return self

    def check_vocabulary(self, panel: Panel) -> None:
        """Refuse an analyte the panel does not know, or a value not in its canonical unit."""
        units = [(analyte, marker.unit) for analyte, marker in self.markers.items()]
        units += [(c.analyte, c.unit) for finding in self.findings for c in finding.criteria]
        units.append((self.ferritin_fall.analyte, self.ferritin_fall.unit))
        units += [(analyte, None) for analyte in self.analytes]
        for analyte, unit in units:
            if analyte not in panel.analytes:
                raise ValueError(f"rule set {self.id}: {analyte!r} is not a panel analyte")
            canonical = panel.analytes[analyte].unit
            if unit is not None and unit != canonical:
                raise ValueError(f"rule set {self.id}: {analyte} in {unit}, not in {canonical}")

    @property
    def axis_analytes(self) -> tuple[str, ...]:
        """The analytes of both axes, in axis order."""
        return tuple(a for axis in self.axes for a in axis.analytes)

    @property
    def analytes(self) -> tuple[str, ...]:
        """Every analyte the rules read: axis analytes, required ones, then the findings'."""
        read = (a for finding in self.findings for a in finding.analytes)
        return tuple(dict.fromkeys((*self.axis_analytes, *self.required, *read)))

    def label(self, analyte: str) -> str:
        """How an analyte is named in reasons."""
        return self.labels.get(analyte, analyte)

    def finding(self, finding_id: str) -> FindingSpec:
        """One finding by id; KeyError when the file has none."""
        return next(f for f in self.findings if f.id == finding_id)


def load_rules_v2(path: Path | None = None, panel: Panel | None = None) -> tuple[RuleSetV2, str]:
    """Read a v2 rule file (the packaged one by default), check it against the panel, name its
    analytes by their panel labels, and return it with its sha256."""
    panel = panel or load_panel()
    data = (path or RULES_V2_PATH).read_bytes()
    rule_set = RuleSetV2.model_validate(tomllib.loads(data.decode("utf-8")))
    rule_set.check_vocabulary(panel)
    return rule_set.model_copy(update={"labels": panel.labels}), hashlib.sha256(data).hexdigest()
