"""Assessment → one CDS Hooks 2.0 card as a plain dict, one function per card section.

The summary names what decided; the markdown detail (`cds_service.card_detail`) fits a narrow
side panel; suggestions offer draft orders only for missing markers without an active order,
and only in the early window after the anchor; the extension carries the machine-readable
assessment. Wording suggests ("consider …"), never names a therapy, and never turns missing or
stale data into reassurance. Nothing empty is left in the card: keys without content are omitted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import uuid4

from cds_service import card_text as fmt
from cds_service.card_detail import ChartContext, detail, label
from cds_service.models import is_empty
from cds_service.phoenix_card import phoenix_extension
from cds_service.settings import Settings
from fhir_mappings.emit import service_request_for
from fhir_mappings.measurement import Measurement
from fhir_mappings.panel import Panel
from model.assessment import Assessment, DecisionKind, Endotype, Pathway, Timeline
from model.states import Judgement, PersistenceState, SampleState

__all__ = ["ChartContext", "build_card", "extension", "prune", "summary", "suggestions"]

SUMMARY_MAX_CHARS = 139  # "<140-character summary"
SUMMARY_MAX_NAMES = 3  # missing markers named in an insufficient-data summary
EXTENSION_KEY = "io.picu-endotype.assessment"
INCOMPLETE_KEY = "incompleteData"  # data keys whose results were not all read
TOPIC = {
    "system": "https://picu-endotype.org/CodeSystem/topic",
    "code": "immune-endotype",
    "display": "Immune endotype decision support",
}
OVERRIDE_SYSTEM = "https://picu-endotype.org/CodeSystem/override-reason"
OVERRIDE_REASONS = (
    ("already-under-evaluation", "Already under evaluation"),
    ("explained-by-other-process", "Values explained by another process (e.g. post-operative)"),
    ("not-clinically-relevant", "Not clinically relevant"),
    ("other", "Other"),
)
SOURCE_LABEL = "picu-endotype: immune-endotype biomarker support"
CONTEXT_FINDINGS = frozenset({"lymphopenia", "thrombocytopenia", "ferritin-fall"})
HIGH_PREFIX = {
    PersistenceState.PERSISTENT: "Persistent IL-6/IFN-γ-high pattern",
    PersistenceState.NEW: "New IL-6/IFN-γ-high pattern",
}


def build_card(
    assessment: Assessment,
    timeline: Timeline,
    *,
    panel: Panel,
    settings: Settings,
    patient_id: str,
    encounter_id: str | None = None,
    chart: ChartContext | None = None,
) -> dict[str, Any]:
    """One CDS Hooks card showing the assessment and everything needed to check it."""
    chart = chart or ChartContext()
    offered = suggestions(assessment, timeline, panel, patient_id, encounter_id, chart)
    card: dict[str, Any] = {
        "uuid": str(uuid4()),
        "summary": summary(assessment, panel, chart.pending),
        "detail": detail(
            assessment, timeline, panel, settings, chart, orders_offered=bool(offered)
        ),
        "indicator": settings.indicator,
        "source": source(settings),
        **offered,
        "overrideReasons": override_reasons(),
        "links": links(settings),
        "extension": {
            EXTENSION_KEY: {
                **extension(assessment, timeline, chart),
                INCOMPLETE_KEY: chart.incomplete,
            }
        },
    }
    return prune(card)


# --- summary --------------------------------------------------------------------------------


def summary(assessment: Assessment, panel: Panel, pending: frozenset[str] = frozenset()) -> str:
    """One sentence under 140 characters naming what decided; never reassuring on gaps."""
    qualifier = _qualifier(assessment)
    if assessment.kind is None:
        text = _v1_summary(assessment, panel, qualifier, pending)
    elif assessment.kind is DecisionKind.HIGH:
        marked = _marked_names(assessment.current, panel)
        text = f"{_high_prefix(assessment)}: {marked} markedly raised {qualifier}"
    elif assessment.kind is DecisionKind.DISCORDANT:
        text = f"{assessment.reasons[0]}: no IL-6/IFN-γ pattern can be assessed {qualifier}"
    elif assessment.kind is DecisionKind.NOT_HIGH:
        text = f"{_not_high_text(assessment)} {qualifier}"
    else:
        text = _insufficient_summary(assessment, panel, qualifier, pending)
    return fmt.truncate(text, SUMMARY_MAX_CHARS)


def _qualifier(assessment: Assessment) -> str:
    """How far the output may be trusted, in a few words."""
    if assessment.scorer.synthetic_training_data:
        return "(synthetic-data model; not for clinical use)"
    if assessment.scorer.kind == "model":
        return "(research model; not a diagnosis)"
    return "(research-based; not a diagnosis)"


def _high_prefix(assessment: Assessment) -> str:
    """'Persistent …', 'New …' or the plain pattern name."""
    state = assessment.persistence.state if assessment.persistence else None
    return HIGH_PREFIX.get(state, "IL-6/IFN-γ-high pattern")


def _marked_names(sample: SampleState | None, panel: Panel) -> str:
    """The analytes markedly raised at a sample, e.g. 'IL-6 and CXCL9'."""
    judgements = [j for axis in (sample.axes if sample else ()) for j in axis.judgements]
    names = list(dict.fromkeys(label(panel, j.measurement.analyte) for j in judgements if j.marked))
    if len(names) > 1:
        return f"{', '.join(names[:-1])} and {names[-1]}"
    return names[0] if names else "IL-6 and the IFN-γ axis"


def _not_high_text(assessment: Assessment) -> str:
    """Resolving, intermediate or quiescent, naming what decided."""
    state = assessment.persistence.state if assessment.persistence else None
    if state is PersistenceState.RESOLVING:
        return "Resolving: IL-6/IFN-γ-high earlier, neither axis markedly raised now"
    if assessment.endotype is Endotype.INTERMEDIATE:
        met = [f.label for f in _inflammation_met(assessment)]
        return f"No IL-6/IFN-γ-high pattern; inflammation finding: {', '.join(met[:2]) or 'met'}"
    return "No IL-6/IFN-γ-high pattern: IL-6 and IFN-γ axis not markedly raised"


def _insufficient_summary(
    assessment: Assessment, panel: Panel, qualifier: str, pending: frozenset[str]
) -> str:
    """'Immune pattern: insufficient data: …' naming what is missing, stale or unpaired."""
    prefix = "Immune pattern: insufficient data: "
    suffix = f" {qualifier}" if assessment.scorer.kind == "model" else ""
    if assessment.kind is DecisionKind.STALE:
        return f"{prefix}latest IL-6/IFN-γ-axis sample is stale{suffix}"
    if assessment.kind is DecisionKind.PRE_ANCHOR_ONLY:
        return f"{prefix}IL-6/IFN-γ results only from before onset{suffix}"
    if assessment.kind is DecisionKind.UNPAIRED_MARKED:
        marked = _marked_names(assessment.current, panel)
        return f"{prefix}{marked} markedly raised, partner axis not measured{suffix}"
    names = [label(panel, a) for a in assessment.missing if a not in pending]
    ordered = [label(panel, a) for a in assessment.missing if a in pending]
    if not names and not ordered:
        names = list(assessment.unmet)
    if not names and not ordered:
        return f"{prefix}results cannot be compared with thresholds{suffix}"
    finding = _strongest_finding(assessment)
    orders = f"; {', '.join(ordered)} ordered" if ordered else ""
    used = len(prefix) + len(suffix) + len(" missing") + len(finding) + len(orders)
    missing = f"{_fit_list(names, SUMMARY_MAX_CHARS - used)} missing" if names else ""
    return f"{prefix}{missing}{orders}{finding}{suffix}".replace(": ; ", ": ")


def _strongest_finding(assessment: Assessment) -> str:
    """'; finding: ferritin > 4,420 (MALS, adult)' for the last-listed inflammation finding met."""
    inflammation = _inflammation_met(assessment)
    return f"; finding: {inflammation[-1].label}" if inflammation else ""


def _inflammation_met(assessment: Assessment) -> list:
    """The inflammation findings met, in rule-file order."""
    met = [f for f in assessment.findings if f.met and f.citation and f.label]
    return [f for f in met if f.id not in CONTEXT_FINDINGS]


def _v1_summary(
    assessment: Assessment, panel: Panel, qualifier: str, pending: frozenset[str]
) -> str:
    """The rules v1 summary by pathway."""
    if assessment.pathway is Pathway.INSUFFICIENT_DATA:
        return _insufficient_summary(assessment, panel, qualifier, pending)
    if assessment.pathway is Pathway.BIOMARKER_GUIDED:
        return (
            f"Biomarkers suggest a possible IL-6/IFN-γ-high immune pattern (rules v1) {qualifier}"
        )
    return f"No IL-6/IFN-γ-high immune pattern detected by rules v1 {qualifier}"


def _fit_list(names: list[str], room: int) -> str:
    """Join up to three names, the rest as '+N more', shortened further to fit `room` characters."""
    for shown in range(min(len(names), SUMMARY_MAX_NAMES), 0, -1):
        rest = len(names) - shown
        text = ", ".join(names[:shown]) + (f" +{rest} more" if rest else "")
        if len(text) <= room:
            return text
    return f"{len(names)} markers"


# --- suggestions ----------------------------------------------------------------------------


def suggestions(
    assessment: Assessment,
    timeline: Timeline,
    panel: Panel,
    patient_id: str,
    encounter_id: str | None,
    chart: ChartContext | None = None,
) -> dict[str, Any]:
    """'Consider ordering' the missing markers without an active or preliminary result.

    Offered only in the early window after the anchor: later, an order suggestion no longer
    serves the onset-anchored assessment.
    """
    if not timeline.frame.in_early_window:
        return {}
    pending = {item.analyte for item in timeline.preliminary} | set(
        (chart or ChartContext()).pending
    )
    orderable = [a for a in assessment.missing if a in panel.analytes and a not in pending]
    if not orderable:
        return {}
    actions = [
        {
            "type": "create",
            "description": f"Draft order (proposal) for {panel.analytes[analyte].display}",
            "resource": service_request_for(
                panel.analytes[analyte], patient_id=patient_id, encounter_id=encounter_id
            ),
        }
        for analyte in orderable
    ]
    text = "Consider ordering: " + ", ".join(panel.analytes[a].display for a in orderable)
    suggestion = {"label": text, "uuid": str(uuid4()), "actions": actions}
    return {"suggestions": [suggestion], "selectionBehavior": "any"}


def links(settings: Settings) -> list[dict[str, str]]:
    """The site's pathway documents when configured, then the model card."""
    configured = (
        ("Site pathway: standard", settings.pathways.standard_url),
        ("Site pathway: biomarker-guided", settings.pathways.biomarker_guided_url),
        ("Model card: rules, thresholds, limitations", settings.model_card_url),
    )
    return [
        {"label": label, "url": str(url), "type": "absolute"} for label, url in configured if url
    ]


def source(settings: Settings) -> dict[str, Any]:
    """Who gives this guidance, linking to the model card."""
    return {"label": SOURCE_LABEL, "url": settings.model_card_url, "topic": dict(TOPIC)}


def override_reasons() -> list[dict[str, str]]:
    """Reasons a clinician may give for setting the card aside; each with a display."""
    return [
        {"system": OVERRIDE_SYSTEM, "code": code, "display": display}
        for code, display in OVERRIDE_REASONS
    ]


# --- extension ------------------------------------------------------------------------------


def extension(
    assessment: Assessment, timeline: Timeline, chart: ChartContext | None = None
) -> dict[str, Any]:
    """Machine-readable assessment: decision, context, persistence, findings and markers."""
    scorer = assessment.scorer
    return {
        "pathway": assessment.pathway.value,
        "endotype": assessment.endotype.value,
        "decision": assessment.kind.value if assessment.kind else None,
        "scorer": {
            "id": scorer.id,
            "version": scorer.version,
            "kind": scorer.kind,
            "contentHash": scorer.content_hash,
            "syntheticTrainingData": scorer.synthetic_training_data or None,
        },
        "context": _context_extension(timeline, chart or ChartContext()),
        "persistence": _persistence_extension(assessment),
        "findings": [{"id": f.id, "met": f.met} for f in assessment.findings],
        "markers": _markers_extension(assessment),
        "missing": list(assessment.missing),
        "unmet": list(assessment.unmet),
        "pending": sorted(chart.pending) if chart else None,
        "excluded": [_exclusion_extension(e) for e in timeline.exclusions],
        "probability": assessment.probability,
        "modelNote": assessment.model_note or None,
    }


def _context_extension(timeline: Timeline, chart: ChartContext) -> dict[str, Any]:
    """In the PICU, the encounter, the anchor and the hours since it."""
    frame = timeline.frame
    return {
        "in_picu": chart.in_picu,
        "encounter": chart.encounter,
        "anchor": {
            "time": fmt.iso(frame.anchor.time),
            "source": frame.anchor.source.value,
            "detail": frame.anchor.detail,
        },
        "hours_since_anchor": round(frame.since_anchor.total_seconds() / 3600, 1),
        "phoenix": phoenix_extension(chart.phoenix),
    }


def _persistence_extension(assessment: Assessment) -> dict[str, Any] | None:
    """The persistence state, every sample's time, phase and level, and per-analyte trends."""
    persistence = assessment.persistence
    if persistence is None:
        return None
    return {
        "state": persistence.state.value,
        "samples": [
            {
                "time": fmt.iso(s.time),
                "phase": s.phase.value,
                "state": s.level.value,
                "judgedBy": s.judged_by,
            }
            for s in persistence.samples
        ],
        "trend": {
            analyte: {
                "baseline": _point(trend.baseline),
                "peak": _point(trend.peak),
                "latest": _point(trend.latest),
                "direction": trend.direction,
            }
            for analyte, trend in persistence.trends.items()
        },
    }


def _point(result: Measurement | None) -> dict[str, Any] | None:
    """A value with its unit and time, for trends."""
    if result is None:
        return None
    return {"value": result.value, "unit": result.unit, "time": fmt.iso(result.time)}


def _markers_extension(assessment: Assessment) -> dict[str, Any]:
    """Each used marker's latest value; axis markers with their upper limit and marked basis."""
    judged = _latest_judgements(assessment)
    markers = {}
    for analyte, series in assessment.used.items():
        entry = _marker_extension(series.latest)
        if analyte in judged:
            entry |= _judgement_extension(judged[analyte])
        markers[analyte] = entry
    return markers


def _latest_judgements(assessment: Assessment) -> dict[str, Judgement]:
    """The judgements of the deciding sample, by analyte."""
    sample = assessment.current
    return {
        j.measurement.analyte: j
        for axis in (sample.axes if sample else ())
        for j in axis.judgements
    }


def _judgement_extension(judgement: Judgement) -> dict[str, Any]:
    """The upper limit and the markedly-raised basis of one judged result."""
    upper, threshold = judgement.upper_limit, judgement.threshold
    entry: dict[str, Any] = {
        "judgedValue": judgement.measurement.value,
        "judgedTime": fmt.iso(judgement.measurement.time),
    }
    if upper is not None:
        entry["upperLimit"] = {
            "value": upper.value,
            "unit": upper.unit,
            "source": upper.source.value,
            "text": upper.text,
        }
    entry["aboveNormal"] = judgement.above_normal
    if threshold is not None:
        entry["marked"] = {
            "value": judgement.marked,
            "threshold": threshold.value,
            "operator": threshold.operator,
            "unit": threshold.unit,
            "basis": threshold.basis.value,
            "source": threshold.short,
            "citationUrl": threshold.citation_url,
            "multiple": threshold.multiple,
        }
    return entry


def _marker_extension(result: Measurement) -> dict[str, Any]:
    """One marker's latest value for the machine-readable extension."""
    return {
        "value": result.value,
        "unit": result.unit,
        "time": fmt.iso(result.time),
        "code": fmt.token(result),
        "comparator": result.comparator,
        "unitAssumed": result.unit_assumed or None,
    }


def _exclusion_extension(exclusion) -> dict[str, Any]:
    """One excluded result: analyte, reason, time and code, never its free text."""
    return {
        "analyte": exclusion.analyte,
        "reason": exclusion.reason.value,
        "time": fmt.iso(exclusion.time) if exclusion.time else None,
        "code": f"{exclusion.system}|{exclusion.code}"
        if exclusion.system and exclusion.code
        else None,
    }


_LEAVES = frozenset({str, int, float, bool, type(None)})


def prune(value: Any) -> Any:
    """Drop None, empty strings, lists and dicts at every depth (CDS Hooks forbids them)."""
    kind = type(value)
    if kind in _LEAVES:  # most of a card: out before the slower abstract-type checks
        return value
    if kind is dict or isinstance(value, Mapping):
        return {key: kept for key, child in value.items() if not is_empty(kept := prune(child))}
    if kind is list or kind is tuple or isinstance(value, list | tuple):
        return [kept for item in value if not is_empty(kept := prune(item))]
    return value
