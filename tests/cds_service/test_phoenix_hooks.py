"""The Phoenix layer in the hook: the onset anchors the window, the card's line and series."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import pytest
from pytest_httpserver import HTTPServer

from cds_service.app import create_app
from cds_service.cards import EXTENSION_KEY
from tests.cds_service.conftest import MakeSettings
from tests.cds_service.fhir_data import (
    FakeFhirServer,
    full_prefetch,
    observation,
    patient,
    stay,
    years_before,
)
from tests.cds_service.phoenix_data import (
    BLOOD_CULTURE,
    CEFTRIAXONE,
    LOINC,
    RXNORM,
    SEPSIS,
    SNOMED,
    blood_pressure,
    culture_order,
    dose,
    gestational_age,
    infusion,
    pulse_oximetry,
    sepsis_condition,
    ventilation,
)
from tests.support.hook_caller import HookCaller, hook_request
from tests.support.tokens import fhir_authorization

PATIENT_ID = "phoenix-child-1"
ADMITTED_HOURS_AGO = 40
ONSET_HOURS_AGO = 20
INFECTION = {
    "condition_codes": [f"{SNOMED}|{SEPSIS}"],
    "culture_codes": [f"{LOINC}|{BLOOD_CULTURE}"],
    "antimicrobial_codes": [f"{RXNORM}|{CEFTRIAXONE}"],
}
Call = Callable[..., dict[str, Any]]


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def onset(now: datetime) -> datetime:
    """A whole hour 20 h ago: the first hour the child scores 2 or more."""
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=ONSET_HOURS_AGO)


def panel(now: datetime) -> list[dict[str, Any]]:
    """IL-6, CXCL9, ferritin and CRP 6 h ago, and normal platelets (no coagulation point)."""
    values = {"il6": 40.0, "cxcl9": 900.0, "ferritin": 300.0, "crp": 30.0, "platelets": 250.0}
    at = now - timedelta(hours=6)
    return [observation(PATIENT_ID, analyte, value, at) for analyte, value in values.items()]


def vitals(onset: datetime, now: datetime, *, ventilated: bool = True) -> list[dict[str, Any]]:
    """Every 2 h from 10 h before onset: room air before it; from it, on the ventilator with
    FiO2 60 % and SpO2 88 % (S/F 147: respiratory 3); blood pressure normal throughout."""
    resources: list[dict[str, Any]] = []
    at = onset - timedelta(hours=10)
    while at <= now:
        sick = ventilated and at >= onset
        resources.append(pulse_oximetry(PATIENT_ID, at, 88 if sick else 99, 60 if sick else None))
        resources.append(blood_pressure(PATIENT_ID, at, 100, 60))
        at += timedelta(hours=2)
    if ventilated:
        resources.append(ventilation(PATIENT_ID, onset))
    return resources


def detail_line(card: dict[str, Any], start: str) -> str:
    """The first line of the card's detail that starts with `start`."""
    return next(line for line in card["detail"].splitlines() if line.startswith(start))


def context_of(card: dict[str, Any]) -> dict[str, Any]:
    return card["extension"][EXTENSION_KEY]["context"]


@pytest.fixture
def fake_fhir(httpserver: HTTPServer, now: datetime) -> FakeFhirServer:
    fake = FakeFhirServer(
        patients={PATIENT_ID: patient(PATIENT_ID, years_before(now, 6.4))},
        encounters=stay(PATIENT_ID, now - timedelta(hours=ADMITTED_HOURS_AGO)),
    )
    httpserver.expect_request(re.compile(r"/fhir/.*")).respond_with_handler(fake)
    return fake


@pytest.fixture
def call(
    make_settings: MakeSettings,
    caller_for: Callable[..., HookCaller],
    fake_fhir: FakeFhirServer,
    fhir_base: str,
) -> Call:
    """One hook for the child holding `resources`, by prefetch or by the service's queries."""

    def calling(
        resources: list[dict[str, Any]],
        form: str = "prefetch",
        child: dict[str, Any] | None = None,
        **settings: Any,
    ) -> dict[str, Any]:
        caller = caller_for(create_app(make_settings(**settings)))
        subject = child or fake_fhir.patients[PATIENT_ID]
        observations = [r for r in resources if r["resourceType"] == "Observation"]
        others = [r for r in resources if r["resourceType"] != "Observation"]
        if form == "query":
            fake_fhir.patients[PATIENT_ID] = subject
            fake_fhir.observations = observations
            fake_fhir.conditions = [r for r in others if r["resourceType"] == "Condition"]
            fake_fhir.orders = [r for r in others if r["resourceType"] == "ServiceRequest"]
            fake_fhir.others = others
            body = hook_request(
                PATIENT_ID, fhir_server=fhir_base, fhir_authorization=fhir_authorization()
            )
        else:
            prefetch = full_prefetch(
                caller.prefetch_templates(),
                subject,
                observations,
                encounters=fake_fhir.encounters,
                others=others,
            )
            body = hook_request(PATIENT_ID, prefetch=prefetch)
        response = caller.call(body)
        assert response.status_code == 200, response.get_data(as_text=True)
        (card,) = response.get_json()["cards"]
        return card

    return calling


@pytest.mark.parametrize("form", ["prefetch", "query"])
def test_the_first_hour_with_a_score_of_2_anchors_the_window(
    call: Call, now: datetime, onset: datetime, form: str
) -> None:
    card = call([*panel(now), *vitals(onset, now)], form)

    anchor = context_of(card)["anchor"]
    assert (anchor["source"], anchor["time"]) == ("phoenix", onset.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert anchor["detail"] == "organ dysfunction (Phoenix score ≥ 2)"
    assert context_of(card)["hours_since_anchor"] == pytest.approx(
        (now - onset).total_seconds() / 3600, abs=0.1
    )
    when = f"{onset.day} {onset:%b %H:%M} UTC"
    assert f"Day 1 since onset (organ dysfunction, Phoenix score ≥ 2, {when})." in card["detail"]
    assert len(card["detail"]) <= 1500


def test_the_phoenix_line_gives_the_score_its_subscores_the_onset_and_what_is_absent(
    call: Call, now: datetime, onset: datetime
) -> None:
    card = call([*panel(now), *vitals(onset, now)])

    line = detail_line(card, "Phoenix ")
    assert line == (
        f"Phoenix 3 at {now:%H:%M} UTC: respiratory 3; onset {ONSET_HOURS_AGO} h ago. "
        "Not charted (0 points): lactate, INR, D-dimer, fibrinogen, GCS, pupils (both sides)."
    )


def test_the_query_path_bounds_the_phoenix_searches_by_date_and_prefetch_does_not(
    call: Call, httpserver: HTTPServer, now: datetime, onset: datetime
) -> None:
    call([*panel(now), *vitals(onset, now)], "query")

    searches = [dict(parse_qsl(request.query_string.decode())) for request, _ in httpserver.log]
    phoenix_observations = [s for s in searches if "http://loinc.org|59408-5" in s.get("code", "")]
    (bounded,) = phoenix_observations
    since = datetime.fromisoformat(bounded["date"].removeprefix("ge"))
    assert since == pytest.approx(now - timedelta(days=15), abs=timedelta(seconds=5))
    assert bounded["_count"] == "500"
    infusions = next(s for s in searches if "effective-time" in s)
    assert infusions["effective-time"] == bounded["date"]


def test_without_a_score_of_2_the_picu_admission_anchors_the_window(
    call: Call, now: datetime, onset: datetime
) -> None:
    card = call([*panel(now), *vitals(onset, now, ventilated=False)])

    assert context_of(card)["anchor"]["source"] == "picu-admission"
    assert detail_line(card, "Phoenix ").startswith(f"Phoenix 0 at {now:%H:%M} UTC; ")
    assert "; no score ≥ 2 this stay." in detail_line(card, "Phoenix ")
    assert context_of(card)["phoenix"].get("onset") is None


def test_a_preterm_infant_is_out_of_scope_and_the_card_says_why_instead_of_a_score(
    call: Call, now: datetime, onset: datetime
) -> None:
    infant = patient(PATIENT_ID, (now - timedelta(days=30)).date())
    resources = [*panel(now), *vitals(onset, now), gestational_age(PATIENT_ID, 30)]

    card = call(resources, child=infant)

    assert context_of(card)["anchor"]["source"] == "picu-admission"
    assert detail_line(card, "Phoenix ") == (
        "Phoenix not scored: gestational age under 37 weeks at encounter start."
    )
    phoenix = context_of(card)["phoenix"]
    assert phoenix["outOfScope"] == "gestational-age-under-37-weeks"
    assert "series" not in phoenix


@pytest.mark.parametrize(
    ("signs", "expected"),
    [
        ("none", "organ dysfunction, Phoenix score ≥ 2"),
        ("condition", "sepsis, Phoenix score ≥ 2 with suspected infection"),
        ("culture and two doses", "sepsis, Phoenix score ≥ 2 with suspected infection"),
        ("culture and one dose", "organ dysfunction, Phoenix score ≥ 2"),
    ],
)
def test_sepsis_is_said_only_with_the_sites_infection_signal(
    call: Call, now: datetime, onset: datetime, signs: str, expected: str
) -> None:
    before = onset - timedelta(hours=2)
    found = {
        "none": [],
        "condition": [sepsis_condition(PATIENT_ID, onset)],
        "culture and two doses": [
            culture_order(PATIENT_ID, before),
            dose(PATIENT_ID, before, number=1),
            dose(PATIENT_ID, onset + timedelta(hours=10), number=2),
        ],
        "culture and one dose": [culture_order(PATIENT_ID, before), dose(PATIENT_ID, before)],
    }[signs]

    card = call([*panel(now), *vitals(onset, now), *found], phoenix={"infection": INFECTION})

    assert detail_line(card, "Day 1 since onset (").startswith(f"Day 1 since onset ({expected}, ")
    if "sepsis" not in expected:
        assert "sepsis" not in card["detail"].lower()


def test_the_extension_holds_the_hourly_series_bounded_by_series_days(
    call: Call, now: datetime, onset: datetime
) -> None:
    resources = [*panel(now), *vitals(onset, now), infusion(PATIENT_ID, onset)]

    card = call(resources, phoenix={"series_days": 1})

    phoenix = context_of(card)["phoenix"]
    times = [datetime.fromisoformat(point["time"]) for point in phoenix["series"]]
    assert len(times) == 25 and abs(times[-1] - now) < timedelta(minutes=1)
    assert all(b - a == timedelta(hours=1) for a, b in zip(times[:-2], times[1:-1], strict=True))
    assert phoenix["seriesHours"] == 24
    latest = phoenix["series"][-1]
    assert latest == phoenix["latest"]
    assert (latest["total"], latest["respiratory"], latest["cardiovascular"]) == (4, 3, 1)
    assert "gcs" in latest["missing"] and "oxygenation" not in latest["missing"]
    assert phoenix["onset"]["time"] == onset.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert phoenix["onset"]["total"] == 4
    shown = json.dumps(card).lower()
    assert "epinephrine" not in shown and "3992" not in shown, "a card never names a drug"


def test_with_the_phoenix_layer_off_there_is_no_line_and_no_phoenix_search(
    call: Call, httpserver: HTTPServer, now: datetime, onset: datetime
) -> None:
    card = call([*panel(now), *vitals(onset, now)], "query", phoenix={"enabled": False})

    assert context_of(card)["anchor"]["source"] == "picu-admission"
    assert "Phoenix" not in card["detail"]
    assert "phoenix" not in context_of(card)
    assert {request.path for request, _ in httpserver.log}.isdisjoint(
        {"/fhir/Procedure", "/fhir/DeviceUseStatement", "/fhir/MedicationAdministration"}
    )


def test_the_phoenix_score_never_changes_the_endotype_decision(
    call: Call, now: datetime, onset: datetime
) -> None:
    with_phoenix = call([*panel(now), *vitals(onset, now)])
    without = call([*panel(now), *vitals(onset, now)], phoenix={"enabled": False})

    for card in (with_phoenix, without):
        extension = card["extension"][EXTENSION_KEY]
        assert (extension["pathway"], extension["endotype"]) == ("standard", "quiescent")
    assert with_phoenix["summary"] == without["summary"]
