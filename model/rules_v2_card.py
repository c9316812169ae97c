"""The model-card page content for rules v2, built from the same data and text the code uses.

Every threshold comes from the loaded rule file and the site's settings through `Limits` (the
object that judges results), every state and decision step from the constants the persistence
and decision modules apply, so the page cannot drift from what the code enforces.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from model.decision import DECISION_STEPS
from model.limits import Limits
from model.model_card import rule_set_card_head, rule_set_details
from model.persistence import PERSISTENCE_STATES, TREND_CHANGE
from model.rules_scorer import RulesV2Scorer
from model.rules_v2 import FindingSpec, MarkerSpec, RuleSetV2
from model.states import LimitSource, MarkedBasis, UpperLimit

UPPER_LIMIT_ORDER = (
    "The Observation's own referenceRange.high (the laboratory's limit for that specimen and "
    "assay), when it carries exactly one normal range with a usable high value.",
    "Else a per-assay limit the site sets (settings rules.upper_limits), matched by the result's "
    "code first, then by analyte.",
    "Else the published default below, which names its source population, specimen and assay.",
    "A result at or below its upper limit is never markedly raised.",
)
SAMPLE_LEVELS = (
    "Sampling times: every collection time of an IL-6, IFN-γ or CXCL9 result from the "
    "look-back start on.",
    "Each axis takes the latest result of each of its analytes at or before the sampling time "
    "and at most pairing_hours older; the axis is marked when any of them is markedly raised "
    "(a normal IFN-γ with CXCL9 markedly raised counts as marked), not marked when every one "
    "present is not, and unknown otherwise (nothing paired, or a comparator such as '>400' that "
    "straddles the threshold; '<5' is never marked).",
    "high: both axes marked. partial: exactly one marked, the other known not marked. "
    "not-high: at least one axis known not marked, and not partial. unknown: otherwise.",
)


def rules_v2_card(scorer: RulesV2Scorer, timing: Mapping[str, timedelta]) -> dict[str, Any]:
    """The model card of rules v2 with the site's limits and the service's time spans."""
    rule_set, info = scorer.rule_set, scorer.info
    return {
        **rule_set_card_head(info),
        "details": {
            **rule_set_details(info),
            "study": f"{rule_set.study.citation}; {rule_set.study.identifiers}",
            "analytes read": ", ".join(rule_set.analytes),
        },
        "axes": [
            {"id": axis.id, "label": axis.label, "analytes": ", ".join(axis.analytes)}
            for axis in rule_set.axes
        ],
        "upper_limit_order": list(UPPER_LIMIT_ORDER),
        "markers": [_marker(rule_set, scorer.limits, a) for a in rule_set.axis_analytes],
        "site_limits": _site_limits(scorer.limits),
        "sample_levels": list(SAMPLE_LEVELS),
        "persistence": [f"{state.value}: {text}" for state, text in PERSISTENCE_STATES.items()],
        "decision": list(DECISION_STEPS),
        "findings": [_finding(spec) for spec in rule_set.findings] + [_fall(rule_set)],
        "timing": _timing(rule_set, timing),
        "limitations": list(rule_set.limitations),
    }


def _marker(rule_set: RuleSetV2, limits: Limits, analyte: str) -> dict[str, Any]:
    """One axis marker: its default upper limit and its markedly-raised rule, as judged."""
    spec = rule_set.markers[analyte]
    default = spec.upper_limit
    published = UpperLimit(default.value, spec.unit, LimitSource.PUBLISHED, default.text)
    threshold = limits.threshold(analyte, published)
    return {
        "analyte": analyte,
        "label": spec.label,
        "unit": spec.unit,
        "upper_limit": (
            f"{_num(default.value)} {spec.unit}: {default.source}; population "
            f"{default.population}; specimen {default.specimen}; assay {default.assay}"
        ),
        "upper_limit_url": default.url,
        "marked": _marked_rule(spec, threshold.basis, threshold.multiple),
        "marked_with_default_limit": f"{threshold.operator} {_num(threshold.value)} {spec.unit}",
        "basis": threshold.basis.value,
        "citation": threshold.citation or spec.marked.basis,
        "citation_url": threshold.citation_url,
        "population": spec.marked.population,
        "assay": spec.marked.assay,
        "separates": spec.marked.separates,
        "context": spec.marked.context,
    }


def _marked_rule(spec: MarkerSpec, basis: MarkedBasis, multiple: float | None) -> str:
    """The markedly-raised rule in words, with its basis."""
    if basis is MarkedBasis.SITE_MULTIPLE:
        return f"≥ {_num(multiple or 0)} × the result's upper limit (site multiple)"
    marked = spec.marked
    operator = marked.operator.replace(">=", "≥")
    if marked.multiple is not None:
        return f"{operator} {_num(marked.multiple)} × the result's upper limit ({marked.basis})"
    return f"{operator} {_num(marked.value or 0)} {spec.unit} ({marked.basis})"


def _site_limits(limits: Limits) -> list[str]:
    """The site's own limits and multiples, as configured."""
    lines = [
        f"{limit.analyte}{f' ({limit.code})' if limit.code else ''}: upper limit "
        f"{_num(limit.value)} {limit.unit}, {limit.source}"
        for limit in limits.site_limits
    ]
    lines += [
        f"{analyte}: markedly raised at ≥ {_num(multiple)} × the result's upper limit"
        for analyte, multiple in limits.multiples.items()
    ]
    return lines or ["None set: laboratory ranges, then the published defaults apply."]


def _finding(spec: FindingSpec) -> dict[str, Any]:
    """One finding with its rule, kind, source and note."""
    rule = " and ".join(
        f"{c.analyte} {_symbol(c.operator)} {_num(c.threshold)} {c.unit}" for c in spec.criteria
    )
    role = (
        "inflammation finding: makes a standard answer intermediate; never the IL-6/IFN-γ label"
        if spec.kind == "inflammation"
        else "context only"
    )
    return {
        "id": spec.id,
        "description": spec.description,
        "rule": f"{rule} (latest result since the anchor, not older than current_max_age)",
        "role": role,
        "citation": f"{spec.source.citation}; {spec.source.identifiers}",
        "citation_url": spec.source.link,
        "note": spec.note,
    }


def _fall(rule_set: RuleSetV2) -> dict[str, Any]:
    """The ferritin-fall note."""
    fall = rule_set.ferritin_fall
    return {
        "id": fall.id,
        "description": fall.description,
        "rule": (
            f"first {fall.analyte} result since the anchor (above {_num(fall.min_first_value)} "
            f"{fall.unit}) to the latest, at least {_num(fall.min_span_hours)} h apart, exact "
            f"values: met when it fell by less than {_num(fall.max_fall_fraction * 100)}% "
            "(or rose)"
        ),
        "role": "context only",
        "citation": f"{fall.source.citation}; {fall.source.identifiers}",
        "citation_url": fall.source.link,
        "note": fall.note,
    }


def _timing(rule_set: RuleSetV2, timing: Mapping[str, timedelta]) -> list[str]:
    """The time spans the service applies, in hours."""
    hours = {key: _num(span.total_seconds() / 3600) for key, span in timing.items()}
    return [
        "Anchor (first that applies): a configured onset Condition (context."
        "onset_condition_codes); the Phoenix onset (phoenix.enabled): the first hour of the "
        "encounter with a Phoenix Sepsis Score of 2 or more, computed hourly from the chart "
        "(phoenix-sepsis; each input carried forward 6-24 h, a missing input scores 0), not used "
        "when the course was cut at phoenix.course_days and scores 2 from its first hour, when a "
        "Phoenix search left pages unread, or for a child out of its scope (birth "
        "hospitalisation, gestational age under 37 weeks, 216 months or older); the PICU "
        "admission (earliest start of the encounter's PICU location entries); the encounter "
        "start; with the PICU gate off and none of these, now minus the early window.",
        f"Early window: anchor to anchor + {hours['window']} h (the baseline, and the model's "
        "features; order suggestions only then).",
        f"Look-back: results from anchor − {hours['look_back']} h count for persistence and "
        "context; results from before the anchor alone never make a current state.",
        f"Current: the latest assessable sample at or after the anchor, and ferritin and CRP, "
        f"no older than {hours['current_max_age']} h; older is stale (insufficient data).",
        f"Pairing: {_num(rule_set.pairing_hours)} h; persistence gap: "
        f"{_num(rule_set.persistence_gap_hours)} h; trend direction: a change over "
        f"{_num(TREND_CHANGE * 100)}% from the first result.",
        "The Phoenix score is context and anchor only: it never changes the IL-6/IFN-γ decision. "
        "The card says organ dysfunction (Phoenix score ≥ 2), and sepsis only with the site's "
        "infection signal (phoenix.infection: a Condition, or a culture with antimicrobial doses).",
    ]


def _symbol(operator: str) -> str:
    """ "≥" and "≤" for ">=" and "<="."""
    return operator.replace(">=", "≥").replace("<=", "≤")


def _num(value: float) -> str:
    """A number with thousands separators and no float noise."""
    return f"{round(value, 4):,.4f}".rstrip("0").rstrip(".")
