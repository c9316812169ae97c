"""The card's markdown detail, sized for a narrow EHR side panel (at most 1,500 characters).

What decided comes first: the headline (persistence first), what to consider, where the child is
in time, the deciding values with local time, age, code and threshold basis, the earlier raised
values, then the other inputs, findings, what is pending, missing or excluded, and the scorer
with one link to the model-card page (every rule, threshold, source and limitation). Wording
suggests; missing or stale data is never reassurance.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from cds_service import card_text as fmt
from cds_service.phoenix_card import anchor_text, phoenix_line
from cds_service.settings import Settings
from fhir_mappings.measurement import ExclusionReason, Measurement
from fhir_mappings.panel import Panel
from model.assessment import (
    AnchorSource,
    Assessment,
    DecisionKind,
    Endotype,
    Pathway,
    Phase,
    Timeline,
)
from model.phoenix_context import PhoenixContext
from model.states import (
    Judgement,
    LimitSource,
    MarkedBasis,
    PersistenceState,
    SampleState,
)

DETAIL_MAX_CHARS = 1500
OMITTED = "(Other values and findings left out to fit: see the card's extension.)"
MODEL_CARD_LINK = "Rules, thresholds, sources, limitations"
ANCHOR_LABELS = {
    AnchorSource.CONDITION: "recorded onset",
    AnchorSource.PICU_ADMISSION: "PICU admission",
    AnchorSource.ENCOUNTER_START: "encounter start",
}
NOT_NORMAL = "This is not a normal result."
NOT_NORMAL_LOWER = "this is not a normal result."
DAY = timedelta(hours=24)
PHASE_TEXT = {
    Phase.PRE_ANCHOR: "before onset",
    Phase.EARLY: "early window",
    Phase.LATER: "after the early window",
}
SYNTHETIC_LINE = "**SYNTHETIC-data model: not for clinical use.**"
HIGH_HEADLINES = {
    PersistenceState.PERSISTENT: (
        "**Persistent IL-6/IFN-γ-high pattern**: both axes markedly raised at samples ≥ 24 h "
        "apart, the study's high-mortality picture. Research-based; not a diagnosis."
    ),
    PersistenceState.NEW: (
        "**New IL-6/IFN-γ-high pattern**: both axes markedly raised now, not at an earlier "
        "sample. Research-based; not a diagnosis."
    ),
}
HIGH_SINGLE = (
    "**IL-6/IFN-γ-high pattern** (one sample so far): both axes markedly raised. "
    "Research-based; not a diagnosis."
)
NOT_HIGH_HEADLINES = {
    Endotype.INTERMEDIATE: (
        "**No IL-6/IFN-γ-high pattern** at the latest sample; an inflammation finding is met "
        "(intermediate)."
    ),
    Endotype.QUIESCENT: "**No IL-6/IFN-γ-high pattern** at the latest sample (quiescent).",
}
RESOLVING = "**Resolving**: IL-6/IFN-γ-high at an earlier sample, neither axis markedly raised now."
INSUFFICIENT = "**Insufficient data**: no IL-6/IFN-γ assessment is possible. " + NOT_NORMAL
EXCLUSION_TEXT = {
    ExclusionReason.ENTERED_IN_ERROR: "entered in error",
    ExclusionReason.CANCELLED: "cancelled",
    ExclusionReason.UNSUPPORTED_STATUS: "status not usable",
    ExclusionReason.NO_NUMERIC_VALUE: "no numeric value",
    ExclusionReason.DATA_ABSENT: "value absent",
    ExclusionReason.UNIT_NOT_CONVERTIBLE: "unit not convertible",
    ExclusionReason.NO_EFFECTIVE_TIME: "no effective time",
    ExclusionReason.IMPRECISE_TIME: "imprecise time",
    ExclusionReason.OTHER_PATIENT: "another patient",
    ExclusionReason.OUTSIDE_WINDOW: "outside the look-back",
    ExclusionReason.IN_FUTURE: "dated in the future",
    ExclusionReason.MALFORMED: "malformed",
    ExclusionReason.IMPLAUSIBLE: "impossible value, not used",
    ExclusionReason.CONFLICTING: "conflicting copies, not used",
}
V1_HEADLINES = {
    Pathway.BIOMARKER_GUIDED: (
        "**Possible IL-6/IFN-γ-high immune pattern** (rules v1; not a diagnosis)."
    ),
    Pathway.STANDARD: "**No IL-6/IFN-γ-high immune pattern detected** by rules v1.",
    Pathway.INSUFFICIENT_DATA: INSUFFICIENT,
}


@dataclass(frozen=True)
class ChartContext:
    """What the chart says beyond the results: PICU stay, encounter and pending orders."""

    in_picu: bool | None = None
    encounter: str | None = None  # "Encounter/<id>"
    pending: frozenset[str] = field(default_factory=frozenset)  # analytes with an active order
    notes: tuple[str, ...] = ()  # plain sentences the card must show, e.g. an unknown age
    incomplete: tuple[str, ...] = ()  # data keys with results left unread (paging, reply cap)
    phoenix: PhoenixContext | None = None  # the Phoenix course, when the layer is on


@dataclass(frozen=True)
class _Page:
    """Everything one detail is written from."""

    assessment: Assessment
    timeline: Timeline
    panel: Panel
    settings: Settings
    chart: ChartContext
    orders_offered: bool
    compact: bool = False  # shorter findings, earlier values and gaps, to fit the limit

    @property
    def zone(self) -> str:
        """The site's IANA time zone."""
        return self.settings.time_zone

    def when(self, moment) -> str:
        """Local time and age of a moment."""
        return fmt.when(moment, self.timeline.now, self.zone)


def label(panel: Panel, analyte: str) -> str:
    """The analyte's panel label, capitalised to start a line ("Ferritin", "IL-6")."""
    spec = panel.analytes.get(analyte)
    text = spec.label if spec is not None else analyte
    return text[:1].upper() + text[1:]


def detail(
    assessment: Assessment,
    timeline: Timeline,
    panel: Panel,
    settings: Settings,
    chart: ChartContext,
    *,
    orders_offered: bool,
) -> str:
    """The markdown detail for an assessment: rules v2 and model layout, or the v1 layout."""
    page = _Page(assessment, timeline, panel, settings, chart, orders_offered)
    builders = _V2_SECTIONS if assessment.kind is not None else _V1_SECTIONS
    text = _render(page, builders)
    if len(text) > DETAIL_MAX_CHARS:
        page = replace(page, compact=True)
        text = _render(page, builders)
    for optional in _OPTIONAL_SECTIONS:
        if len(text) <= DETAIL_MAX_CHARS:
            break
        builders = tuple(b for b in builders if b is not optional)
        text = _render(page, builders, omitted=True)
    return text


def _render(page: _Page, builders: tuple, *, omitted: bool = False) -> str:
    """The sections in order, blank lines between them; a note when some were left out."""
    sections = [builder(page) for builder in builders]
    if omitted:
        sections.insert(-1, [OMITTED])
    return "\n\n".join("\n".join(lines) for lines in sections if lines)


# --- headline, consider, time ----------------------------------------------------------------


def _synthetic_section(page: _Page) -> list[str]:
    """The synthetic-data warning first, for a model trained on synthetic data."""
    return [SYNTHETIC_LINE] if page.assessment.scorer.synthetic_training_data else []


def _headline_section(page: _Page) -> list[str]:
    """The headline (persistence first) and, when not decided, why."""
    assessment = page.assessment
    kind, state = assessment.kind, _persistence_state(assessment)
    if kind is DecisionKind.HIGH:
        return [HIGH_HEADLINES.get(state, HIGH_SINGLE)]
    if kind is DecisionKind.DISCORDANT:
        headline = fmt.text(assessment.reasons[0])
        return [f"**{headline}.** Insufficient data for the IL-6/IFN-γ pattern; {NOT_NORMAL_LOWER}"]
    if kind is DecisionKind.NOT_HIGH:
        if state is PersistenceState.RESOLVING:
            return [RESOLVING, f"Pattern now: {assessment.endotype.value}."]
        return [NOT_HIGH_HEADLINES.get(assessment.endotype, NOT_HIGH_HEADLINES[Endotype.QUIESCENT])]
    return [INSUFFICIENT, _insufficient_reason(page)]


def _insufficient_reason(page: _Page) -> str:
    """Why no assessment is possible, with the age of a stale sample."""
    assessment = page.assessment
    if assessment.kind is DecisionKind.STALE and assessment.current is not None:
        limit = fmt.num(page.timeline.frame.current_max_age.total_seconds() / 3600)
        age = fmt.age(page.timeline.now - assessment.current.time).removesuffix(" ago")
        return f"The latest IL-6/IFN-γ-axis sample is {age} old (limit {limit} h)."
    return fmt.text(assessment.reasons[0]) if assessment.reasons else ""


def _persistence_state(assessment: Assessment) -> PersistenceState | None:
    """The persistence state, when the scorer gave one."""
    return assessment.persistence.state if assessment.persistence else None


def _notes_section(page: _Page) -> list[str]:
    """Notes from the hook about this request (unknown age, incomplete data)."""
    return [f"**Note:** {fmt.text(note)}" for note in page.chart.notes]


def _consider_section(page: _Page) -> list[str]:
    """What to consider, linked to the site's pathway when configured."""
    pathway, pathways = page.assessment.pathway, page.settings.pathways
    if pathway is Pathway.BIOMARKER_GUIDED:
        target = str(pathways.biomarker_guided_url or "")
        return [f"Consider the site's {fmt.link('biomarker-guided pathway', target)}."]
    if pathway is Pathway.STANDARD:
        target = str(pathways.standard_url or "")
        pathway_link = fmt.link("standard pathway", target)
        return [f"Consider the site's {pathway_link}; re-assess as results arrive."]
    if page.orders_offered:
        return ["Consider ordering what is missing if clinically indicated."]
    return []


def _time_section(page: _Page) -> list[str]:
    """Where the child is in time (day N since onset, and its source, or that no anchor was
    found), then the Phoenix line."""
    frame, phoenix = page.timeline.frame, page.chart.phoenix
    lines = [_day_line(page)]
    if phoenix is not None:
        lines.append(fmt.text(phoenix_line(phoenix, frame.now, page.zone)))
    return lines


def _day_line(page: _Page) -> str:
    """'Day 2 since onset (PICU admission 1 Mar 09:00 UTC).', or that no anchor was found."""
    frame = page.timeline.frame
    anchor = frame.anchor
    if anchor.source is AnchorSource.ASSESSMENT_TIME:
        window = fmt.num(frame.window.total_seconds() / 3600)
        return (
            f"No onset or admission time found: the last {window} h are read as the early window."
        )
    day = int(frame.since_anchor.total_seconds() // 86400) + 1
    when = fmt.local(anchor.time, page.zone)
    if anchor.source is AnchorSource.PHOENIX:
        return f"Day {day} since onset ({anchor_text(page.chart.phoenix)}, {when})."
    return (
        f"Day {day} since onset ({ANCHOR_LABELS.get(anchor.source, anchor.source.value)} {when})."
    )


# --- deciding values and earlier values --------------------------------------------------------


def _deciding_section(page: _Page) -> list[str]:
    """The sample that decided, each of its axis results with its threshold basis."""
    sample = page.assessment.current
    if sample is None:
        return []
    title = (
        "**Latest sample**"
        if page.assessment.kind is not DecisionKind.UNPAIRED_MARKED
        else "**Unpaired sample**"
    )
    lines = [f"{title} {page.when(sample.time)}, {PHASE_TEXT[sample.phase]}"]
    lines += [_judgement_line(page, j, sample) for axis in sample.axes for j in axis.judgements]
    if sample.judged_by == "model":
        lines.append(_model_line(page))
    return lines


def _judgement_line(page: _Page, judgement: Judgement, sample: SampleState) -> str:
    """'- IL-6 `900 pg/mL` `LOINC 26881-3`: markedly raised (≥ 500 = 100 × ULN 5, …)'."""
    result = judgement.measurement
    head = f"- {label(page.panel, result.analyte)} {fmt.code(fmt.quantity(result))}"
    head += f"{fmt.unit_notes(result)} {fmt.code(fmt.short_code(result))}"
    if result.time != sample.time:
        head += f" {page.when(result.time)}"
    return f"{head}: {_verdict(judgement)}"


def _verdict(judgement: Judgement) -> str:
    """Markedly raised or not, against which threshold and upper limit."""
    threshold, upper = judgement.threshold, judgement.upper_limit
    uln = _uln(upper) if upper else "no upper limit"
    if threshold is None:
        return f"not comparable ({uln})"
    basis = _basis(threshold, upper)
    if judgement.marked:
        return f"markedly raised ({basis})"
    if judgement.marked is None:
        return f"cannot be compared with {basis}"
    where = "above" if judgement.above_normal else "within"
    return f"{where} {uln}, not markedly raised ({basis})"


def _uln(upper) -> str:
    """'ULN 5', 'lab ULN 7' or 'site ULN 7'."""
    prefix = {LimitSource.LABORATORY: "lab ULN", LimitSource.SITE: "site ULN"}.get(
        upper.source, "ULN"
    )
    return f"{prefix} {fmt.num(upper.value)}"


def _basis(threshold, upper) -> str:
    """'> 100 pg/mL, Xu 2012 (link)' or '≥ 500 = 100 × ULN 5, service default'."""
    cut = f"{threshold.operator} {fmt.num(threshold.value)}"
    if threshold.basis is MarkedBasis.CITED:
        return f"{cut} {threshold.unit}, {fmt.link(threshold.short, threshold.citation_url)}"
    limit = _uln(upper) if upper else "ULN"
    name = "site multiple" if threshold.basis is MarkedBasis.SITE_MULTIPLE else "service default"
    return f"{cut} = {fmt.num(threshold.multiple or 0)} × {limit}, {name}"


def _model_line(page: _Page) -> str:
    """The model's probability for the onset window."""
    assessment = page.assessment
    probability = assessment.probability
    shown = f"{probability:.2f}" if probability is not None else "n/a"
    return f"- Model (onset window): probability {shown} of the high-risk class"


def _earlier_section(page: _Page) -> list[str]:
    """Persistent: since when; resolving: the earlier raised values; new: the last not-high one."""
    persistence = page.assessment.persistence
    if persistence is None or page.assessment.current is None:
        return []
    state = persistence.state
    if state is PersistenceState.PERSISTENT:
        first = persistence.earlier_high[0]
        values = _sample_values(page, first)
        return [f"**High since** {page.when(first.time)}, {PHASE_TEXT[first.phase]}: {values}"]
    if state is PersistenceState.RESOLVING:
        last = persistence.earlier_high[-1]
        return [f"**Earlier high** {page.when(last.time)}: {_sample_values(page, last)}"]
    if state is PersistenceState.NEW:
        before = [
            s
            for s in persistence.samples
            if s.level.assessable and s.time < page.assessment.current.time
        ]
        return [f"Not high at the sample of {page.when(before[-1].time)}."] if before else []
    if state is PersistenceState.NEVER_HIGH:
        count = sum(s.level.assessable for s in persistence.samples)
        return [f"Not high at any of {count} samples."]
    return []


def _sample_values(page: _Page, sample: SampleState) -> str:
    """An earlier sample's axis values (marked ones flagged) and the ferritin and CRP beside it."""
    values = [
        f"{label(page.panel, j.measurement.analyte)} {fmt.code(fmt.quantity(j.measurement))}"
        for axis in sample.axes
        for j in axis.judgements
    ]
    for analyte in () if page.compact else page.assessment.required:
        beside = _beside(page.timeline, analyte, sample.time)
        if beside is not None and analyte not in page.assessment.axis_analytes:
            values.append(f"{label(page.panel, beside.analyte)} {fmt.code(fmt.quantity(beside))}")
    return ", ".join(values)


def _beside(timeline: Timeline, analyte: str, moment: datetime) -> Measurement | None:
    """The analyte's latest result at or before `moment` and at most a day older."""
    series = timeline.series.get(analyte)
    earlier = [m for m in (series.values if series else ()) if moment - DAY <= m.time <= moment]
    return earlier[-1] if earlier else None


# --- other inputs, findings, model --------------------------------------------------------------


def _inputs_section(page: _Page) -> list[str]:
    """The current non-axis inputs the decision reads (ferritin, CRP) with time and code."""
    assessment = page.assessment
    shown = assessment.axis_analytes if assessment.current else ()
    wanted = [a for a in assessment.required if a not in shown and a in assessment.current_values]
    sample_time = assessment.current.time if assessment.current else None
    return [_value_line(page, assessment.current_values[a], sample_time) for a in wanted]


def _value_line(page: _Page, result: Measurement, sample_time: datetime | None = None) -> str:
    """'- Ferritin `300 ng/mL` `LOINC 2276-4` 30 Nov 10:00 UTC (2 h ago)', or '… same draw'."""
    value = f"{fmt.code(fmt.quantity(result))}{fmt.unit_notes(result)}"
    when = "same draw" if result.time == sample_time else page.when(result.time)
    return (
        f"- {label(page.panel, result.analyte)} {value} {fmt.code(fmt.short_code(result))} {when}"
    )


def _findings_section(page: _Page) -> list[str]:
    """The findings that are met, beside (never part of) the IL-6/IFN-γ label."""
    met = [f for f in page.assessment.findings if f.met and f.citation]
    if not met:
        return []
    if page.compact:
        names = ", ".join(fmt.text(f.label or f.description) for f in met)
        return [f"**Findings** (not the IL-6/IFN-γ label; sources on the model card): {names}."]
    by_source: dict[str, list[str]] = {}
    for finding in met:
        name = finding.label or finding.description
        shown = f"{name} {finding.values}" if finding.values else name
        by_source.setdefault(finding.short, []).append(fmt.text(shown))
    items = [f"{', '.join(names)} ({fmt.text(short)})" for short, names in by_source.items()]
    return ["**Findings** (not the IL-6/IFN-γ label): " + "; ".join(items) + "."]


def _model_section(page: _Page) -> list[str]:
    """How the model's output was used."""
    note = page.assessment.model_note
    return [fmt.text(note)] if note else []


# --- gaps and identity ------------------------------------------------------------------------


def _gaps_section(page: _Page) -> list[str]:
    """Pending orders, missing inputs, preliminary, excluded and too-old results."""
    assessment, timeline, pending = page.assessment, page.timeline, page.chart.pending
    names = lambda analytes: ", ".join(label(page.panel, a) for a in analytes)  # noqa: E731
    lines = []
    ordered = [a for a in assessment.missing if a in pending]
    stale = [a for a in assessment.missing if a not in pending and _has_since_anchor(timeline, a)]
    missing = [a for a in assessment.missing if a not in pending and a not in stale]
    if missing:
        lines.append(f"Missing: {names(missing)}.")
    if stale:
        limit = fmt.num(timeline.frame.current_max_age.total_seconds() / 3600)
        lines.append(f"Not current (older than {limit} h): {names(stale)}.")
    if ordered:
        lines.append(f"Ordered, pending: {names(ordered)}.")
    if timeline.preliminary:
        shown = ", ".join(
            f"{label(page.panel, m.analyte)} {fmt.code(fmt.quantity(m))}"
            for m in timeline.preliminary[:3]
        )
        lines.append(f"Preliminary (not used): {shown}.")
    lines.extend(_excluded_lines(page))
    older = [a for a in timeline.older if a in assessment.required]
    if older:
        lines.append(f"Older than the look-back (not used): {names(older)}.")
    return lines


def _has_since_anchor(timeline: Timeline, analyte: str) -> bool:
    """True when the analyte has a counted result at or after the anchor."""
    series = timeline.series.get(analyte)
    return bool(series and series.since_anchor)


def _excluded_lines(page: _Page) -> list[str]:
    """'Excluded: impossible value, not used: IL-6, Ferritin; entered in error: CRP.'

    Results are named by analyte and grouped by reason; their free text (which may carry what
    the EHR sent) stays off the card.
    """
    by_reason: dict[str, list[str]] = {}
    for exclusion in page.timeline.exclusions:
        reason = EXCLUSION_TEXT.get(exclusion.reason, exclusion.reason.value)
        name = label(page.panel, exclusion.analyte) if exclusion.analyte else "other"
        by_reason.setdefault(reason, []).append(name)
    if not by_reason:
        return []
    groups = "; ".join(f"{reason}: {_counted(names)}" for reason, names in by_reason.items())
    return [f"Excluded: {groups}."]


def _counted(names: list[str]) -> str:
    """Names in first-seen order, a repeated one once with its count ("CRP ×2")."""
    counts = dict.fromkeys(names, 0)
    for name in names:
        counts[name] += 1
    return ", ".join(name if count == 1 else f"{name} ×{count}" for name, count in counts.items())


def _identity_section(page: _Page) -> list[str]:
    """Scorer id, version and short hash, and the one link to the model-card page."""
    info = page.assessment.scorer
    kind = "Model" if info.kind == "model" else ("Rules v2" if page.assessment.kind else "Rules v1")
    text = f"{kind} {fmt.code(info.id)} {fmt.code(info.version)}"
    if info.content_hash:
        text += f" sha256 {fmt.code(info.content_hash[:12])}"
    return [f"{text} · {fmt.link(MODEL_CARD_LINK, page.settings.model_card_url)}"]


# --- rules v1 -------------------------------------------------------------------------------


def _v1_headline_section(page: _Page) -> list[str]:
    """The v1 pathway in words, and its reasons."""
    assessment = page.assessment
    lines = [V1_HEADLINES[assessment.pathway]]
    if assessment.pathway is Pathway.STANDARD:
        lines.append(f"Pattern: {assessment.endotype.value}.")
    return [*lines, *(f"- {fmt.text(reason)}" for reason in assessment.reasons)]


def _v1_values_section(page: _Page) -> list[str]:
    """The latest counted value of each marker v1 used."""
    used = page.assessment.used
    if not used:
        return []
    return ["**Results used** (latest)", *(_value_line(page, s.latest) for s in used.values())]


def _v1_gaps_section(page: _Page) -> list[str]:
    """Missing or stale markers, preliminary and excluded results."""
    return _gaps_section(page)


_V2_SECTIONS = (
    _synthetic_section,
    _headline_section,
    _notes_section,
    _consider_section,
    _time_section,
    _deciding_section,
    _earlier_section,
    _inputs_section,
    _findings_section,
    _model_section,
    _gaps_section,
    _identity_section,
)
# left out one by one, in this order, only when a card would not fit otherwise
_OPTIONAL_SECTIONS = (_findings_section, _model_section, _inputs_section, _earlier_section)
_V1_SECTIONS = (
    _v1_headline_section,
    _notes_section,
    _consider_section,
    _v1_values_section,
    _v1_gaps_section,
    _identity_section,
)
