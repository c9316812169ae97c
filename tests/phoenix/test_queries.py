"""Prefetch templates and bounded queries for the Phoenix inputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest

from fhir_mappings.phoenix_config import PhoenixCodeSettings, PhoenixLocalCode
from fhir_mappings.phoenix_inputs import load_phoenix_catalog
from fhir_mappings.phoenix_queries import (
    DEVICE_USE_KEY,
    ENCOUNTER_KEY,
    GESTATIONAL_AGE_KEY,
    INFUSIONS_KEY,
    OBSERVATIONS_KEY,
    PROCEDURES_KEY,
    phoenix_prefetch_templates,
    phoenix_queries,
    query_since,
)
from fhir_mappings.prefetch import fill_template, is_search, template_resource_type

SINCE = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def params(query: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in parse_qsl(urlsplit(query).query):
        found.setdefault(name, []).append(value)
    return found


def test_one_template_per_resource_type_and_the_encounter(catalog) -> None:
    templates = phoenix_prefetch_templates(catalog, page_size=200)
    assert {key: template_resource_type(t) for key, t in templates.items()} == {
        OBSERVATIONS_KEY: "Observation",
        PROCEDURES_KEY: "Procedure",
        DEVICE_USE_KEY: "DeviceUseStatement",
        INFUSIONS_KEY: "MedicationAdministration",
        GESTATIONAL_AGE_KEY: "Observation",
        ENCOUNTER_KEY: "Encounter",
    }
    assert not is_search(templates[ENCOUNTER_KEY])
    filled = fill_template(templates[OBSERVATIONS_KEY], {"patientId": "p-1"})
    assert params(filled)["patient"] == ["p-1"]


def test_the_observation_template_asks_for_every_input_code_at_once(catalog) -> None:
    template = phoenix_prefetch_templates(catalog, page_size=200)[OBSERVATIONS_KEY]
    found = params(fill_template(template, {"patientId": "p1"}))
    codes = found["code"][0].split(",")
    assert codes == [f"{s}|{c}" for s, c in catalog.observation_codes()]
    assert "http://loinc.org|59408-5" in codes and "http://loinc.org|2345-7" not in codes
    assert codes[-1] == "http://loinc.org|85354-9", "the BP panel, read for its components"
    assert found["_sort"] == ["-date"] and found["_count"] == ["200"]
    assert "date" not in found  # prefetch has no date tokens


def test_phoenix8_adds_its_codes(catalog) -> None:
    template = phoenix_prefetch_templates(catalog, page_size=50, phoenix8=True)[OBSERVATIONS_KEY]
    assert "http://loinc.org|2345-7" in template


def test_support_and_infusion_templates_carry_their_codes(catalog) -> None:
    templates = phoenix_prefetch_templates(catalog, page_size=100)
    procedures = params(fill_template(templates[PROCEDURES_KEY], {"patientId": "p1"}))
    assert "http://snomed.info/sct|1258985005" in procedures["code"][0].split(",")
    infusions = params(fill_template(templates[INFUSIONS_KEY], {"patientId": "p1"}))
    assert "http://www.nlm.nih.gov/research/umls/rxnorm|3992" in infusions["code"][0]
    assert infusions["_sort"] == ["-effective-time"]
    devices = params(fill_template(templates[DEVICE_USE_KEY], {"patientId": "p1"}))
    assert devices["_include"] == ["DeviceUseStatement:device"]


def test_queries_add_a_date_bound_where_the_type_allows(catalog) -> None:
    queries = phoenix_queries(catalog, "p1", since=SINCE, page_size=100)
    stamp = "ge2026-03-01T08:00:00Z"
    assert params(queries[OBSERVATIONS_KEY])["date"] == [stamp]
    assert params(queries[PROCEDURES_KEY])["date"] == [stamp]
    assert params(queries[INFUSIONS_KEY])["effective-time"] == [stamp]
    assert "date" not in params(queries[DEVICE_USE_KEY])  # no date search parameter in R4
    assert "date" not in params(queries[GESTATIONAL_AGE_KEY])  # recorded at birth
    assert params(queries[GESTATIONAL_AGE_KEY])["_count"] == ["1"]
    assert ENCOUNTER_KEY not in queries


def test_queries_read_requests_where_the_site_has_no_administrations() -> None:
    catalog = load_phoenix_catalog(PhoenixCodeSettings(vasoactives_from="requests"))
    query = phoenix_queries(catalog, "p1", since=SINCE, page_size=100)[INFUSIONS_KEY]
    assert query.startswith("MedicationRequest?")
    assert params(query)["authoredon"] == ["ge2026-03-01T08:00:00Z"]


def test_a_medication_chain_filters_through_the_medication(catalog) -> None:
    query = phoenix_queries(catalog, "p1", since=SINCE, page_size=10, medication_chain=True)[
        INFUSIONS_KEY
    ]
    found = params(query)
    assert "medication.code" in found and "code" not in found
    assert found["_include"] == ["MedicationAdministration:medication"]


def test_the_bound_reaches_back_the_longest_window(catalog) -> None:
    assert query_since(SINCE, catalog) == SINCE - timedelta(hours=24)


def test_the_patient_id_is_url_encoded_and_times_must_be_aware(catalog) -> None:
    query = phoenix_queries(catalog, "a b", since=SINCE, page_size=5)[OBSERVATIONS_KEY]
    assert "patient=a%20b" in query
    with pytest.raises(ValueError):
        phoenix_queries(catalog, "p1", since=SINCE.replace(tzinfo=None), page_size=5)
    with pytest.raises(ValueError):
        phoenix_queries(catalog, "p1", since=SINCE, page_size=0)


def test_a_site_code_needing_search_escaping_is_refused() -> None:
    catalog = load_phoenix_catalog(
        PhoenixCodeSettings(
            local_codes=[PhoenixLocalCode(input="lactate", system="urn:site", code="A,B")]
        )
    )
    with pytest.raises(ValueError, match="escaping"):
        phoenix_prefetch_templates(catalog, page_size=10)


def test_site_codes_join_the_combined_list() -> None:
    catalog = load_phoenix_catalog(
        PhoenixCodeSettings(
            local_codes=[PhoenixLocalCode(input="lactate", system="urn:site", code="LAC")]
        )
    )
    template = phoenix_prefetch_templates(catalog, page_size=10)[OBSERVATIONS_KEY]
    assert "urn:site|LAC" in template
