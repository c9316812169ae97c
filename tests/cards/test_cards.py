"""Cards for realistic children: every pathway and persistence state, under rules v2, the model
and rules v1; the side-panel length, the basis of every deciding value, suggestions, extension."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from cds_service.card_detail import DETAIL_MAX_CHARS, ChartContext
from cds_service.cards import EXTENSION_KEY
from cds_service.models import HookResponse
from cds_service.settings import Settings
from fhir_mappings.measurement import Exclusion, ExclusionReason
from model.assessment import Pathway
from model.rule_settings import RuleSettings
from model.rules_scorer import load_rules_v2_scorer
from tests.cards.conftest import ENCOUNTER_ID, PATIENT_ID, phoenix_chart
from tests.scoring.children import CHILDREN, draw
from tests.scoring.factories import frame_at, result, timeline_of

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
REASSURING = ("no il-6/ifn-γ-high", "not detected", "normal", "standard", "quiescent")
BIOMARKER_URL = "https://intranet.example-hospital.org/picu/biomarker-pathway"


def empty_paths(value: Any, path: str = "$") -> list[str]:
    """Every path in a JSON-like value that holds None, "", [] or {}."""
    if value is None or value == "" or value == [] or value == {}:
        return [path]
    if isinstance(value, dict):
        return [p for key, child in value.items() for p in empty_paths(child, f"{path}.{key}")]
    if isinstance(value, list):
        return [p for i, child in enumerate(value) for p in empty_paths(child, f"{path}[{i}]")]
    return []


@pytest.fixture(params=sorted(CHILDREN))
def child_card(request, scorers, make_card):
    """Each child's assessment and card under each scorer."""
    frame, results = CHILDREN[request.param]()
    timeline = timeline_of(*results, frame=frame)
    cards = {}
    for name, scorer in scorers.items():
        assessment = scorer.assess(timeline)
        cards[name] = (assessment, make_card(assessment, timeline))
    return request.param, timeline, cards


@pytest.fixture(params=sorted(CHILDREN))
def phoenix_child_card(request, scorers, make_card):
    """Each child anchored at a Phoenix onset, with a long Phoenix line, under each scorer."""
    frame, results = CHILDREN[request.param]()
    frame, chart = phoenix_chart(frame)
    timeline = timeline_of(*results, frame=frame)
    return {
        name: make_card(assessment := scorer.assess(timeline), timeline, chart=chart)
        | {"assessment": assessment}
        for name, scorer in scorers.items()
    }


def card_of(scorer, make_card, child: str, **kwargs):
    frame, results = CHILDREN[child]()
    timeline = timeline_of(*results, frame=frame)
    assessment = scorer.assess(timeline)
    return assessment, make_card(assessment, timeline, **kwargs)


def lines_of(card) -> list[str]:
    return card["detail"].splitlines()


# --- every child, every scorer --------------------------------------------------------------


def test_summary_is_under_140_characters_and_detail_fits_the_side_panel(child_card):
    _, _, cards = child_card
    for name, (_, card) in cards.items():
        assert 0 < len(card["summary"]) < 140, name
        assert len(card["detail"]) <= DETAIL_MAX_CHARS, (name, len(card["detail"]))


def test_with_a_phoenix_anchor_and_line_the_detail_still_fits_the_side_panel(phoenix_child_card):
    lines = re.compile(
        r"^Day \d since onset \(organ dysfunction, Phoenix score ≥ 2, .*\)\.\n"
        r"Phoenix 3 at 12:00 UTC: cardiovascular 2, coagulation 1; onset .* ago\. "
        r"Not charted \(0 points\): PaO2:FiO2 or SpO2:FiO2, lactate, mean arterial pressure, ",
        re.MULTILINE,
    )
    for name, card in phoenix_child_card.items():
        assert len(card["detail"]) <= DETAIL_MAX_CHARS, (name, len(card["detail"]))
        anchored = card["extension"][EXTENSION_KEY]["context"]["anchor"]["source"] == "phoenix"
        if anchored and card["assessment"].kind is not None:  # rules v1 has no time section
            assert lines.search(card["detail"]), (name, card["detail"])


def test_card_never_names_a_drug_and_has_no_empty_values(child_card):
    _, _, cards = child_card
    for _, card in cards.values():
        text = json.dumps(card, ensure_ascii=False).lower()
        assert [drug for drug in DRUG_NAMES if drug in text] == []
        assert empty_paths(card) == []
        HookResponse.model_validate({"cards": [card]})


def test_insufficient_data_is_never_worded_as_reassurance(child_card):
    _, _, cards = child_card
    for _, (assessment, card) in cards.items():
        if assessment.pathway is not Pathway.INSUFFICIENT_DATA:
            continue
        assert not [word for word in REASSURING if word in card["summary"].lower()]
        assert "not a normal result" in card["detail"]


def test_every_deciding_value_shows_value_unit_code_time_and_threshold_basis(child_card):
    _, timeline, cards = child_card
    for name, (assessment, card) in cards.items():
        if assessment.current is None:
            continue
        detail = card["detail"]
        assert f"**{'Unpaired' if 'Unpaired' in detail else 'Latest'} sample** " in detail
        for axis in assessment.current.axes:
            for judgement in axis.judgements:
                result_ = judgement.measurement
                line = next(x for x in lines_of(card) if f"`LOINC {result_.code}`" in x)
                assert f"{result_.unit}`" in line, (name, line)
                basis = judgement.threshold
                if basis.basis.value == "cited":
                    assert f"]({basis.citation_url})" in line, line
                else:
                    assert "service default" in line or "site multiple" in line, line


def test_scorer_identity_and_the_one_model_card_link_close_the_detail(child_card, settings):
    _, _, cards = child_card
    for _, (assessment, card) in cards.items():
        last = lines_of(card)[-1]
        info = assessment.scorer
        assert f"`{info.id}` `{info.version}` sha256 `{info.content_hash[:12]}`" in last
        assert last.endswith(
            f"[Rules, thresholds, sources, limitations]({settings.model_card_url})"
        )


def test_the_synthetic_model_says_so_first_and_in_the_summary(child_card):
    _, _, cards = child_card
    _, card = cards["model"]
    assert lines_of(card)[0] == "**SYNTHETIC-data model: not for clinical use.**"
    assert "(synthetic-data model; not for clinical use)" in card["summary"] or (
        "insufficient data" in card["summary"]
    )


def test_the_extension_carries_decision_context_persistence_and_findings(child_card):
    _, timeline, cards = child_card
    assessment, card = cards["rules-v2"]
    data = card["extension"][EXTENSION_KEY]
    assert (data["pathway"], data["endotype"]) == (
        assessment.pathway.value,
        assessment.endotype.value,
    )
    assert data["decision"] == assessment.kind.value
    assert data["context"]["anchor"]["source"] == "picu-admission"
    hours = timeline.frame.since_anchor.total_seconds() / 3600
    assert data["context"]["hours_since_anchor"] == pytest.approx(hours, abs=0.05)
    assert data["persistence"]["state"] == assessment.persistence.state.value
    assert len(data["persistence"].get("samples", [])) == len(assessment.persistence.samples)
    assert {f["id"] for f in data["findings"]} == {f.id for f in assessment.findings}


# --- one card per pathway and persistence state -----------------------------------------------


def test_persistent_child_card_leads_with_the_studys_high_mortality_picture(rules, make_card):
    settings = Settings(pathways={"biomarker_guided_url": BIOMARKER_URL})
    _, card = card_of(rules, make_card, "persistent", with_settings=settings)
    lines = lines_of(card)
    assert lines[0].startswith("**Persistent IL-6/IFN-γ-high pattern**")
    assert "the study's high-mortality picture" in lines[0]
    assert card["summary"].startswith("Persistent IL-6/IFN-γ-high pattern: IL-6, IFN-γ and CXCL9")
    assert f"Consider the site's [biomarker-guided pathway]({BIOMARKER_URL})." in lines
    since = next(x for x in lines if x.startswith("**High since**"))
    assert "early window: IL-6 `820 pg/mL`, IFN-γ `140 pg/mL`, CXCL9 `18,200 pg/mL`" in since
    assert "Day 2 since onset (PICU admission 23 Nov 16:00 UTC)." in lines


def test_without_a_configured_pathway_the_card_names_it_without_a_link(rules, make_card):
    _, card = card_of(rules, make_card, "persistent")
    assert "Consider the site's biomarker-guided pathway." in lines_of(card)


def test_single_sample_and_new_high_children(rules, make_card):
    _, single = card_of(rules, make_card, "study-phenotype")
    assert lines_of(single)[0].startswith("**IL-6/IFN-γ-high pattern** (one sample so far)")
    _, new = card_of(rules, make_card, "new-high")
    assert lines_of(new)[0].startswith("**New IL-6/IFN-γ-high pattern**")
    assert "Not high at the sample of 24 Nov 06:00 UTC (1 d 6 h ago)." in lines_of(new)


def test_resolving_child_card_says_resolving_and_shows_the_earlier_values(rules, make_card):
    assessment, card = card_of(rules, make_card, "resolving")
    assert assessment.pathway is Pathway.STANDARD
    lines = lines_of(card)
    assert lines[0].startswith("**Resolving**")
    assert card["summary"].startswith("Resolving: IL-6/IFN-γ-high earlier")
    earlier = next(x for x in lines if x.startswith("**Earlier high**"))
    assert earlier.startswith("**Earlier high** 22 Nov 12:00 UTC (3 d 0 h ago): IL-6 `640 pg/mL`")
    assert "Ferritin `5,200 ng/mL`" in earlier and "CRP `210 mg/L`" in earlier


def test_quiescent_child_over_two_days_is_never_high(rules, make_card):
    assessment, card = card_of(rules, make_card, "quiescent")
    assert assessment.pathway is Pathway.STANDARD
    assert "Not high at any of 2 samples." in lines_of(card)
    assert card["summary"].startswith("No IL-6/IFN-γ-high pattern: IL-6 and IFN-γ axis not")


def test_intermediate_child_names_the_inflammation_findings(rules, make_card):
    _, card = card_of(rules, make_card, "intermediate")
    assert "inflammation finding: ferritin > 500, CRP ≥ 40" in card["summary"]
    findings = next(x for x in lines_of(card) if x.startswith("**Findings**"))
    assert "ferritin > 500 (Fan 2023)" in findings
    assert "CRP/ferritin high-risk cell (Carcillo 2017)" in findings


def test_discordant_child_is_headed_discordant_never_standard(rules, make_card):
    assessment, card = card_of(rules, make_card, "discordant")
    assert assessment.pathway is Pathway.INSUFFICIENT_DATA
    assert lines_of(card)[0].startswith("**Discordant: IL-6 markedly raised, IFN-γ axis not.**")
    assert card["summary"].startswith("Discordant: IL-6 markedly raised, IFN-γ axis not")


def test_ferritin_only_child_shows_its_finding_never_the_il6_ifng_label(rules, make_card):
    _, card = card_of(rules, make_card, "ferritin-only")
    assert card["summary"] == (
        "Immune pattern: insufficient data: IL-6, IFN-γ, CXCL9 +1 more missing; "
        "finding: ferritin > 4,420 (MALS, adult)"
    )
    assert "IL-6/IFN-γ-high" not in card["summary"]
    assert "Missing: IL-6, IFN-γ, CXCL9, CRP." in lines_of(card)


def test_stale_child_says_how_old_the_sample_is_and_shows_it(rules, make_card):
    _, card = card_of(rules, make_card, "stale")
    lines = lines_of(card)
    assert "The latest IL-6/IFN-γ-axis sample is 4 d 4 h old (limit 72 h)." in lines
    assert any(x.startswith("- IL-6 `1,500 pg/mL`") for x in lines)
    assert "Not current (older than 72 h): IL-6, CXCL9." in lines


def test_pre_anchor_and_unpaired_children_are_insufficient_and_say_why(rules, make_card):
    _, before = card_of(rules, make_card, "pre-anchor")
    assert any("only from before the anchor" in x for x in lines_of(before))
    _, unpaired = card_of(rules, make_card, "unpaired")
    assert "**Unpaired sample**" in unpaired["detail"]
    assert "IL-6 markedly raised with no IFN-γ or CXCL9 within 24 h" in unpaired["detail"]


def test_missing_panel_child_is_offered_the_missing_markers_in_the_first_48_hours(
    rules, make_card, panel
):
    assessment, card = card_of(rules, make_card, "missing-panel")
    (suggestion,) = card["suggestions"]
    assert card["selectionBehavior"] == "any"
    codes = [action["resource"]["code"]["coding"][0]["code"] for action in suggestion["actions"]]
    assert codes == [panel.analytes[a].primary.code for a in assessment.missing]
    for action in suggestion["actions"]:
        resource = action["resource"]
        assert (resource["resourceType"], resource["status"], resource["intent"]) == (
            "ServiceRequest",
            "draft",
            "proposal",
        )
        assert resource["subject"]["reference"] == f"Patient/{PATIENT_ID}"
        assert resource["encounter"]["reference"] == f"Encounter/{ENCOUNTER_ID}"
    assert "Consider ordering what is missing if clinically indicated." in lines_of(card)


def test_no_order_suggestion_after_the_first_48_hours(rules, make_card):
    timeline = timeline_of(*draw(2, crp=42), frame=frame_at(60))
    card = make_card(rules.assess(timeline), timeline)
    assert "suggestions" not in card and "Consider ordering" not in card["detail"]


def test_an_ordered_marker_is_pending_not_missing_and_not_offered(rules, make_card):
    chart = ChartContext(pending=frozenset({"cxcl9"}))
    _, card = card_of(rules, make_card, "missing-panel", chart=chart)
    assert "Ordered, pending: CXCL9." in lines_of(card)
    assert card["summary"] == (
        "Immune pattern: insufficient data: IL-6, IFN-γ, Ferritin missing; CXCL9 ordered"
    )
    assert "CXCL9" not in next(x for x in lines_of(card) if x.startswith("Missing:"))
    assert "CXCL9" not in card["suggestions"][0]["label"]


# --- thresholds, limits, times ----------------------------------------------------------------


def test_a_laboratory_limit_and_a_site_multiple_are_named_on_the_card(make_card):
    scorer = load_rules_v2_scorer(RuleSettings(marked_uln_multiple={"il6": 20}))
    timeline = timeline_of(
        result("il6", 150, reference_high=7), *draw(2, cxcl9=20000, ferritin=300, crp=30)
    )
    card = make_card(scorer.assess(timeline), timeline)
    il6 = next(x for x in lines_of(card) if x.startswith("- IL-6"))
    assert il6.endswith("markedly raised (≥ 140 = 20 × lab ULN 7, site multiple)")
    marker = card["extension"][EXTENSION_KEY]["markers"]["il6"]
    assert marker["upperLimit"]["source"] == "laboratory"
    assert (marker["marked"]["basis"], marker["marked"]["threshold"]) == ("site-multiple", 140)


def test_times_are_shown_in_the_sites_time_zone_with_their_age(rules, make_card):
    settings = Settings(time_zone="America/New_York")
    _, card = card_of(rules, make_card, "study-phenotype", with_settings=settings)
    assert "**Latest sample** 25 Nov 03:00 EST (4 h ago), early window" in card["detail"]


def test_converted_and_assumed_units_are_noted_beside_the_value(rules, make_card):
    _, card = card_of(rules, make_card, "everything")
    il6 = next(x for x in lines_of(card) if x.startswith("- IL-6"))
    assert "`720 pg/mL` (converted from `720 ng/L`)" in il6
    assumed = replace(result("il6", 42), source_value=42, source_unit="pg/mL", unit_assumed=True)
    timeline = timeline_of(assumed, *draw(2, cxcl9=200, ifng=2, ferritin=80, crp=3))
    card = make_card(rules.assess(timeline), timeline)
    assert "`42 pg/mL` (unit not sent; assumed `pg/mL` from the code)" in card["detail"]
    assert card["extension"][EXTENSION_KEY]["markers"]["il6"]["unitAssumed"] is True


def test_excluded_results_are_named_by_reason_and_their_free_text_stays_out(rules, make_card):
    hostile = Exclusion(
        reason=ExclusionReason.MALFORMED,
        detail="<img src=x onerror=alert(1)> [click](javascript:alert(1))",
        analyte="il6",
    )
    errors = (
        hostile,
        Exclusion(reason=ExclusionReason.ENTERED_IN_ERROR, detail="voided", analyte="crp"),
    )
    timeline = timeline_of(*draw(2, il6=3, cxcl9=200, ferritin=80, crp=3), exclusions=errors)
    card = make_card(rules.assess(timeline), timeline)
    assert "Excluded: malformed: IL-6; entered in error: CRP." in lines_of(card)
    assert "<img" not in json.dumps(card) and "javascript" not in json.dumps(card)


def test_notes_from_the_hook_are_shown_escaped(rules, make_card):
    chart = ChartContext(notes=("Patient age unknown *check*",))
    _, card = card_of(rules, make_card, "quiescent", chart=chart)
    assert "**Note:** Patient age unknown \\*check\\*" in lines_of(card)


def test_preliminary_results_are_shown_and_never_scored(rules, make_card):
    assessment, card = card_of(rules, make_card, "everything")
    assert "Preliminary (not used): IL-6 `900 pg/mL`." in lines_of(card)
    assert assessment.current.time < frame_at(44).now - timedelta(hours=5)


# --- links, source, indicator, override reasons, uuids ----------------------------------------


def test_links_include_configured_pathways_and_the_model_card(rules, make_card):
    settings = Settings(
        public_base_url="https://cds.example.org",
        pathways={
            "standard_url": "https://intranet.example.org/picu/standard",
            "biomarker_guided_url": "https://intranet.example.org/picu/biomarker",
        },
    )
    _, card = card_of(rules, make_card, "quiescent", with_settings=settings)
    assert [link["url"] for link in card["links"]] == [
        "https://intranet.example.org/picu/standard",
        "https://intranet.example.org/picu/biomarker",
        "https://cds.example.org/model-card",
    ]
    assert card["source"]["url"] == "https://cds.example.org/model-card"
    assert "[standard pathway](https://intranet.example.org/picu/standard)" in card["detail"]


def test_indicator_source_and_override_reasons(rules, make_card):
    _, default_card = card_of(rules, make_card, "quiescent")
    _, warning_card = card_of(
        rules, make_card, "quiescent", with_settings=Settings(indicator="warning")
    )
    assert (default_card["indicator"], warning_card["indicator"]) == ("info", "warning")
    topic = default_card["source"]["topic"]
    assert (topic["system"], topic["code"]) == (
        "https://picu-endotype.org/CodeSystem/topic",
        "immune-endotype",
    )
    displays = [reason["display"] for reason in default_card["overrideReasons"]]
    assert displays[0] == "Already under evaluation" and displays[-1] == "Other"


def test_each_card_and_suggestion_has_a_fresh_uuid(rules, make_card):
    _, first = card_of(rules, make_card, "missing-panel")
    _, second = card_of(rules, make_card, "missing-panel")
    ids = {first["uuid"], second["uuid"], first["suggestions"][0]["uuid"]}
    assert len(ids) == 3 and all(uuid.UUID(value).version == 4 for value in ids)


def test_without_encounter_the_service_request_has_no_encounter(rules, make_card):
    _, card = card_of(rules, make_card, "missing-panel", encounter_id=None)
    resource = card["suggestions"][0]["actions"][0]["resource"]
    assert "encounter" not in resource
    assert re.fullmatch(r"Patient/pat-1", resource["subject"]["reference"])


# --- rules v1 and the model ---------------------------------------------------------------------


def test_rules_v1_cards_say_v1_and_list_the_values_they_used(scorers, make_card):
    assessment, card = card_of(scorers["rules-v1"], make_card, "study-phenotype")
    assert assessment.kind is None
    assert "by rules v1" in card["summary"] and "Rules v1 `picu-endotype-rules`" in card["detail"]
    assert "- IL-6 `1,500 pg/mL` `LOINC 26881-3` 25 Nov 08:00 UTC (4 h ago)" in lines_of(card)


def test_model_card_says_it_scores_the_onset_window_only(scorers, make_card):
    assessment, card = card_of(scorers["model"], make_card, "resolving")
    assert "The model scores the onset window only" in card["detail"]
    judged = [sample.judged_by for sample in assessment.persistence.samples]
    assert judged == ["rules", "model", "rules"]  # the latest early sample is the model's
    assert card["summary"].startswith("Resolving")
