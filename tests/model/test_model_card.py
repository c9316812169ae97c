"""Model cards: 31 HTI-1 attributes, TRIPOD+AI items, synthetic warning, and GET /model-card."""

from __future__ import annotations

import pytest

from cds_service.app import create_app
from cds_service.settings import Settings
from model.model_card import NOT_YET_MEASURED, model_card, render_html, rules_card
from model.rules import load_rule_scorer
from model.scorer import load_model_scorer


@pytest.fixture(scope="module")
def default_metadata():
    return load_model_scorer().model.metadata


def test_model_card_lists_all_31_hti1_attributes_with_values(default_metadata):
    attributes = model_card(default_metadata)["hti1_source_attributes"]
    assert [row["number"] for row in attributes] == list(range(1, 32))
    assert all(row["value"].strip() for row in attributes)
    assert len({row["category"] for row in attributes}) == 9


def test_model_card_says_external_validation_is_not_yet_measured(default_metadata):
    attributes = model_card(default_metadata)["hti1_source_attributes"]
    external = [row for row in attributes if row["category"] == "External validation process"]
    assert [row["value"] for row in external[:3]] == [NOT_YET_MEASURED] * 3


def test_default_model_card_warns_of_synthetic_training_data(default_metadata):
    card = model_card(default_metadata)
    assert "SYNTHETIC" in card["warning"] and "NOT for clinical use" in card["warning"]
    assert card["details"]["content_hash"] == default_metadata["content_hash"]


def test_site_model_card_has_no_synthetic_warning(default_metadata):
    card = model_card({**default_metadata, "synthetic_training_data": False})
    assert card["warning"] is None
    assert "SYNTHETIC" not in render_html(card)


def test_model_card_reports_internal_validation_numbers(default_metadata):
    attributes = model_card(default_metadata)["hti1_source_attributes"]
    validity = attributes[20]["value"]
    internal = default_metadata["internal_validation"]
    assert str(internal["auroc_high_risk_class"]) in validity
    assert f"n={internal['n']}" in validity


def test_tripod_items_include_eligibility_and_missing_data(default_metadata):
    topics = {row["topic"] for row in model_card(default_metadata)["tripod_ai"]}
    assert {"Eligibility", "Handling of missing data", "Threshold", "Sample size"} <= topics


def test_rules_card_lists_each_rule_with_its_citation():
    scorer = load_rule_scorer()
    card = rules_card(scorer)
    assert card["details"]["content_hash"] == scorer.info.content_hash
    ids = {rule["id"] for rule in card["rules"]}
    assert {rule.id for rule in scorer.rule_set.rules} <= ids
    assert all(rule["citation"] for rule in card["rules"] if rule["id"] in ids)


def test_html_escapes_metadata_text(default_metadata):
    html = render_html(model_card({**default_metadata, "description": "<script>x</script>"}))
    page = render_html(model_card({**default_metadata, "model_id": "<b>m</b>"}))
    assert "<script>x</script>" not in html
    assert "&lt;b&gt;m&lt;/b&gt;" in page


@pytest.fixture
def model_client(tmp_path):
    return create_app(Settings(scorer="model", state_dir=tmp_path)).test_client()


def test_endpoint_serves_json_for_format_parameter(model_client, default_metadata):
    response = model_client.get("/model-card?format=json")
    assert response.status_code == 200
    assert response.is_json
    body = response.get_json()
    assert body["details"]["model_id"] == default_metadata["model_id"]
    assert len(body["hti1_source_attributes"]) == 31


def test_endpoint_serves_json_when_accept_prefers_it(model_client):
    response = model_client.get("/model-card", headers={"Accept": "application/json"})
    assert response.is_json


def test_endpoint_serves_html_to_a_browser(model_client):
    response = model_client.get("/model-card", headers={"Accept": "text/html,*/*;q=0.8"})
    assert response.mimetype == "text/html"
    assert "NOT for clinical use" in response.get_data(as_text=True)


def test_endpoint_describes_the_rule_set_when_rules_decide(tmp_path):
    client = create_app(Settings(scorer="rules", state_dir=tmp_path)).test_client()
    body = client.get("/model-card?format=json").get_json()
    assert body["kind"] == "rules"
    assert body["details"]["id"] == load_rule_scorer().info.id


def test_derived_model_card_shows_how_labels_were_derived(default_metadata):
    derivation = {
        "method": "consensus k-means clustering",
        "n_clusters": 3,
        "clusters": [
            {"cluster": 0, "endotype": "quiescent", "size": 10, "complicated_course_rate": 0.1}
        ],
    }
    html = render_html(model_card({**default_metadata, "derivation": derivation}))
    assert "How the endotype labels were derived" in html
    assert "consensus k-means clustering" in html


def test_html_model_card_lists_every_attribute_row(default_metadata):
    html = render_html(model_card(default_metadata))
    assert html.count("<tr><td>") >= 31
    assert "Internal validation" in html


def test_format_parameter_overrides_the_accept_header(model_client):
    response = model_client.get("/model-card?format=html", headers={"Accept": "application/json"})
    assert response.mimetype == "text/html"


# --- rules v2 on the model-card page ------------------------------------------------------------


def rules_page(tmp_path, **settings) -> tuple[dict, str]:
    client = create_app(Settings(state_dir=tmp_path, **settings)).test_client()
    body = client.get("/model-card?format=json").get_json()
    return body, client.get("/model-card?format=html").get_data(as_text=True)


def test_rules_v2_page_shows_every_marker_threshold_as_the_code_judges_it(tmp_path):
    from model.rules_scorer import load_rules_v2_scorer
    from model.states import LimitSource, UpperLimit

    body, html = rules_page(tmp_path)
    scorer = load_rules_v2_scorer()
    assert body["details"]["version"] == scorer.info.version
    shown = {marker["analyte"]: marker for marker in body["markers"]}
    assert set(shown) == set(scorer.rule_set.axis_analytes)
    for analyte, spec in scorer.rule_set.markers.items():
        limit = UpperLimit(spec.upper_limit.value, spec.unit, LimitSource.PUBLISHED, "")
        threshold = scorer.limits.threshold(analyte, limit)
        value = f"{threshold.value:,.0f}"
        assert shown[analyte]["marked_with_default_limit"] == (
            f"{threshold.operator} {value} {spec.unit}"
        )
        assert shown[analyte]["basis"] == threshold.basis.value
        assert spec.upper_limit.source in shown[analyte]["upper_limit"]
        if threshold.citation_url:
            assert f'href="{threshold.citation_url}"' in html


def test_rules_v2_page_states_every_decision_step_state_finding_and_limitation(tmp_path):
    from model.decision import DECISION_STEPS
    from model.persistence import PERSISTENCE_STATES
    from model.rules_scorer import load_rules_v2_scorer

    body, html = rules_page(tmp_path)
    rule_set = load_rules_v2_scorer().rule_set
    assert body["decision"] == list(DECISION_STEPS)
    assert len(body["persistence"]) == len(PERSISTENCE_STATES)
    assert {f["id"] for f in body["findings"]} == {
        *(f.id for f in rule_set.findings),
        rule_set.ferritin_fall.id,
    }
    for finding in rule_set.findings:
        assert f'href="{finding.source.link}"' in html
    assert body["limitations"] == list(rule_set.limitations)
    assert "staging.scite.ai" not in html
    assert body["timing"][1].startswith("Early window: anchor to anchor + 48 h")
    assert "the Phoenix onset (phoenix.enabled)" in body["timing"][0]
    assert body["timing"][-1].startswith("The Phoenix score is context and anchor only")


def test_rules_v2_page_shows_the_sites_own_limits_and_multiples(tmp_path):
    site = {
        "upper_limits": [
            {"analyte": "il6", "value": 7, "unit": "pg/mL", "source": "site lab, Elecsys IL-6"}
        ],
        "marked_uln_multiple": {"il6": 20},
    }
    body, _ = rules_page(tmp_path, rules=site)
    assert body["site_limits"] == [
        "il6: upper limit 7 pg/mL, site lab, Elecsys IL-6",
        "il6: markedly raised at ≥ 20 × the result's upper limit",
    ]
    il6 = next(marker for marker in body["markers"] if marker["analyte"] == "il6")
    assert il6["basis"] == "site-multiple"
    assert il6["marked"] == "≥ 20 × the result's upper limit (site multiple)"


def test_the_v1_rule_set_is_still_described_when_selected(tmp_path):
    body, _ = rules_page(tmp_path, rules={"version": 1})
    assert body["details"]["version"].startswith("1.")
    assert body["rules"]


def test_the_model_page_says_how_the_model_is_used_and_carries_rules_v2(model_client):
    body = model_client.get("/model-card?format=json").get_json()
    assert body["kind"] == "model"
    assert any("early window" in line for line in body["model_use"])
    assert body["decision"] and body["markers"] and body["findings"]
