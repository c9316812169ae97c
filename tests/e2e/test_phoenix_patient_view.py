"""patient-view against the sandbox FHIR server: a child's Phoenix onset is found from the chart
and the early window opens there, by the service's own queries and from prefetch."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devtools import SandboxFhir, build_prefetch
from tests.cds_service.fhir_data import observation, patient, stay
from tests.cds_service.phoenix_data import blood_pressure, infusion, pulse_oximetry, ventilation
from tests.support.hook_caller import hook_request, without_uuids

from .conftest import ASSESSMENT_EXTENSION, HookCaller, LoadResources

PATIENT_ID = "e2e-phoenix-child"
OTHER_CHILD = "e2e-phoenix-other"
ADMITTED_HOURS_AGO = 40
ONSET_HOURS_AGO = 20


@pytest.fixture(scope="module")
def onset() -> datetime:
    """A whole hour 20 h ago: the child is intubated and hypoxaemic from then on."""
    now = datetime.now(UTC)
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=ONSET_HOURS_AGO)


def chart(patient_id: str, onset: datetime) -> list[dict[str, Any]]:
    """A PICU stay: room air and normal pressures until the onset, then ventilated with S/F 147
    and an epinephrine infusion; the panel drawn 3 h before and 3 h after the onset."""
    now = datetime.now(UTC)
    admitted = now - timedelta(hours=ADMITTED_HOURS_AGO)
    resources: list[dict[str, Any]] = [
        patient(patient_id, (now - timedelta(days=6 * 365)).date()),
        *stay(patient_id, admitted, encounter_id=f"{patient_id}-enc"),
        ventilation(patient_id, onset),
        infusion(patient_id, onset),
    ]
    at = onset - timedelta(hours=12)
    while at <= now:
        sick = at >= onset
        resources.append(pulse_oximetry(patient_id, at, 88 if sick else 99, 60 if sick else None))
        resources.append(blood_pressure(patient_id, at, 92 if sick else 104, 50 if sick else 62))
        at += timedelta(hours=2)
    for number, hours in enumerate((-3, 3)):
        drawn = onset + timedelta(hours=hours)
        for analyte, value in {"il6": 30.0, "cxcl9": 400.0, "ferritin": 250.0, "crp": 20.0}.items():
            resources.append(observation(patient_id, analyte, value, drawn, index=number))
    return resources


@pytest.fixture(scope="module")
def loaded(load_into_sandbox: LoadResources, onset: datetime) -> None:
    """The child, and another child with the same chart an hour later (never read for ours)."""
    resources = [*chart(PATIENT_ID, onset), *chart(OTHER_CHILD, onset - timedelta(hours=5))]
    response = load_into_sandbox(resources)
    statuses = [entry["response"]["status"] for entry in response["entry"]]
    assert all(status.startswith(("200", "201")) for status in statuses), statuses


@pytest.fixture
def card_by(
    loaded: None,
    hook_caller: HookCaller,
    discovery_templates: dict[str, str],
    sandbox_fhir: SandboxFhir,
    fhir_access: dict[str, Any],
):
    """The child's one card, by the service's queries or from prefetch run by the EHR."""

    def card(form: str) -> dict[str, Any]:
        if form == "query":
            body = hook_request(PATIENT_ID, **fhir_access)
        else:
            prefetch = build_prefetch(
                sandbox_fhir.base_url, discovery_templates, {"patientId": PATIENT_ID}
            )
            assert all(value is not None for value in prefetch.values())
            body = hook_request(PATIENT_ID, prefetch=prefetch)
        response = hook_caller.call(body)
        assert response.status_code == 200, response.get_data(as_text=True)
        (found,) = response.get_json()["cards"]
        return found

    return card


@pytest.mark.parametrize("form", ["query", "prefetch"])
def test_the_onset_is_found_and_the_early_window_opens_there(
    card_by, onset: datetime, form: str
) -> None:
    card = card_by(form)
    extension = card["extension"][ASSESSMENT_EXTENSION]
    context = extension["context"]

    assert context["anchor"]["source"] == "phoenix"
    assert datetime.fromisoformat(context["anchor"]["time"]) == onset
    assert "Day 1 since onset (organ dysfunction, Phoenix score ≥ 2, " in card["detail"]
    phases = {
        datetime.fromisoformat(sample["time"]) - onset: sample["phase"]
        for sample in extension["persistence"]["samples"]
    }
    assert phases == {timedelta(hours=-3): "pre-anchor", timedelta(hours=3): "early"}
    phoenix = context["phoenix"]
    assert phoenix["onset"]["respiratory"] == 3 and phoenix["onset"]["cardiovascular"] >= 1
    assert "map" not in phoenix["latest"]["missing"], "the blood-pressure panels were found"
    assert len(card["detail"]) <= 1500


def test_prefetch_and_queries_give_the_same_card(card_by) -> None:
    by_query, by_prefetch = card_by("query"), card_by("prefetch")
    for card in (by_query, by_prefetch):  # the series ends at each call's own "now"
        phoenix = card["extension"][ASSESSMENT_EXTENSION]["context"]["phoenix"]
        phoenix["series"], phoenix["latest"] = phoenix["series"][:-1], None
        card["extension"][ASSESSMENT_EXTENSION]["context"].pop("hours_since_anchor")
        card["detail"] = "\n".join(
            line for line in card["detail"].splitlines() if not line.startswith("Phoenix ")
        )
    assert json.dumps(without_uuids(by_query), sort_keys=True) == json.dumps(
        without_uuids(by_prefetch), sort_keys=True
    )
