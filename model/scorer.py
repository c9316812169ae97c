"""`ModelScorer`: the scikit-learn endotype model behind the same `Scorer` interface as the rules.

The model decides the pathway: biomarker-guided when the calibrated probability of the high-risk
class reaches the threshold stored with the model, standard otherwise, and insufficient data
whenever a required tier-1 marker (IL-6, ferritin, CRP) has no counted result in the window.
The published thresholds that are met come from the rule scorer's own evaluation, so the card
shows them next to the model output without a second copy of any threshold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from fhir_mappings.panel import load_panel
from model.assessment import (
    Assessment,
    Endotype,
    Evidence,
    Pathway,
    Scorer,
    ScorerInfo,
    Timeline,
)
from model.features import feature_row, missing_analytes
from model.pipeline import (
    EndotypeModel,
    class_coefficients,
    linear_form,
    load_model,
    standardised_inputs,
    transformed_names,
)
from model.rules import load_rule_scorer, packaged_rule_set

DEFAULT_MODEL_PATH = Path(__file__).with_name("default_model.skops")
TOP_CONTRIBUTIONS = 5
SYNTHETIC_NOTICE = "Model trained on SYNTHETIC data: a demonstration, not for clinical use."
MODEL_LIMITATIONS: tuple[str, ...] = (
    "Not externally validated; not validated at this institution.",
    "Not the published study's model: its proteins, weights and cut-offs are not public.",
    "Prognostic association only; not shown to identify who benefits from any therapy.",
    "Values reported with '<' or '>' are used at the reported limit.",
)


class ModelScorer:
    """Scores a timeline with a calibrated endotype model; implements `Scorer`."""

    def __init__(
        self, model: EndotypeModel, rules: Scorer, labels: Mapping[str, str] | None = None
    ) -> None:
        self.model = model
        self._rules = rules
        self._labels = dict(labels or {})
        default_required = packaged_rule_set().required
        self._required = tuple(model.metadata.get("required_analytes", default_required))
        self._names = transformed_names(model.estimator, model.analytes)
        self._coefficients = class_coefficients(model.estimator, model.high_risk_class)
        self._classes = [str(name) for name in model.estimator.classes_]
        self._info = _scorer_info(model)
        # plain-array form of the same model, used only when it reproduces predict_proba
        self._form = linear_form(model.estimator, len(model.analytes))

    @property
    def info(self) -> ScorerInfo:
        """Model id, version, content hash and whether it was trained on synthetic data."""
        return self._info

    def assess(self, timeline: Timeline) -> Assessment:
        """Score one timeline; never reassures when a required marker is missing."""
        analytes = self.model.analytes
        missing = missing_analytes(timeline, analytes)
        rule_evidence = self._rules.assess(timeline).evidence
        used = {a: timeline.series[a] for a in analytes if a not in missing}
        absent_required = tuple(a for a in self._required if a in missing)
        if absent_required:
            return self._insufficient(used, missing, rule_evidence, absent_required)
        row = feature_row(timeline, analytes)
        probabilities = self._probabilities(row)
        by_class = {name: float(p) for name, p in zip(self._classes, probabilities, strict=True)}
        high = by_class[self.model.high_risk_class]
        flagged = high >= self.model.threshold
        return Assessment(
            pathway=Pathway.BIOMARKER_GUIDED if flagged else Pathway.STANDARD,
            endotype=_endotype(by_class, self.model.high_risk_class, flagged),
            scorer=self._info,
            evidence=(*rule_evidence, self._model_evidence(flagged, tuple(used))),
            used=used,
            missing=missing,
            required=self._required,
            reasons=self._reasons(high, flagged, missing),
            probability=high,
            class_probabilities=by_class,
            contributions=self.contributions(row, missing),
            limitations=self._limitations(),
        )

    def _probabilities(self, row: np.ndarray) -> np.ndarray:
        rows = row[np.newaxis, :]
        if self._form is not None:
            return self._form.probabilities(rows)[0]
        return self.model.estimator.predict_proba(rows)[0]

    def _standardised(self, row: np.ndarray) -> np.ndarray:
        rows = row[np.newaxis, :]
        if self._form is not None:
            return self._form.standardised(rows)[0]
        return standardised_inputs(self.model.estimator, rows)[0]

    def contributions(
        self, row: np.ndarray, missing: tuple[str, ...]
    ) -> tuple[tuple[str, float], ...]:
        """Top observed markers by |coefficient × standardised value| toward the high-risk class."""
        standardised = self._standardised(row)
        terms = {
            name: float(coef * value)
            for name, coef, value in zip(self._names, self._coefficients, standardised, strict=True)
            if name in self.model.analytes and name not in missing
        }
        ranked = sorted(terms.items(), key=lambda item: (-abs(item[1]), item[0]))
        return tuple((name, round(weight, 4)) for name, weight in ranked[:TOP_CONTRIBUTIONS])

    def _insufficient(
        self,
        used: dict,
        missing: tuple[str, ...],
        rule_evidence: tuple[Evidence, ...],
        absent_required: tuple[str, ...],
    ) -> Assessment:
        reason = (
            f"No counted result in the window for {self._names_of(absent_required)}: "
            f"the model gives no result without {self._names_of(self._required)}."
        )
        return Assessment(
            pathway=Pathway.INSUFFICIENT_DATA,
            endotype=Endotype.UNDETERMINED,
            scorer=self._info,
            evidence=(*rule_evidence, self._model_evidence(None, tuple(used))),
            used=used,
            missing=missing,
            required=self._required,
            reasons=(reason,),
            limitations=self._limitations(),
        )

    def _model_evidence(self, met: bool | None, analytes: tuple[str, ...]) -> Evidence:
        meta = self.model.metadata
        return Evidence(
            id="model-high-risk-probability",
            description=(
                f"Model probability of {self.model.high_risk_class} >= "
                f"{self.model.threshold:.2f} ({meta['model_id']} {meta['version']})"
            ),
            met=met,
            analytes=analytes,
            citation=f"Threshold chosen by {meta['threshold_criterion']}",
            note=SYNTHETIC_NOTICE if self._info.synthetic_training_data else "",
        )

    def _reasons(self, high: float, flagged: bool, missing: tuple[str, ...]) -> tuple[str, ...]:
        relation = "at or above" if flagged else "below"
        reasons = [
            f"Model probability of the high-risk IL-6/IFN-γ endotype {high:.2f} is {relation} "
            f"the threshold {self.model.threshold:.2f} chosen on validation data."
        ]
        if missing:
            reasons.append(
                f"Not available, so filled by the model's missing-value handling (training "
                f"median plus a missingness indicator): {self._names_of(missing)}."
            )
        if self._info.synthetic_training_data:
            reasons.append(SYNTHETIC_NOTICE)
        return tuple(reasons)

    def _names_of(self, analytes: Sequence[str]) -> str:
        return ", ".join(self._labels.get(analyte, analyte) for analyte in analytes)

    def _limitations(self) -> tuple[str, ...]:
        extra = (SYNTHETIC_NOTICE,) if self._info.synthetic_training_data else ()
        return (*extra, *MODEL_LIMITATIONS)


def _endotype(by_class: dict[str, float], high_risk: str, flagged: bool) -> Endotype:
    if flagged:
        return Endotype(high_risk)
    others = {name: p for name, p in by_class.items() if name != high_risk}
    return Endotype(max(sorted(others), key=lambda name: others[name]))


def _scorer_info(model: EndotypeModel) -> ScorerInfo:
    meta = model.metadata
    synthetic = bool(meta.get("synthetic_training_data", False))
    description = str(meta.get("description", "Endotype model"))
    if synthetic:
        description = f"{description} {SYNTHETIC_NOTICE}"
    return ScorerInfo(
        id=str(meta["model_id"]),
        version=str(meta["version"]),
        kind="model",
        description=description,
        content_hash=meta.get("content_hash"),
        synthetic_training_data=synthetic,
    )


def load_model_scorer(path: Path | None = None) -> ModelScorer:
    """Load a site's model file (or the packaged default) with the rule scorer beside it."""
    panel = load_panel()
    labels = {key: analyte.display for key, analyte in panel.analytes.items()}
    rules = load_rule_scorer(panel=panel)
    return ModelScorer(load_model(path or DEFAULT_MODEL_PATH), rules, labels)
