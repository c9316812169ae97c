"""`ModelScorer`: the scikit-learn endotype model behind the same `Scorer` interface as the rules.

The model scores only the window it was trained on: its features are the latest value per
analyte in the early window [anchor, anchor + window]. Its class (probability of the high-risk
class at or above the threshold stored with the model: high; otherwise not-high with its class
label) stands for the state at the latest early-window sample; samples after the window are
judged by the rules v2 per-sample states. If the early window lacks a required input (IL-6,
ferritin, CRP), the model result is "not available" and the rules' states decide. Either way the
pathway comes from the shared decision (`model.decision`), exactly as for the rule scorer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fhir_mappings.panel import load_panel
from model.assessment import Assessment, Endotype, Evidence, Phase, ScorerInfo, Timeline
from model.features import feature_row, missing_analytes
from model.model_file import ServedModel, ServingForm, load_served_model
from model.persistence import current_sample
from model.rule_settings import RuleSettings
from model.rules import packaged_rule_set
from model.rules_scorer import RulesV2Scorer, load_rules_v2_scorer
from model.states import SampleLevel, SampleState

if TYPE_CHECKING:
    from model.pipeline import EndotypeModel

DEFAULT_MODEL_PATH = Path(__file__).with_name("default_model.skops")
TOP_CONTRIBUTIONS = 5
MODEL = "model"
MODEL_WINDOW_NOTE = (
    "The model scores the onset window only; later results judged against rules v2 thresholds."
)
SYNTHETIC_NOTICE = "Model trained on SYNTHETIC data: a demonstration, not for clinical use."
MODEL_LIMITATIONS: tuple[str, ...] = (
    "Not externally validated; not validated at this institution.",
    "Not the published study's model: its proteins, weights and cut-offs are not public.",
    "Prognostic association only; not shown to identify who benefits from any therapy.",
    "Values reported with '<' or '>' are used at the reported limit.",
)


@dataclass(frozen=True, slots=True)
class ModelResult:
    """The model's output on the early window."""

    probability: float  # of the high-risk class
    by_class: dict[str, float]
    flagged: bool  # probability at or above the model's threshold
    endotype: Endotype  # the high-risk class when flagged, else the likeliest other class
    row: np.ndarray
    missing: tuple[str, ...]  # inputs filled by the model's missing-value handling


class ModelScorer:
    """Scores the early window with a calibrated endotype model; implements `Scorer`."""

    def __init__(
        self,
        model: EndotypeModel | ServedModel,
        rules: RulesV2Scorer,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """Score with `model`: its serving form when it has one (no scikit-learn), else the
        fitted estimator (through its linear form when that reproduces predict_proba)."""
        self.model = model
        self._rules = rules
        self._labels = dict(labels or {})
        default_required = packaged_rule_set().required
        self._required = tuple(model.metadata.get("required_analytes", default_required))
        self._info = _scorer_info(model)
        served = model.serving if isinstance(model, ServedModel) else _serving_of(model)
        self._estimator: Any = None if served is not None else model.estimator
        if served is None:
            from model.pipeline import class_coefficients, transformed_names

            self._names = transformed_names(self._estimator, model.analytes)
            self._coefficients = class_coefficients(self._estimator, model.high_risk_class)
            self._classes = [str(name) for name in self._estimator.classes_]
            self._form = None
        else:
            self._names = list(served.inputs)
            self._coefficients = served.coefficients(model.high_risk_class)
            self._classes = list(served.classes)
            self._form = served.form

    @property
    def info(self) -> ScorerInfo:
        """Model id, version, content hash and whether it was trained on synthetic data."""
        return self._info

    @property
    def rules(self) -> RulesV2Scorer:
        """The rule scorer whose per-sample states judge the samples after the early window."""
        return self._rules

    def assess(self, timeline: Timeline) -> Assessment:
        """The model's class for the early window, the rules' states after it, one decision."""
        result = self.score_early_window(timeline)
        samples = self._rules.states(timeline)
        if result is not None:
            samples = _with_model_state(samples, result)
        current = current_sample(samples)
        model_decides = current is not None and current.judged_by == MODEL
        endotype = result.endotype if result and model_decides and not result.flagged else None
        assessment = self._rules.conclude(timeline, samples, not_high_endotype=endotype)
        return replace(
            assessment,
            scorer=self._info,
            evidence=(*assessment.evidence, self._model_evidence(result)),
            reasons=(*assessment.reasons, *self._reasons(result)),
            probability=result.probability if result else None,
            class_probabilities=result.by_class if result else None,
            contributions=self.contributions(result.row, result.missing) if result else (),
            limitations=(*self._limitations(), *assessment.limitations),
            model_note=self._note(timeline, result),
        )

    def score_early_window(self, timeline: Timeline) -> ModelResult | None:
        """The model's output on the early window, or None when a required input is absent."""
        missing = missing_analytes(timeline, self.model.analytes)
        if any(a in missing for a in self._required):
            return None
        row = feature_row(timeline, self.model.analytes)
        probabilities = self._probabilities(row)
        by_class = {name: float(p) for name, p in zip(self._classes, probabilities, strict=True)}
        high = by_class[self.model.high_risk_class]
        flagged = high >= self.model.threshold
        endotype = _endotype(by_class, self.model.high_risk_class, flagged)
        return ModelResult(high, by_class, flagged, endotype, row, missing)

    def _probabilities(self, row: np.ndarray) -> np.ndarray:
        rows = row[np.newaxis, :]
        if self._form is not None:
            return self._form.probabilities(rows)[0]
        return self._estimator.predict_proba(rows)[0]

    def _standardised(self, row: np.ndarray) -> np.ndarray:
        rows = row[np.newaxis, :]
        if self._form is not None:
            return self._form.standardised(rows)[0]
        from model.pipeline import standardised_inputs

        return standardised_inputs(self._estimator, rows)[0]

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

    def _model_evidence(self, result: ModelResult | None) -> Evidence:
        meta = self.model.metadata
        return Evidence(
            id="model-high-risk-probability",
            description=(
                f"Model probability of {self.model.high_risk_class} >= "
                f"{self.model.threshold:.2f} ({meta['model_id']} {meta['version']}), "
                "early window only"
            ),
            met=result.flagged if result else None,
            analytes=tuple(a for a in self.model.analytes if result and a not in result.missing),
            citation=f"Threshold chosen by {meta['threshold_criterion']}",
            note=SYNTHETIC_NOTICE if self._info.synthetic_training_data else "",
        )

    def _reasons(self, result: ModelResult | None) -> tuple[str, ...]:
        if result is None:
            reasons = [
                f"Model not available: the early window lacks "
                f"{self._names_of(self._required)}; the rules v2 states decide."
            ]
        else:
            relation = "at or above" if result.flagged else "below"
            reasons = [
                f"Model probability of the high-risk IL-6/IFN-γ endotype {result.probability:.2f} "
                f"is {relation} the threshold {self.model.threshold:.2f} (early window)."
            ]
            if result.missing:
                reasons.append(
                    "Not available in the early window, so filled by the model's missing-value "
                    "handling (training median plus a missingness indicator): "
                    f"{self._names_of(result.missing)}."
                )
        if self._info.synthetic_training_data:
            reasons.append(SYNTHETIC_NOTICE)
        return tuple(reasons)

    def _note(self, timeline: Timeline, result: ModelResult | None) -> str:
        """How the model's output was used, for the card."""
        if result is None:
            absent = [a for a in self._required if a in missing_analytes(timeline, self._required)]
            return (
                f"Model not available: no {self._names_of(absent)} in the onset window; "
                "judged against rules v2 thresholds."
            )
        return MODEL_WINDOW_NOTE

    def _names_of(self, analytes: Sequence[str]) -> str:
        return ", ".join(self._labels.get(analyte, analyte) for analyte in analytes)

    def _limitations(self) -> tuple[str, ...]:
        extra = (SYNTHETIC_NOTICE,) if self._info.synthetic_training_data else ()
        return (*extra, *MODEL_LIMITATIONS)


def _with_model_state(
    samples: Sequence[SampleState], result: ModelResult
) -> tuple[SampleState, ...]:
    """The samples with the model's class standing for the latest early-window sample."""
    early = [i for i, s in enumerate(samples) if s.phase is Phase.EARLY]
    if not early:
        return tuple(samples)
    index = early[-1]
    level = SampleLevel.HIGH if result.flagged else SampleLevel.NOT_HIGH
    replaced = replace(samples[index], level=level, judged_by=MODEL)
    return (*samples[:index], replaced, *samples[index + 1 :])


def _endotype(by_class: dict[str, float], high_risk: str, flagged: bool) -> Endotype:
    if flagged:
        return Endotype(high_risk)
    others = {name: p for name, p in by_class.items() if name != high_risk}
    return Endotype(max(sorted(others), key=lambda name: others[name]))


def _serving_of(model: EndotypeModel) -> ServingForm | None:
    """The serving form of a fitted model, when its linear form reproduces it."""
    from model.pipeline import serving_form

    return serving_form(model.estimator, model.analytes)


def _scorer_info(model: EndotypeModel | ServedModel) -> ScorerInfo:
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


def load_model_scorer(
    path: Path | None = None, rule_settings: RuleSettings | None = None
) -> ModelScorer:
    """Load a site's model file (or the packaged default) with rules v2 beside it.

    A model saved with its serving form is scored from it, without importing scikit-learn; an
    older model file is loaded with scikit-learn.
    """
    panel = load_panel()
    labels = {key: analyte.display for key, analyte in panel.analytes.items()}
    rules = load_rules_v2_scorer(rule_settings)
    model_path = path or DEFAULT_MODEL_PATH
    served = load_served_model(model_path)  # no scikit-learn when the metadata holds the form
    if served is None:
        from model.pipeline import load_model

        return ModelScorer(load_model(model_path), rules, labels)
    return ModelScorer(served, rules, labels)
