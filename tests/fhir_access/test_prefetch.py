"""Prefetch templates, template filling, and the decision table with the spec sentence behind it."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from fhir_mappings.config import LocalCode
from fhir_mappings.panel import Panel, load_panel
from fhir_mappings.prefetch import (
    PANEL_KEY,
    PATIENT_KEY,
    MalformedPrefetch,
    PrefetchState,
    classify,
    fill_template,
    is_search,
    prefetch_templates,
    template_resource_type,
)
from tests.fhir_access.conftest import PATIENT_ID, observation, outcome, patient_resource, searchset

ALLOWED_SEARCH_PARAMETERS = {"patient", "code", "_sort", "_count"}
REQUIREMENTS = Path(__file__).parent / "fixtures" / "cds-hooks_2.0_requirements.csv"


def test_templates_read_the_patient_and_search_every_analyte_in_one_panel_search(
    panel: Panel,
) -> None:
    templates = prefetch_templates(panel, page_size=25)

    assert templates[PATIENT_KEY] == "Patient/{{context.patientId}}"
    assert set(templates) == {PATIENT_KEY, PANEL_KEY}
    resource_type, _, query = templates[PANEL_KEY].partition("?")
    params = dict(parse_qsl(query))
    assert resource_type == "Observation"
    assert params["patient"] == "{{context.patientId}}"
    assert params["code"] == ",".join(panel.token_param(key) for key in panel.analytes)
    assert params["_sort"] == "-date"
    assert params["_count"] == "25"


def test_templates_use_only_cds_hooks_2_tokens_and_no_relative_dates(panel: Panel) -> None:
    """§prefetch-tokens: 2.0 has context tokens only; `{{today()}}` is a 3.0 ballot feature."""
    for template in prefetch_templates(panel, page_size=50).values():
        assert set(re.findall(r"\{\{(.*?)\}\}", template)) == {"context.patientId"}
        assert "today" not in template and "date=" not in template


def test_templates_use_only_the_recommended_query_subset(panel: Panel) -> None:
    """§prefetch-query-restrictions: references, token equality, `_count` and `_sort`."""
    for key, template in prefetch_templates(panel, page_size=50).items():
        if key == PATIENT_KEY:
            continue
        params = [name for name, _ in parse_qsl(template.partition("?")[2])]
        assert set(params) <= ALLOWED_SEARCH_PARAMETERS
        assert not any(":" in name for name in params)  # no modifiers


def test_local_code_with_url_unsafe_characters_is_percent_encoded() -> None:
    panel = load_panel([LocalCode(analyte="il6", system="urn:oid:1.2.3", code="IL 6&X")])

    template = prefetch_templates(panel, page_size=10)[PANEL_KEY]

    assert "http://loinc.org|26881-3,urn:oid:1.2.3|IL%206%26X," in template
    assert "urn:oid:1.2.3|IL 6&X" in dict(parse_qsl(template.partition("?")[2]))["code"]


def test_local_code_that_would_need_fhir_search_escaping_is_refused() -> None:
    panel = load_panel([LocalCode(analyte="il6", system="urn:oid:1.2.3", code="IL6,serum")])

    with pytest.raises(ValueError, match="search escaping"):
        prefetch_templates(panel, page_size=10)


def test_fill_template_substitutes_context_ids() -> None:
    template = "Observation?patient={{context.patientId}}&encounter={{ context.encounterId }}"

    filled = fill_template(template, {"patientId": "abc.1-2", "encounterId": "enc-9"})

    assert filled == "Observation?patient=abc.1-2&encounter=enc-9"


def test_fill_template_accepts_a_user_reference_for_user_id() -> None:
    filled = fill_template("Practitioner?_id={{context.userId}}", {"userId": "Practitioner/dr-1"})

    assert filled == "Practitioner?_id=Practitioner/dr-1"


@pytest.mark.parametrize(
    "patient_id",
    ["", "a" * 65, "abc/def", "abc&code=x", "abc def", "../Patient", "ä", 42, None],
    ids=["empty", "long", "slash", "ampersand", "space", "dot-slash", "non-ascii", "int", "none"],
)
def test_fill_template_refuses_ids_that_are_not_fhir_ids(patient_id: Any) -> None:
    with pytest.raises(ValueError):
        fill_template("Patient/{{context.patientId}}", {"patientId": patient_id})


def test_fill_template_refuses_tokens_it_does_not_support(conformance_example: Any) -> None:
    """The spec's own `{{userPractitionerRoleId}}` example is not one of our fillable tokens."""
    templates = conformance_example("spec-2.0.1-discovery-prefetch-templates.json")["prefetch"]
    context = {"patientId": "1288992", "userId": "PractitionerRole/123"}

    assert fill_template(templates["patient"], context) == "Patient/1288992"
    with pytest.raises(ValueError, match="unsupported prefetch token"):
        fill_template(templates["user"], context)


def test_template_shape_helpers_tell_reads_from_searches() -> None:
    assert template_resource_type("Patient/{{context.patientId}}") == "Patient"
    assert template_resource_type("Observation?patient={{context.patientId}}") == "Observation"
    assert not is_search("Patient/{{context.patientId}}")
    assert is_search("Observation?patient={{context.patientId}}&code=http://loinc.org|1-8")


IL6_RESULT = observation("o1", "26881-3", 12.0, "2026-11-20T08:00:00Z")
BUNDLE_WITH_NEXT = searchset([IL6_RESULT], next_url="https://ehr.example.org/fhir/Observation?p=2")
R30_RESOURCE = "each value being a FHIR resource"
R45_EQUIVALENT = "MUST be equivalent to the data the CDS Service would receive"
R52_CHECK_OUTCOMES = (
    "CDS Services SHOULD check any prefetched data for the existence of OperationOutcomes"
)

# (prefetch, expected state, requirement id, the sentence of that requirement the case enforces)
DECISION_TABLE = [
    pytest.param(
        None,
        PrefetchState.ABSENT,
        "34",
        "accessing FHIR resources via either prefetch or from the CDS Client's FHIR server",
        id="no-prefetch",
    ),
    pytest.param(
        {"other": None},
        PrefetchState.ABSENT,
        "51",
        "CDS Clients MUST omit the prefetch key if relevant details cannot be provided",
        id="key-missing",
    ),
    pytest.param(
        {"il6": None},
        PrefetchState.NULL,
        "53",
        "If the CDS Client has no data to populate a template prefetch key, the prefetch "
        "template key MUST have a value of null.",
        id="null",
    ),
    pytest.param(
        {"il6": searchset([])},
        PrefetchState.EMPTY_BUNDLE,
        "45",
        R45_EQUIVALENT,
        id="empty-bundle",
    ),
    pytest.param(
        {"il6": outcome()},
        PrefetchState.OPERATION_OUTCOME,
        "50",
        "OperationOutcome(s) SHOULD be used to communicate those errors",
        id="operation-outcome",
    ),
    pytest.param(
        {"il6": searchset([outcome("timeout")])},
        PrefetchState.OPERATION_OUTCOME,
        "52",
        R52_CHECK_OUTCOMES,
        id="bundle-of-error-outcomes",
    ),
    pytest.param(
        {"il6": searchset([IL6_RESULT, outcome("incomplete")])},
        PrefetchState.OPERATION_OUTCOME,
        "52",
        R52_CHECK_OUTCOMES,
        id="bundle-with-results-and-an-error-outcome",
    ),
    pytest.param(
        {"il6": searchset([IL6_RESULT, outcome("informational", "warning")])},
        PrefetchState.BUNDLE,
        "52",
        R52_CHECK_OUTCOMES,
        id="bundle-with-results-and-a-warning",
    ),
    pytest.param(
        {"il6": searchset([outcome("informational", "information")])},
        PrefetchState.EMPTY_BUNDLE,
        "52",
        R52_CHECK_OUTCOMES,
        id="bundle-of-informational-outcomes",
    ),
    pytest.param(
        {"il6": BUNDLE_WITH_NEXT},
        PrefetchState.PAGED,
        "48",
        "CDS Client MAY paginate prefetch results",
        id="paged",
    ),
    pytest.param(
        {"il6": searchset([IL6_RESULT])},
        PrefetchState.BUNDLE,
        "30",
        "in the case of searches, this resource may be a searchset Bundle",
        id="bundle",
    ),
    pytest.param(
        {"il6": patient_resource()},
        PrefetchState.RESOURCE,
        "30",
        R30_RESOURCE,
        id="resource",
    ),
]


def requirement_text(requirement_id: str) -> str:
    """The text of one CDS Hooks 2.0 requirement row, whitespace collapsed."""
    with REQUIREMENTS.open(newline="", encoding="utf-8") as table:
        rows = {row["ID"]: row["Requirement"] for row in csv.DictReader(table)}
    return " ".join(rows[requirement_id].split())


@pytest.mark.parametrize(("prefetch", "expected", "requirement", "sentence"), DECISION_TABLE)
def test_classify_follows_the_decision_table(
    prefetch: dict[str, Any] | None, expected: PrefetchState, requirement: str, sentence: str
) -> None:
    assert sentence in requirement_text(requirement), "the case quotes its requirement exactly"
    assert classify(prefetch, "il6") is expected


def test_only_absent_and_operation_outcome_keys_need_a_query() -> None:
    """§prefetch: null and empty results mean 'no data', so the service must not query again."""
    needing_query = {state for state in PrefetchState if state.needs_query}
    assert needing_query == {PrefetchState.ABSENT, PrefetchState.OPERATION_OUTCOME}
    assert not PrefetchState.NULL.has_data and not PrefetchState.EMPTY_BUNDLE.has_data


@pytest.mark.parametrize(
    "value",
    ["123", 42, ["a"], {"entry": []}, {"resourceType": "Bundle", "entry": {"resource": {}}}],
    ids=["string", "number", "list", "no-resource-type", "entry-not-a-list"],
)
def test_classify_refuses_values_that_are_not_null_or_a_resource(value: Any) -> None:
    with pytest.raises(MalformedPrefetch) as raised:
        classify({"il6": value}, "il6")

    assert raised.value.key == "il6"
    assert PATIENT_ID not in str(raised.value)
