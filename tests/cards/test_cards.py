"""build_card: summary, detail basis, gaps, citations, suggestions, links, extension, no empties."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from cds_service.cards import EXTENSION_KEY
from cds_service.models import HookResponse
from cds_service.settings import Settings
from fhir_mappings.measurement import Exclusion, ExclusionReason
from fhir_mappings.observations import extract
from model.assessment import Assessment, Endotype, Pathway, ScorerInfo
from model.scorer import load_model_scorer
from tests.cards.conftest import ENCOUNTER_ID, PATIENT_ID
from tests.scoring.factories import NOW, panel_values, result, timeline_of

DRUG_NAMES = (
    "anakinra",
    "kineret",
    "tocilizumab",
    "actemra",
    "sarilumab",
    "siltuximab",
    "ruxolitinib",
    "jakafi",
    "baricitinib",
    "olumiant",
    "tofacitinib",
    "emapalumab",
    "gamifant",
    "steroid",
    "dexamethasone",
    "methylprednisolone",
    "hydrocortisone",
    "prednisolone",
    "ivig",
    "immune globulin",
    "gm-csf",
    "sargramostim",
    "interferon gamma-1b",
)

SCENARIOS = {
    "biomarker-guided": lambda: (panel_values(il6=80, ferritin=2500, crp=60, cxcl9=900), ()),
    "positive-with-missing": lambda: (panel_values(ferritin=800, cxcl9=1200), ()),
    "intermediate": lambda: (panel_values(il6=20, ferritin=900, crp=10, cxcl9=300), ()),
    "quiescent-full": lambda: (
        panel_values(il6=3, ferritin=120, crp=8, cxcl9=100, ifng=2, lymphocytes=1.8, platelets=240),
        (),
    ),
    "insufficient-nothing": lambda: ((), ()),
    "insufficient-axis": lambda: (panel_values(il6=20, ferritin=900, crp=10), ()),
    "insufficient-stale": lambda: (
        (result("il6", 30, hours_ago=70), *panel_values(ferritin=100, crp=3)),
        (),
    ),
    "mixed-sources": lambda: (
        (
            result("ferritin", 600, hours_ago=30, source=(0.6, "ug/mL")),
            result("ferritin", 2100, source=(2.1, "ug/mL")),
            result("crp", 45, source=(4.5, "mg/dL")),
            result("il6", 5, comparator="<"),
            result("ifng", 9, status="preliminary"),
            result("platelets", 80, hours_ago=-2),
        ),
        (
            Exclusion(
                reason=ExclusionReason.ENTERED_IN_ERROR,
                detail="marked entered-in-error by the laboratory",
                analyte="cxcl9",
                system="http://loinc.org",
                code="98115-9",
            ),
        ),
    ),
}


@pytest.fixture(params=sorted(SCENARIOS))
def scenario(request, scorer, make_card):
    measurements, exclusions = SCENARIOS[request.param]()
    timeline = timeline_of(*measurements, exclusions=exclusions)
    assessment = scorer.assess(timeline)
    return assessment, timeline, make_card(assessment, timeline)


def model_assessment(timeline, *, synthetic: bool = True) -> Assessment:
    """An assessment shaped like the model scorer's, for the model-specific card parts."""
    return Assessment(
        pathway=Pathway.BIOMARKER_GUIDED,
        endotype=Endotype.HYPERINFLAMMATORY,
        scorer=ScorerInfo(
            id="picu-endotype-model",
            version="0.3.1",
            kind="model",
            description="Calibrated logistic regression",
            content_hash="ab12cd34ef56" + "0" * 52,
            synthetic_training_data=synthetic,
        ),
        evidence=(),
        used=dict(timeline.series),
        missing=("cxcl9",),
        required=("il6", "ferritin", "crp"),
        reasons=("Model probability at or above threshold.",),
        probability=0.8234,
        class_probabilities={
            "hyperinflammatory-il6-ifng": 0.8234,
            "intermediate": 0.12,
            "quiescent": 0.0566,
        },
        contributions=(("il6", 1.234), ("ferritin", -0.4)),
        limitations=("Not externally validated.",),
    )


def empty_paths(value: Any, path: str = "$") -> list[str]:
    """Every path in a JSON-like value that holds None, "", [] or {}."""
    if value is None or value == "" or value == [] or value == {}:
        return [path]
    if isinstance(value, dict):
        return [p for key, child in value.items() for p in empty_paths(child, f"{path}.{key}")]
    if isinstance(value, list):
        return [p for i, child in enumerate(value) for p in empty_paths(child, f"{path}[{i}]")]
    return []


def quantity(measurement) -> str:
    value = f"{measurement.value:g}"
    return f"{measurement.comparator or ''}{value} {measurement.unit}"


def iso(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- every scenario -------------------------------------------------------------------------


def test_summary_is_under_140_characters(scenario):
    _, _, card = scenario
    assert 0 < len(card["summary"]) < 140


def test_card_never_names_a_drug(scenario):
    _, _, card = scenario
    text = json.dumps(card, ensure_ascii=False).lower()
    assert [drug for drug in DRUG_NAMES if drug in text] == []


def test_card_has_no_empty_values_anywhere(scenario):
    _, _, card = scenario
    assert empty_paths(card) == []


def test_card_is_a_valid_cds_hooks_card(scenario):
    _, _, card = scenario
    response = HookResponse.model_validate({"cards": [card]})
    assert response.to_json()["cards"][0]["summary"] == card["summary"]


def test_every_used_marker_shows_value_unit_time_and_code(scenario):
    assessment, _, card = scenario
    for series in assessment.used.values():
        latest = series.latest
        assert f"`{quantity(latest)}`" in card["detail"]
        assert iso(latest.time) in card["detail"]
        assert f"`{latest.system}|{latest.code}`" in card["detail"]


def test_every_missing_marker_is_named_in_detail(scenario, panel):
    assessment, _, card = scenario
    missing_section = card["detail"].split("**Missing or stale**")[-1]
    for analyte in assessment.missing:
        assert f"- {panel.analytes[analyte].display}:" in missing_section


def test_every_threshold_shows_its_citation_link(scenario):
    assessment, _, card = scenario
    for evidence in assessment.evidence:
        assert f"]({evidence.citation_url})" in card["detail"], evidence.id


def test_rule_set_identity_and_hash_are_in_detail(scenario, scorer):
    _, _, card = scenario
    info = scorer.info
    assert f"`{info.id}` `{info.version}`" in card["detail"]
    assert info.content_hash[:12] in card["detail"]


def test_detail_states_judgement_population_and_limitations(scenario):
    assessment, _, card = scenario
    detail = card["detail"]
    assert "Informs; does not replace clinical judgement." in detail
    assert "PICU patients < 18 y with organ dysfunction or sepsis" in detail
    for limitation in assessment.limitations:
        assert limitation in detail


def test_detail_has_no_wide_tables(scenario):
    _, _, card = scenario
    assert not [line for line in card["detail"].splitlines() if line.lstrip().startswith("|")]


def test_extension_matches_the_assessment(scenario):
    assessment, _, card = scenario
    data = card["extension"][EXTENSION_KEY]
    assert data["pathway"] == assessment.pathway.value
    assert data["endotype"] == assessment.endotype.value
    assert (data["scorer"]["id"], data["scorer"]["version"]) == (
        assessment.scorer.id,
        assessment.scorer.version,
    )
    assert data.get("missing", []) == list(assessment.missing)
    assert set(data.get("markers", {})) == set(assessment.used)
    for analyte, entry in data.get("markers", {}).items():
        latest = assessment.used[analyte].latest
        assert entry["value"] == latest.value
        assert entry["unit"] == latest.unit
        assert entry["time"] == iso(latest.time)
        assert entry["code"] == f"{latest.system}|{latest.code}"
        assert entry.get("comparator") == latest.comparator


def test_override_reasons_have_code_system_and_display(scenario):
    _, _, card = scenario
    reasons = card["overrideReasons"]
    displays = [reason["display"] for reason in reasons]
    assert displays == [
        "Already under evaluation",
        "Values explained by another process (e.g. post-operative)",
        "Not clinically relevant",
        "Other",
    ]
    assert all(reason["system"].startswith("https://") and reason["code"] for reason in reasons)


def test_suggestions_order_exactly_the_missing_markers_without_pending_ones(scenario, panel):
    assessment, timeline, card = scenario
    pending = {item.analyte for item in timeline.preliminary}
    expected = [a for a in assessment.missing if a not in pending]
    if not expected:
        assert "suggestions" not in card and "selectionBehavior" not in card
        return
    (suggestion,) = card["suggestions"]
    assert card["selectionBehavior"] == "any"
    assert suggestion["label"].startswith("Consider ordering: ")
    uuid.UUID(suggestion["uuid"])
    codes = [action["resource"]["code"]["coding"][0]["code"] for action in suggestion["actions"]]
    assert codes == [panel.analytes[a].primary.code for a in expected]
    for action in suggestion["actions"]:
        assert action["type"] == "create"
        resource = action["resource"]
        assert (resource["resourceType"], resource["status"], resource["intent"]) == (
            "ServiceRequest",
            "draft",
            "proposal",
        )
        assert resource["subject"]["reference"] == f"Patient/{PATIENT_ID}"
        assert resource["encounter"]["reference"] == f"Encounter/{ENCOUNTER_ID}"


# --- summary and wording by pathway ---------------------------------------------------------


def card_for(scorer, make_card, *measurements, **kwargs):
    timeline = timeline_of(*measurements)
    assessment = scorer.assess(timeline)
    return assessment, make_card(assessment, timeline, **kwargs)


def test_biomarker_guided_summary_suggests_a_possible_pattern(scorer, make_card):
    assessment, card = card_for(scorer, make_card, *panel_values(il6=80, ferritin=5000, crp=60))
    assert assessment.pathway is Pathway.BIOMARKER_GUIDED
    assert "possible IL-6/IFN-γ-high immune pattern" in card["summary"]
    assert "not a diagnosis" in card["summary"]
    assert "- Consider the site's biomarker-guided pathway." in card["detail"]


def test_insufficient_summary_names_the_missing_markers_and_never_reassures(scorer, make_card):
    assessment, card = card_for(scorer, make_card, *panel_values(ferritin=100, crp=3))
    assert assessment.pathway is Pathway.INSUFFICIENT_DATA
    assert card["summary"].startswith("Immune pattern: insufficient data: Interleukin-6")
    assert "missing" in card["summary"]
    for reassuring in ("no ", "normal", "not detected", "standard"):
        assert reassuring not in card["summary"].lower()
    assert "This is not a normal result." in card["detail"]


def test_insufficient_summary_with_everything_missing_stays_short(scorer, make_card):
    assessment, card = card_for(scorer, make_card)
    assert len(assessment.missing) == 7
    assert len(card["summary"]) < 140
    assert card["summary"].startswith(
        "Immune pattern: insufficient data: Interleukin-6, Ferritin, C-reactive protein +4 more"
    )


def test_standard_summary_says_no_pattern_detected(scorer, make_card):
    assessment, card = card_for(scorer, make_card, *panel_values(il6=3, ferritin=120, crp=8))
    assert assessment.pathway is Pathway.STANDARD
    assert card["summary"].startswith("No IL-6/IFN-γ-high immune pattern detected")
    assert "Pattern: quiescent (no inflammation entry criterion met)." in card["detail"]


def test_intermediate_summary_says_inflammation_without_the_pattern(scorer, make_card):
    values = panel_values(il6=20, ferritin=900, crp=10, cxcl9=300)
    assessment, card = card_for(scorer, make_card, *values)
    assert assessment.endotype is Endotype.INTERMEDIATE
    assert card["summary"].startswith("Inflammatory markers raised; no IL-6/IFN-γ-high")
    assert "Pattern: intermediate (inflammation without an IFN-γ-axis signal)." in card["detail"]


def test_reasons_are_shown(scorer, make_card):
    assessment, card = card_for(scorer, make_card, *panel_values(il6=20, ferritin=900, crp=10))
    assert "**Why**" in card["detail"]
    assert "IFN-γ axis (CXCL9, IFN-γ) is not available" in card["detail"]


# --- gaps, preliminary, exclusions, conversions ---------------------------------------------


def test_stale_marker_shows_its_age_value_and_time(scorer, make_card):
    stale = result("il6", 30, hours_ago=70)
    _, card = card_for(scorer, make_card, stale, *panel_values(ferritin=100, crp=3))
    line = next(x for x in card["detail"].splitlines() if x.startswith("- Interleukin-6:"))
    assert "stale" in line and "2 d 22 h old" in line
    assert "`30 pg/mL`" in line and iso(stale.time) in line


def test_preliminary_result_is_shown_as_preliminary_and_not_ordered(scorer, make_card):
    preliminary = result("cxcl9", 1500, status="preliminary")
    assessment, card = card_for(
        scorer, make_card, preliminary, *panel_values(il6=20, ferritin=900, crp=10, ifng=1)
    )
    assert "cxcl9" not in assessment.used
    line = next(x for x in card["detail"].splitlines() if "`1500 pg/mL`" in x)
    assert "preliminary" in line and iso(preliminary.time) in line
    ordered = [
        action["resource"]["code"]["coding"][0]["code"]
        for suggestion in card.get("suggestions", [])
        for action in suggestion["actions"]
    ]
    assert "98115-9" not in ordered


def test_converted_value_notes_the_unit_it_came_from(scorer, make_card):
    converted = result("crp", 45, source=(4.5, "mg/dL"))
    _, card = card_for(scorer, make_card, converted, *panel_values(il6=3, ferritin=100))
    assert "converted from `4.5 mg/dL`" in card["detail"]
    assert "`45 mg/L`" in card["detail"]


def test_baseline_and_latest_are_shown_when_several_results(scorer, make_card):
    first = result("ferritin", 650, hours_ago=40)
    _, card = card_for(scorer, make_card, first, *panel_values(il6=3, ferritin=900, crp=3))
    assert f"baseline `650 ng/mL` ({iso(first.time)}) → latest `900 ng/mL`" in card["detail"]


def test_excluded_result_is_listed_with_its_reason(scorer, make_card, panel):
    timeline = timeline_of(
        *panel_values(il6=3, ferritin=100, crp=3), result("crp", 99, hours_ago=-1)
    )
    card = make_card(scorer.assess(timeline), timeline)
    section = card["detail"].split("**Excluded results**")[1]
    assert "- C-reactive protein: dated in the future" in section
    assert "`http://loinc.org|1988-5`" in section


def test_free_text_from_results_cannot_inject_markup(scorer, make_card):
    hostile = Exclusion(
        reason=ExclusionReason.MALFORMED,
        detail="<img src=x onerror=alert(1)> [click](javascript:alert(1)) **bold**",
        analyte="il6",
    )
    timeline = timeline_of(exclusions=(hostile,))
    card = make_card(scorer.assess(timeline), timeline)
    assert re.search(r"(?<!\\)<img", card["detail"]) is None
    assert re.search(r"(?<!\\)\[click(?<!\\)\]\(", card["detail"]) is None
    assert "\\<img" in card["detail"]
    assert "\\*\\*bold\\*\\*" in card["detail"]


# --- model-based scorer ---------------------------------------------------------------------


def test_model_card_shows_class_probability_contributions_and_synthetic_warning(panel, make_card):
    timeline = timeline_of(*panel_values(il6=80, ferritin=900, crp=50))
    card = make_card(model_assessment(timeline), timeline)
    detail = card["detail"]
    assert "- Model class: hyperinflammatory-il6-ifng" in detail
    assert "hyperinflammatory-il6-ifng 0.82, intermediate 0.12, quiescent 0.06" in detail
    assert "Probability of the high-risk class: 0.82" in detail
    assert "Interleukin-6 (+1.23), Ferritin (-0.40)" in detail
    assert "trained on SYNTHETIC data and is not for clinical use" in detail
    assert "synthetic-data model; not for clinical use" in card["summary"]
    assert len(card["summary"]) < 140
    assert empty_paths(card) == []


def test_model_trained_on_site_data_carries_no_synthetic_warning(make_card):
    timeline = timeline_of(*panel_values(il6=80, ferritin=900, crp=50))
    card = make_card(model_assessment(timeline, synthetic=False), timeline)
    assert "synthetic" not in json.dumps(card).lower()
    assert "(research model; not a diagnosis)" in card["summary"]


def test_insufficient_model_summary_still_says_synthetic(make_card):
    timeline = timeline_of()
    assessment = replace(
        model_assessment(timeline),
        pathway=Pathway.INSUFFICIENT_DATA,
        endotype=Endotype.UNDETERMINED,
        missing=("il6", "ferritin", "crp", "cxcl9", "ifng", "lymphocytes", "platelets"),
        probability=None,
        class_probabilities=None,
        contributions=(),
    )
    card = make_card(assessment, timeline)
    assert "synthetic" in card["summary"] and len(card["summary"]) < 140


# --- settings-driven parts ------------------------------------------------------------------


def test_links_include_configured_pathways_and_the_model_card(scorer, make_card):
    settings = Settings(
        public_base_url="https://cds.example.org",
        pathways={
            "standard_url": "https://intranet.example.org/picu/standard",
            "biomarker_guided_url": "https://intranet.example.org/picu/biomarker",
        },
    )
    _, card = card_for(scorer, make_card, with_settings=settings)
    assert [link["url"] for link in card["links"]] == [
        "https://intranet.example.org/picu/standard",
        "https://intranet.example.org/picu/biomarker",
        "https://cds.example.org/model-card",
    ]
    assert {link["type"] for link in card["links"]} == {"absolute"}
    assert card["source"]["url"] == "https://cds.example.org/model-card"


def test_links_without_configured_pathways_hold_only_the_model_card(scorer, make_card, settings):
    _, card = card_for(scorer, make_card)
    assert [link["url"] for link in card["links"]] == [settings.model_card_url]


def test_indicator_comes_from_settings(scorer, make_card):
    _, default_card = card_for(scorer, make_card)
    _, warning_card = card_for(scorer, make_card, with_settings=Settings(indicator="warning"))
    assert (default_card["indicator"], warning_card["indicator"]) == ("info", "warning")


def test_source_has_label_and_stable_topic(scorer, make_card):
    _, card = card_for(scorer, make_card)
    assert card["source"]["label"]
    topic = card["source"]["topic"]
    assert (topic["system"], topic["code"]) == (
        "https://picu-endotype.org/CodeSystem/topic",
        "immune-endotype",
    )


def test_each_card_and_suggestion_has_a_fresh_uuid(scorer, make_card):
    _, first = card_for(scorer, make_card)
    _, second = card_for(scorer, make_card)
    ids = {first["uuid"], second["uuid"], first["suggestions"][0]["uuid"]}
    assert len(ids) == 3
    assert all(uuid.UUID(value).version == 4 for value in ids)


def test_without_encounter_the_service_request_has_no_encounter(scorer, make_card):
    _, card = card_for(scorer, make_card, encounter_id=None)
    resource = card["suggestions"][0]["actions"][0]["resource"]
    assert "encounter" not in resource
    assert re.fullmatch(r"Patient/pat-1", resource["subject"]["reference"])


def test_positive_card_with_required_markers_missing_lists_and_offers_them(scorer, make_card):
    assessment, card = card_for(scorer, make_card, *panel_values(ferritin=800, cxcl9=1200))
    assert assessment.pathway is Pathway.BIOMARKER_GUIDED
    assert "possible IL-6/IFN-γ-high immune pattern" in card["summary"]
    assert "- Still missing: IL-6, CRP, IFN-γ, lymphocytes, platelets." in card["detail"]
    missing_section = card["detail"].split("**Missing or stale**")[1]
    assert "- Interleukin-6: no counted result in the last 48 h" in missing_section
    assert card["suggestions"][0]["label"].startswith(
        "Consider ordering: Interleukin-6, C-reactive protein"
    )


def test_card_from_the_packaged_model_says_synthetic_and_validates(make_card):
    model_scorer = load_model_scorer()
    timeline = timeline_of(*panel_values(il6=80, ferritin=2500, crp=60, cxcl9=900))
    assessment = model_scorer.assess(timeline)
    card = make_card(assessment, timeline)
    assert assessment.scorer.synthetic_training_data
    assert "synthetic" in card["summary"].lower()
    assert "trained on SYNTHETIC data" in card["detail"]
    assert f"Probability of the high-risk class: {assessment.probability:.2f}" in card["detail"]
    assert empty_paths(card) == []
    HookResponse.model_validate({"cards": [card]})


@pytest.mark.parametrize("endotype", list(Endotype))
def test_insufficient_pathway_summary_never_reassures_whatever_the_endotype(
    scorer, make_card, endotype
):
    timeline = timeline_of(*panel_values(ferritin=100, crp=3))
    assessment = replace(scorer.assess(timeline), endotype=endotype)
    card = make_card(assessment, timeline)
    assert card["summary"].startswith("Immune pattern: insufficient data: Interleukin-6")
    assert "Pattern:" not in card["detail"]


def test_each_rule_shows_outcome_then_citation_and_note(scorer, make_card):
    _, card = card_for(scorer, make_card, *panel_values(il6=80, ferritin=5000, crp=12))
    lines = card["detail"].splitlines()
    start = lines.index("- met: Ferritin > 4420 ng/mL (macrophage activation-like syndrome, MALS)")
    assert lines[start + 1].startswith("  - [Kyriazopoulou et al., BMC Med 2017")
    assert lines[start + 1].endswith("](https://doi.org/10.1186/s12916-017-0930-5)")
    assert lines[start + 2] == "  - adult threshold"
    assert "- not met: CRP ≥ 40 mg/L (4 mg/dL)" in lines
    assert "- not evaluable: CXCL9 > 647 pg/mL" in card["detail"]


def test_many_excluded_results_are_listed_up_to_a_limit_and_counted(scorer, make_card):
    errors = tuple(
        Exclusion(reason=ExclusionReason.ENTERED_IN_ERROR, detail=f"row {n}", analyte="crp")
        for n in range(20)
    )
    timeline = timeline_of(exclusions=errors)
    card = make_card(scorer.assess(timeline), timeline)
    section = card["detail"].split("**Excluded results**")[1].split("\n\n")[0]
    listed = [line for line in section.splitlines() if line.startswith("- C-reactive protein")]
    assert len(listed) == 12
    assert "- and 8 more excluded results" in section


# --- units assumed from the code -----------------------------------------------------------

ASSUMED_PG_ML = "(unit not sent; assumed `pg/mL` from the code)"


def assumed(measurement):
    """The same result, marked as sent without a unit (its source unit implied by the code)."""
    unit = measurement.source_unit or measurement.unit
    value = measurement.source_value if measurement.source_value is not None else measurement.value
    return replace(measurement, source_value=value, source_unit=unit, unit_assumed=True)


def test_assumed_unit_is_noted_next_to_the_latest_value(scorer, make_card):
    il6 = assumed(result("il6", 42))
    _, card = card_for(scorer, make_card, il6, *panel_values(ferritin=900, crp=10))
    lines = card["detail"].splitlines()
    assert f"- **Interleukin-6**: `42 pg/mL` {ASSUMED_PG_ML}" in lines
    assert [line for line in lines if "unit not sent" in line] == [
        f"- **Interleukin-6**: `42 pg/mL` {ASSUMED_PG_ML}"
    ]


def test_results_sent_with_a_unit_carry_no_assumed_note_or_flag(scenario):
    _, _, card = scenario
    assert "unit not sent" not in card["detail"]
    markers = card["extension"][EXTENSION_KEY].get("markers", {})
    assert all("unitAssumed" not in entry for entry in markers.values())


def test_assumed_unit_that_was_converted_shows_both_notes(scorer, make_card):
    crp = assumed(result("crp", 45, source=(4.5, "mg/dL")))
    _, card = card_for(scorer, make_card, crp, *panel_values(il6=3, ferritin=100))
    assert "`45 mg/L` (unit not sent; assumed `mg/dL` from the code)" in card["detail"]
    assert "converted from `4.5 mg/dL`" in card["detail"]


def test_assumed_unit_of_the_baseline_is_noted_on_the_trend_line(scorer, make_card):
    first = assumed(result("ferritin", 650, hours_ago=40))
    _, card = card_for(scorer, make_card, first, *panel_values(il6=3, ferritin=900, crp=3))
    trend = next(x for x in card["detail"].splitlines() if "baseline `650 ng/mL`" in x)
    assert "baseline `650 ng/mL` (unit not sent; assumed `ng/mL` from the code)" in trend
    assert "**Ferritin**: `900 ng/mL`" in card["detail"]
    assert "`900 ng/mL` (unit not sent" not in card["detail"]


def test_assumed_unit_is_noted_on_preliminary_and_stale_results(scorer, make_card):
    preliminary = assumed(result("cxcl9", 1500, status="preliminary"))
    stale = assumed(result("il6", 30, hours_ago=70))
    _, card = card_for(scorer, make_card, preliminary, stale, *panel_values(ferritin=900, crp=10))
    lines = card["detail"].splitlines()
    assert any(f"`1500 pg/mL` {ASSUMED_PG_ML} preliminary" in line for line in lines)
    stale_line = next(x for x in lines if x.startswith("- Interleukin-6: stale"))
    assert f"`30 pg/mL` {ASSUMED_PG_ML}" in stale_line


def test_extension_flags_only_the_marker_whose_unit_was_assumed(scorer, make_card):
    il6 = assumed(result("il6", 42))
    _, card = card_for(scorer, make_card, il6, *panel_values(ferritin=900, crp=10))
    markers = card["extension"][EXTENSION_KEY]["markers"]
    assert markers["il6"]["unitAssumed"] is True
    assert "unitAssumed" not in markers["ferritin"]
    assert "unitAssumed" not in markers["crp"]
    HookResponse.model_validate({"cards": [card]})


def test_observation_sent_without_a_unit_reaches_the_card_as_assumed(panel, scorer, make_card):
    il6 = {
        "resourceType": "Observation",
        "id": "il6-no-unit",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "26881-3"}]},
        "effectiveDateTime": iso(NOW - timedelta(hours=1)),
        "valueQuantity": {"value": 42},
    }
    measurements = extract([il6], panel).measurements
    _, card = card_for(scorer, make_card, *measurements, *panel_values(ferritin=900, crp=10))
    assert f"- **Interleukin-6**: `42 pg/mL` {ASSUMED_PG_ML}" in card["detail"].splitlines()
    assert card["extension"][EXTENSION_KEY]["markers"]["il6"]["unitAssumed"] is True
