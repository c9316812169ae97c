"""Assessment → one CDS Hooks 2.0 card as a plain dict, one function per card section.

The detail is GitHub-flavoured markdown sized for a narrow EHR side panel: short bullet lines, no
tables. Values, units and codes sit in code spans so UCUM units such as `10*3/uL` are shown
literally. Wording suggests ("consider …"), never names a therapy, and never turns missing or
stale data into reassurance. Nothing empty is left in the card: keys without content are omitted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from cds_service.settings import Settings
from fhir_mappings.emit import service_request_for
from fhir_mappings.measurement import Exclusion, ExclusionReason, Measurement
from fhir_mappings.panel import Panel
from model.assessment import (
    Assessment,
    Endotype,
    Evidence,
    MarkerSeries,
    Pathway,
    Timeline,
)

SUMMARY_MAX_CHARS = 139  # "<140-character summary"
MAX_EXCLUSIONS_SHOWN = 12  # excluded results listed one by one; the rest are counted
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
INTENDED_POPULATION = (
    "Intended population: PICU patients < 18 y with organ dysfunction or sepsis; "
    "intended users: PICU clinicians."
)
JUDGEMENT = "Informs; does not replace clinical judgement."
SYNTHETIC_STATEMENT = (
    "**This model is trained on SYNTHETIC data and is not for clinical use.** "
    "It does not reproduce any published study's model."
)
EXCLUSION_TEXT = {
    ExclusionReason.ENTERED_IN_ERROR: "entered in error",
    ExclusionReason.CANCELLED: "cancelled",
    ExclusionReason.UNSUPPORTED_STATUS: "status not usable",
    ExclusionReason.NO_NUMERIC_VALUE: "no numeric value",
    ExclusionReason.DATA_ABSENT: "value absent",
    ExclusionReason.UNIT_NOT_CONVERTIBLE: "unit not convertible",
    ExclusionReason.NO_EFFECTIVE_TIME: "no effective time",
    ExclusionReason.IMPRECISE_TIME: "imprecise time",
    ExclusionReason.OTHER_PATIENT: "belongs to another patient",
    ExclusionReason.OUTSIDE_WINDOW: "outside the look-back window",
    ExclusionReason.IN_FUTURE: "dated in the future",
    ExclusionReason.MALFORMED: "malformed",
    ExclusionReason.IMPLAUSIBLE: "impossible value, not used",
    ExclusionReason.CONFLICTING: "conflicting copies, not used",
}
HEADLINES = {
    Pathway.BIOMARKER_GUIDED: "**Possible IL-6/IFN-γ-high immune pattern** (not a diagnosis).",
    Pathway.STANDARD: "**No IL-6/IFN-γ-high immune pattern detected** in these results.",
    Pathway.INSUFFICIENT_DATA: (
        "**Insufficient data**: no immune-pattern assessment is possible. "
        "This is not a normal result."
    ),
}
PATTERNS = {
    Endotype.INTERMEDIATE: "intermediate (inflammation without an IFN-γ-axis signal)",
    Endotype.QUIESCENT: "quiescent (no inflammation entry criterion met)",
}
CONSIDER = {
    Pathway.BIOMARKER_GUIDED: (
        "Consider the site's biomarker-guided pathway.",
        "Consider repeating ferritin and CRP in 24–48 h to assess trajectory.",
        "Consider discussion with immunology/rheumatology per local practice.",
        "Consider screening for eligibility in open immunomodulation studies where applicable.",
    ),
    Pathway.STANDARD: (
        "Consider the site's standard pathway.",
        "Consider re-assessing as new results arrive; patterns can change within days.",
    ),
    Pathway.INSUFFICIENT_DATA: ("Consider ordering the missing markers if clinically indicated.",),
}


def build_card(
    assessment: Assessment,
    timeline: Timeline,
    *,
    panel: Panel,
    settings: Settings,
    patient_id: str,
    encounter_id: str | None = None,
    incomplete: Sequence[str] = (),
) -> dict[str, Any]:
    """One CDS Hooks card showing the assessment and everything needed to check it.

    `incomplete` names the data keys whose results were not all read (see `incomplete_note`).
    """
    card: dict[str, Any] = {
        "uuid": str(uuid4()),
        "summary": summary(assessment, panel),
        "detail": incomplete_note(detail(assessment, timeline, panel, settings), incomplete, panel),
        "indicator": settings.indicator,
        "source": source(settings),
        **suggestions(assessment, timeline, panel, patient_id, encounter_id),
        "overrideReasons": override_reasons(),
        "links": links(settings),
        "extension": {EXTENSION_KEY: {**extension(assessment), INCOMPLETE_KEY: sorted(incomplete)}},
    }
    return prune(card)


def incomplete_note(text: str, incomplete: Sequence[str], panel: Panel) -> str:
    """The detail with a warning after its headline when some results were left unread."""
    if not incomplete:
        return text
    names = ", ".join(_text(_display(panel, key)) for key in sorted(incomplete))
    note = (
        f"**Data may be incomplete**: the EHR holds more results for {names} than were read "
        "(paging limit, a page on another server, or a page larger than this service accepts). "
        "Older results may be missing from the trends and from what is called stale."
    )
    headline, _, rest = text.partition("\n\n")
    return "\n\n".join(part for part in (headline, note, rest) if part)


# --- summary --------------------------------------------------------------------------------


def summary(assessment: Assessment, panel: Panel) -> str:
    """A one-sentence summary under 140 characters, suggestive and never reassuring on gaps."""
    qualifier = _qualifier(assessment)
    if assessment.pathway is Pathway.INSUFFICIENT_DATA:
        text = _insufficient_summary(assessment, panel, qualifier)
    elif assessment.pathway is Pathway.BIOMARKER_GUIDED:
        text = f"Biomarkers suggest a possible IL-6/IFN-γ-high immune pattern {qualifier}"
    elif assessment.endotype is Endotype.INTERMEDIATE:
        text = (
            f"Inflammatory markers raised; no IL-6/IFN-γ-high immune pattern detected {qualifier}"
        )
    else:
        text = f"No IL-6/IFN-γ-high immune pattern detected in recent biomarkers {qualifier}"
    return _truncate(text, SUMMARY_MAX_CHARS)


def _qualifier(assessment: Assessment) -> str:
    """How far the output may be trusted, in a few words."""
    if assessment.scorer.synthetic_training_data:
        return "(synthetic-data model; not for clinical use)"
    if assessment.scorer.kind == "model":
        return "(research model; not a diagnosis)"
    return "(research-based; not a diagnosis)"


def _insufficient_summary(assessment: Assessment, panel: Panel, qualifier: str) -> str:
    """'Insufficient data: …' naming as many missing markers as fit."""
    prefix = "Immune pattern: insufficient data: "
    suffix = f" {qualifier}" if assessment.scorer.kind == "model" else ""
    if not assessment.missing:
        return f"{prefix}results cannot be compared with thresholds{suffix}"
    names = [_display(panel, a) for a in assessment.missing]
    room = SUMMARY_MAX_CHARS - len(prefix) - len(suffix) - len(" missing")
    return f"{prefix}{_fit_list(names, room)} missing{suffix}"


def _fit_list(names: Sequence[str], room: int) -> str:
    """Join up to three names, the rest as '+N more', shortened further to fit `room` characters."""
    for shown in range(min(len(names), SUMMARY_MAX_NAMES), 0, -1):
        rest = len(names) - shown
        text = ", ".join(names[:shown]) + (f" +{rest} more" if rest else "")
        if len(text) <= room:
            return text
    return f"{len(names)} markers"


def _truncate(text: str, limit: int) -> str:
    """Cut text to `limit` characters with an ellipsis; a safety net, not the usual path."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# --- detail ---------------------------------------------------------------------------------


def detail(assessment: Assessment, timeline: Timeline, panel: Panel, settings: Settings) -> str:
    """The markdown detail: pattern, reasons, inputs, gaps, rules or model, limitations."""
    sections = (
        _headline_section(assessment),
        _reasons_section(assessment),
        _used_section(assessment, timeline, panel),
        _preliminary_section(timeline, panel),
        _missing_section(assessment, timeline, panel),
        _excluded_section(timeline, panel),
        _model_section(assessment, panel),
        _evidence_section(assessment),
        _limitations_section(assessment, settings),
    )
    return "\n\n".join("\n".join(lines) for lines in sections if lines)


def _headline_section(assessment: Assessment) -> list[str]:
    """The pathway in words, the synthetic warning when it applies, and what to consider."""
    lines = [HEADLINES[assessment.pathway]]
    if assessment.scorer.synthetic_training_data:
        lines = [SYNTHETIC_STATEMENT, "", *lines]
    if assessment.pathway is Pathway.STANDARD:
        pattern = PATTERNS.get(assessment.endotype, assessment.endotype.value)
        lines.append(f"Pattern: {pattern}.")
    return [*lines, "", *(f"- {_text(line)}" for line in CONSIDER[assessment.pathway])]


def _reasons_section(assessment: Assessment) -> list[str]:
    """The scorer's reasons, one bullet each."""
    if not assessment.reasons:
        return []
    return ["**Why**", *(f"- {_text(reason)}" for reason in assessment.reasons)]


def _used_section(assessment: Assessment, timeline: Timeline, panel: Panel) -> list[str]:
    """Every marker that informed the result, latest value first."""
    if not assessment.used:
        return []
    header = f"**Results used** (counted, last {_hours(timeline.window)} h; latest shown)"
    lines = [header]
    for analyte, series in assessment.used.items():
        lines.extend(_marker_lines(_display(panel, analyte), series))
    return lines


def _marker_lines(display: str, series: MarkerSeries) -> list[str]:
    """One marker: latest value, time and code, then trend and conversion notes."""
    latest = series.latest
    lines = [
        f"- **{_text(display)}**: {_code(_quantity(latest))}{_unit_note(latest)}",
        f"  - {_iso(latest.time)} · {_code(_token(latest))}",
    ]
    if len(series.values) > 1:
        baseline = series.baseline
        lines.append(
            f"  - baseline {_code(_quantity(baseline))}{_unit_note(baseline)} "
            f"({_iso(baseline.time)}) → latest "
            f"{_code(_quantity(latest))}; {len(series.values)} results"
        )
    if latest.converted:
        lines.append(f"  - converted from {_code(_source_quantity(latest))}")
    return lines


def _preliminary_section(timeline: Timeline, panel: Panel) -> list[str]:
    """Preliminary results, shown so nobody re-orders them, never scored."""
    if not timeline.preliminary:
        return []
    lines = ["**Preliminary results** (shown only, not scored)"]
    for item in timeline.preliminary:
        lines.append(
            f"- {_text(_display(panel, item.analyte))}: {_code(_quantity(item))}"
            f"{_unit_note(item)} preliminary, "
            f"{_iso(item.time)} · {_code(_token(item))}"
        )
    return lines


def _missing_section(assessment: Assessment, timeline: Timeline, panel: Panel) -> list[str]:
    """Markers with no counted result in the window: absent, stale or only preliminary."""
    if not assessment.missing:
        return []
    window = _hours(timeline.window)
    pending = {item.analyte for item in timeline.preliminary}
    lines = ["**Missing or stale** (not used)"]
    for analyte in assessment.missing:
        name = _text(_display(panel, analyte))
        if analyte in timeline.stale:
            lines.append(_stale_line(name, timeline.stale[analyte], timeline.now, window))
        elif analyte in pending:
            lines.append(f"- {name}: only a preliminary result in the last {window} h (above)")
        else:
            lines.append(f"- {name}: no counted result in the last {window} h")
    return lines


def _stale_line(name: str, result: Measurement, now: datetime, window: str) -> str:
    """A stale marker with its age, value, time and code."""
    return (
        f"- {name}: stale, last result {_age(now - result.time)} old "
        f"({_code(_quantity(result))}{_unit_note(result)}, {_iso(result.time)} · "
        f"{_code(_token(result))}); older than {window} h"
    )


def _excluded_section(timeline: Timeline, panel: Panel) -> list[str]:
    """Results that were recognised but not used, each with its reason."""
    if not timeline.exclusions:
        return []
    shown = timeline.exclusions[:MAX_EXCLUSIONS_SHOWN]
    lines = ["**Excluded results**", *(_exclusion_line(e, panel) for e in shown)]
    hidden = len(timeline.exclusions) - len(shown)
    if hidden:
        lines.append(f"- and {hidden} more excluded results")
    return lines


def _exclusion_line(exclusion: Exclusion, panel: Panel) -> str:
    """One excluded result: analyte, reason, detail, time and code when known."""
    name = _display(panel, exclusion.analyte) if exclusion.analyte else "Panel result"
    parts = [f"- {_text(name)}: {EXCLUSION_TEXT.get(exclusion.reason, exclusion.reason.value)}"]
    if exclusion.detail:
        parts.append(f" ({_text(exclusion.detail)})")
    if exclusion.time is not None:
        parts.append(f", {_iso(exclusion.time)}")
    if exclusion.system and exclusion.code:
        parts.append(f" · {_code(f'{exclusion.system}|{exclusion.code}')}")
    return "".join(parts)


def _model_section(assessment: Assessment, panel: Panel) -> list[str]:
    """For a model scorer: class, probabilities, top contributing markers, provenance."""
    if assessment.scorer.kind != "model":
        return []
    lines = [
        f"**Model** {_scorer_identity(assessment)}",
        f"- Model class: {_text(assessment.endotype.value)}",
    ]
    if assessment.class_probabilities:
        shares = ", ".join(
            f"{_text(name)} {share:.2f}" for name, share in assessment.class_probabilities.items()
        )
        lines.append(f"- Class probabilities: {shares}")
    if assessment.probability is not None:
        lines.append(f"- Probability of the high-risk class: {assessment.probability:.2f}")
    if assessment.contributions:
        terms = ", ".join(
            f"{_text(_display(panel, analyte))} ({weight:+.2f})"
            for analyte, weight in assessment.contributions
        )
        lines.append(f"- Top contributing markers: {terms}")
    if assessment.scorer.synthetic_training_data:
        lines.append(f"- {SYNTHETIC_STATEMENT}")
    return lines


def _evidence_section(assessment: Assessment) -> list[str]:
    """Each rule or model term with its outcome, citation link and note."""
    if not assessment.evidence:
        return []
    if assessment.scorer.kind == "rules":
        header = f"**Rules** {_scorer_identity(assessment)}"
    else:
        header = "**Published thresholds and model terms** (shown beside the model output)"
    return [header, *(line for item in assessment.evidence for line in _evidence_lines(item))]


def _evidence_lines(item: Evidence) -> list[str]:
    """One evidence bullet (met / not met / not evaluable), its source and note beneath it."""
    state = {True: "met", False: "not met", None: "not evaluable"}[item.met]
    lines = [f"- {state}: {_text(item.description)}"]
    if item.citation and item.citation_url:
        lines.append(f"  - [{_text(item.citation)}]({_url(item.citation_url)})")
    elif item.citation:
        lines.append(f"  - {_text(item.citation)}")
    if item.note:
        lines.append(f"  - {_text(item.note)}")
    return lines


def _scorer_identity(assessment: Assessment) -> str:
    """Id, version and short content hash of the rule set or model."""
    info = assessment.scorer
    text = f"{_code(info.id)} {_code(info.version)}"
    if info.content_hash:
        text += f", sha256 {_code(info.content_hash[:12])}"
    return text


def _limitations_section(assessment: Assessment, settings: Settings) -> list[str]:
    """Limitations, intended population, clinical-judgement statement, model-card link."""
    lines = ["**Limitations**", *(f"- {_text(item)}" for item in assessment.limitations)]
    lines.extend(
        [
            f"- {INTENDED_POPULATION}",
            f"- {JUDGEMENT}",
            f"- Thresholds, sources and validation: [model card]({_url(settings.model_card_url)})",
        ]
    )
    return lines


# --- suggestions, links, source, override reasons -------------------------------------------


def suggestions(
    assessment: Assessment,
    timeline: Timeline,
    panel: Panel,
    patient_id: str,
    encounter_id: str | None,
) -> dict[str, Any]:
    """'Consider ordering' with one draft ServiceRequest per missing orderable marker."""
    pending = {item.analyte for item in timeline.preliminary}
    orderable = [a for a in assessment.missing if a in panel.analytes and a not in pending]
    if not orderable:
        return {}
    actions = [
        {
            "type": "create",
            "description": f"Draft order (proposal) for {_display(panel, analyte)}",
            "resource": service_request_for(
                panel.analytes[analyte], patient_id=patient_id, encounter_id=encounter_id
            ),
        }
        for analyte in orderable
    ]
    label = "Consider ordering: " + ", ".join(_display(panel, a) for a in orderable)
    suggestion = {"label": label, "uuid": str(uuid4()), "actions": actions}
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


def extension(assessment: Assessment) -> dict[str, Any]:
    """Machine-readable assessment: pathway, endotype, scorer, marker values and what is missing."""
    scorer = assessment.scorer
    return {
        "pathway": assessment.pathway.value,
        "endotype": assessment.endotype.value,
        "scorer": {
            "id": scorer.id,
            "version": scorer.version,
            "kind": scorer.kind,
            "contentHash": scorer.content_hash,
            "syntheticTrainingData": scorer.synthetic_training_data or None,
        },
        "markers": {
            analyte: _marker_extension(series.latest) for analyte, series in assessment.used.items()
        },
        "missing": list(assessment.missing),
        "probability": assessment.probability,
    }


def _marker_extension(result: Measurement) -> dict[str, Any]:
    """One marker's latest value for the machine-readable extension."""
    return {
        "value": result.value,
        "unit": result.unit,
        "time": _iso(result.time),
        "code": _token(result),
        "comparator": result.comparator,
        "unitAssumed": result.unit_assumed or None,
    }


def prune(value: Any) -> Any:
    """Drop None, empty strings, lists and dicts at every depth (CDS Hooks forbids them)."""
    if isinstance(value, Mapping):
        pruned = {key: prune(child) for key, child in value.items()}
        return {key: child for key, child in pruned.items() if not _empty(child)}
    if isinstance(value, list | tuple):
        return [child for child in (prune(item) for item in value) if not _empty(child)]
    return value


def _empty(value: Any) -> bool:
    """True for None and for empty strings, lists and dicts."""
    return value is None or (isinstance(value, str | list | dict) and not value)


# --- formatting -----------------------------------------------------------------------------

_MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]~]|<(?=[A-Za-z/!?]))")


def _text(text: str) -> str:
    """Free text made inert in markdown: emphasis, link, code and HTML openers escaped."""
    return _MARKDOWN_SPECIALS.sub(r"\\\1", text)


def _code(text: str) -> str:
    """A code span showing `text` literally (backticks inside become quotes)."""
    return "`" + text.replace("`", "'") + "`"


def _url(url: str) -> str:
    """A URL safe inside a markdown link target."""
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29")


def _display(panel: Panel, analyte: str) -> str:
    """The panel's display name of an analyte, or its key when the panel lacks it."""
    spec = panel.analytes.get(analyte)
    return spec.display if spec is not None else analyte


def _num(value: float) -> str:
    """A number without float noise or a trailing '.0'."""
    text = f"{round(value, 4):f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def _quantity(result: Measurement) -> str:
    """Comparator, value and unit as reported after conversion, e.g. '<5 pg/mL'."""
    return f"{result.comparator or ''}{_num(result.value)} {result.unit}"


def _source_quantity(result: Measurement) -> str:
    """The value and unit as the laboratory sent them."""
    value = _num(result.source_value) if result.source_value is not None else "?"
    return f"{result.comparator or ''}{value} {result.source_unit}"


def _unit_note(result: Measurement) -> str:
    """' (unit not sent; assumed `u` from the code)' when the unit was not sent, else ''."""
    if not result.unit_assumed:
        return ""
    return f" (unit not sent; assumed {_code(result.source_unit or result.unit)} from the code)"


def _token(result: Measurement) -> str:
    """The matched coding as a FHIR token, system|code."""
    return f"{result.system}|{result.code}"


def _iso(moment: datetime) -> str:
    """An ISO 8601 instant in UTC to the second, with a 'Z'."""
    text = moment.astimezone(UTC).replace(microsecond=0).isoformat()
    return text.replace("+00:00", "Z")


def _hours(span: timedelta) -> str:
    """A duration in hours, as a short number."""
    return _num(span.total_seconds() / 3600)


def _age(span: timedelta) -> str:
    """A result's age in days and hours, e.g. '3 d 4 h'."""
    hours = int(span.total_seconds() // 3600)
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if days else f"{hours} h"
