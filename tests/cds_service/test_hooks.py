"""POST /cds-services/{id}: the whole flow from request to card, with prefetch and FHIR queries."""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

from cds_service import hooks
from cds_service.app import create_app
from cds_service.cards import build_card
from cds_service.models import HookResponse, find_empty_value
from tests.cds_service.conftest import MakeSettings, PinClock
from tests.cds_service.fhir_data import (
    FakeFhirServer,
    full_prefetch,
    lab_order,
    observation,
    patient,
    stay,
    years_before,
)
from tests.cds_service.outcomes import assert_outcome
from tests.support.hook_caller import SERVICE_ID, HookCaller, hook_request, without_uuids
from tests.support.tokens import fhir_authorization

PATIENT_ID = "picu-child-1"
# what the Phoenix layer searches besides Observations
PHOENIX_SEARCHES = {"Procedure", "DeviceUseStatement", "MedicationAdministration"}
# analyte -> (older value, newer value); two results each inside the 48 h window
PANEL_VALUES = {
    "il6": (60.0, 95.0),
    "ferritin": (700.0, 1200.0),
    "crp": (45.0, 80.0),
    "cxcl9": (1800.0, 2600.0),
    "ifng": (30.0, 55.0),
    "lymphocytes": (1.1, 0.7),
    "platelets": (160.0, 95.0),
    "lactate": (2.0, 3.1),
    "procalcitonin": (0.8, 2.4),
    "sil2r": (2500.0, 4100.0),
    "il10": (12.0, 25.0),
}


def _observations(patient_id: str, now: datetime) -> list[dict[str, Any]]:
    """Two results per panel analyte, 30.5 h and 6.5 h before `now`."""
    return [
        observation(patient_id, analyte, value, now - timedelta(hours=hours), index=index)
        for analyte, values in PANEL_VALUES.items()
        for index, (value, hours) in enumerate(zip(values, (30.5, 6.5), strict=True))
    ]


def _assert_conformant(response: Any) -> list[dict[str, Any]]:
    """RESP-CHECKS: JSON, validates against our response model, no empty values anywhere."""
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    HookResponse.model_validate(body)
    if body != {"cards": []}:
        assert find_empty_value(body) is None
    for card in body["cards"]:
        assert len(card["summary"]) < 140
        assert card["uuid"]
    return body["cards"]


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def child(now: datetime) -> dict[str, Any]:
    return patient(PATIENT_ID, years_before(now, 6.4))


@pytest.fixture
def fake_fhir(httpserver: HTTPServer, child: dict[str, Any], now: datetime) -> FakeFhirServer:
    """The stub FHIR server, holding the same patient and results as the full prefetch."""
    fake = FakeFhirServer(
        patients={PATIENT_ID: child},
        observations=_observations(PATIENT_ID, now),
        encounters=stay(PATIENT_ID, now - timedelta(hours=40)),
    )
    httpserver.expect_request(re.compile(r"/fhir/.*")).respond_with_handler(fake)
    return fake


def test_complete_prefetch_gives_one_card_and_no_fhir_requests(
    caller: HookCaller,
    httpserver: HTTPServer,
    fhir_base: str,
    child: dict,
    now: datetime,
) -> None:
    prefetch = full_prefetch(caller.prefetch_templates(), child, _observations(PATIENT_ID, now))
    body = hook_request(
        PATIENT_ID,
        prefetch=prefetch,
        fhir_server=fhir_base,
        fhir_authorization=fhir_authorization(),
    )
    response = caller.call(body)
    cards = _assert_conformant(response)
    assert len(cards) == 1
    assert httpserver.log == []
    assert response.headers["Cache-Control"] == "no-store"


def test_prefetch_omitted_queries_fhir_with_the_token_and_gives_the_same_card(
    caller: HookCaller,
    fake_fhir: FakeFhirServer,
    fhir_base: str,
    child: dict,
    now: datetime,
    pin_hook_clock: PinClock,
) -> None:
    pin_hook_clock(now + timedelta(seconds=1))
    # the same stay on both paths: the admission time is on the card to the second
    prefetch = full_prefetch(
        caller.prefetch_templates(),
        child,
        _observations(PATIENT_ID, now),
        encounters=fake_fhir.encounters,
    )
    from_prefetch = _assert_conformant(caller.call(hook_request(PATIENT_ID, prefetch=prefetch)))
    authorization = fhir_authorization()
    queried = caller.call(
        hook_request(PATIENT_ID, fhir_server=fhir_base, fhir_authorization=authorization)
    )
    from_queries = _assert_conformant(queried)
    assert without_uuids(from_queries) == without_uuids(from_prefetch)
    assert from_queries[0]["uuid"] != from_prefetch[0]["uuid"]
    assert len(fake_fhir.authorizations) == len(caller.prefetch_templates())
    assert set(fake_fhir.authorizations) == {f"Bearer {authorization['access_token']}"}


def test_partial_prefetch_queries_only_the_missing_key(
    caller: HookCaller,
    fake_fhir: FakeFhirServer,
    httpserver: HTTPServer,
    fhir_base: str,
    child: dict,
    now: datetime,
) -> None:
    prefetch = full_prefetch(caller.prefetch_templates(), child, _observations(PATIENT_ID, now))
    del prefetch["encounters"]
    body = hook_request(
        PATIENT_ID,
        prefetch=prefetch,
        fhir_server=fhir_base,
        fhir_authorization=fhir_authorization(),
    )
    assert len(_assert_conformant(caller.call(body))) == 1
    assert [request.path for request, _ in httpserver.log] == ["/fhir/Encounter"]
    assert "_include=Encounter:location" in httpserver.log[0][0].query_string.decode()


@pytest.mark.parametrize("status", [401, 500])
def test_fhir_server_failure_is_412_operation_outcome(
    caller: HookCaller, httpserver: HTTPServer, fhir_base: str, status: int
) -> None:
    httpserver.expect_request(re.compile(r"/fhir/.*")).respond_with_data("", status=status)
    body = hook_request(PATIENT_ID, fhir_server=fhir_base, fhir_authorization=fhir_authorization())
    response = caller.call(body)
    assert_outcome(response, 412, "PICU-412-DATA-UNAVAILABLE")
    _let_the_server_answer_what_is_on_the_wire(httpserver)


def _let_the_server_answer_what_is_on_the_wire(httpserver: HTTPServer) -> None:
    """Wait until the stub has answered the queries the hook sent before it gave up.

    The hook answers at the first failure while its other queries may still wait in the stub's
    queue; answered after this test, they would be logged in a later test's server log.
    """
    give_up = time.monotonic() + 5.0
    seen = -1
    while len(httpserver.log) != seen and time.monotonic() < give_up:
        seen = len(httpserver.log)
        time.sleep(0.3)


def test_prefetch_omitted_without_fhir_access_is_412(caller: HookCaller) -> None:
    assert_outcome(caller.call(hook_request(PATIENT_ID)), 412, "PICU-412-DATA-UNAVAILABLE")


def test_token_for_a_fhir_server_off_the_allow_list_is_412_and_nothing_is_sent(
    caller: HookCaller, httpserver: HTTPServer, child: dict, now: datetime
) -> None:
    prefetch = full_prefetch(caller.prefetch_templates(), child, _observations(PATIENT_ID, now))
    body = hook_request(
        PATIENT_ID,
        prefetch=prefetch,
        fhir_server=httpserver.url_for("/other-fhir"),
        fhir_authorization=fhir_authorization(),
    )
    assert_outcome(caller.call(body), 412, "PICU-412-FHIR-SERVER-NOT-ALLOWED")
    assert [request.url for request, _ in httpserver.log if "/other-fhir" in request.path] == []


def test_adult_patient_gets_no_cards(caller: HookCaller, now: datetime) -> None:
    adult = patient(PATIENT_ID, years_before(now, 18.2))
    prefetch = full_prefetch(caller.prefetch_templates(), adult, _observations(PATIENT_ID, now))
    response = caller.call(hook_request(PATIENT_ID, prefetch=prefetch))
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}


def test_adolescent_just_under_the_age_limit_gets_a_card(caller: HookCaller, now: datetime) -> None:
    teenager = patient(PATIENT_ID, years_before(now, 17.8))
    prefetch = full_prefetch(caller.prefetch_templates(), teenager, _observations(PATIENT_ID, now))
    assert len(_assert_conformant(caller.call(hook_request(PATIENT_ID, prefetch=prefetch)))) == 1


@pytest.mark.parametrize("birth_date", [None, "unknown"])
def test_unknown_age_proceeds_to_a_card_that_says_so(
    caller: HookCaller, now: datetime, birth_date: str | None
) -> None:
    no_birth_date = patient(PATIENT_ID, birth_date)
    prefetch = full_prefetch(
        caller.prefetch_templates(), no_birth_date, _observations(PATIENT_ID, now)
    )
    [card] = _assert_conformant(caller.call(hook_request(PATIENT_ID, prefetch=prefetch)))
    assert "Patient age unknown" in card["detail"]
    assert "under 18 years" in card["detail"]


def test_patient_read_answered_null_proceeds_with_age_unknown(
    caller: HookCaller, now: datetime
) -> None:
    prefetch = full_prefetch(caller.prefetch_templates(), {}, _observations(PATIENT_ID, now))
    prefetch["patient"] = None
    [card] = _assert_conformant(caller.call(hook_request(PATIENT_ID, prefetch=prefetch)))
    assert "Patient age unknown" in card["detail"]


def test_known_age_card_does_not_claim_age_unknown(
    caller: HookCaller, child: dict, now: datetime
) -> None:
    prefetch = full_prefetch(caller.prefetch_templates(), child, _observations(PATIENT_ID, now))
    [card] = _assert_conformant(caller.call(hook_request(PATIENT_ID, prefetch=prefetch)))
    assert "age unknown" not in card["detail"]


def test_age_gate_switched_off_answers_for_adults(
    make_settings: MakeSettings, caller: HookCaller, now: datetime
) -> None:
    app = create_app(make_settings(max_age_years=None))
    caller.client = app.test_client()
    adult = patient(PATIENT_ID, years_before(now, 40))
    prefetch = full_prefetch(caller.prefetch_templates(), adult, _observations(PATIENT_ID, now))
    assert len(_assert_conformant(caller.call(hook_request(PATIENT_ID, prefetch=prefetch)))) == 1


def test_missing_panel_results_give_an_insufficient_data_card(
    caller: HookCaller, child: dict
) -> None:
    prefetch = full_prefetch(caller.prefetch_templates(), child, [])
    cards = _assert_conformant(caller.call(hook_request(PATIENT_ID, prefetch=prefetch)))
    assert len(cards) == 1
    assert "insufficient" in cards[0]["summary"].lower()


def test_extension_objects_at_top_level_and_in_context_are_accepted(
    caller: HookCaller, child: dict, now: datetime
) -> None:
    prefetch = full_prefetch(caller.prefetch_templates(), child, _observations(PATIENT_ID, now))
    body = hook_request(PATIENT_ID, prefetch=prefetch)
    body["extension"] = {"com.example.x": {"a": 1}}
    body["context"]["extension"] = {"com.example.y": [1, 2]}
    assert len(_assert_conformant(caller.call(body))) == 1


def test_unknown_top_level_fields_are_accepted(
    caller: HookCaller, child: dict, now: datetime
) -> None:
    prefetch = full_prefetch(caller.prefetch_templates(), child, _observations(PATIENT_ID, now))
    body = hook_request(PATIENT_ID, prefetch=prefetch)
    body["futureField"] = {"nested": True}
    assert len(_assert_conformant(caller.call(body))) == 1


def test_each_hook_writes_one_audit_line_without_patient_values(
    caller: HookCaller, child: dict, now: datetime, caplog: pytest.LogCaptureFixture
) -> None:
    prefetch = full_prefetch(caller.prefetch_templates(), child, _observations(PATIENT_ID, now))
    body = hook_request(PATIENT_ID, prefetch=prefetch)
    with caplog.at_level(logging.INFO, logger="picu_endotype.audit"):
        caller.call(body)
    lines = [r.getMessage() for r in caplog.records if r.name == "picu_endotype.audit"]
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["event"] == "hook"
    assert record["hookInstance"] == body["hookInstance"]
    assert record["iss"] == "https://ehr.test"
    assert isinstance(record["duration_ms"], int)
    # no orders and no Phoenix inputs but the panel's platelets and lactate: empty Bundles
    assert record["sources"] == "prefetch:4,prefetch:empty:5"
    assert (record["outcome"], record["pathway"]) == ("card", "standard")
    assert (record["gate"], record["anchor"]) == ("in-picu", "picu-admission")
    assert PATIENT_ID not in lines[0]
    assert "1200" not in lines[0]


def test_refused_hook_is_audited_with_its_error_code(
    caller: HookCaller, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="picu_endotype.audit"):
        caller.call(hook_request(PATIENT_ID))
    lines = [r.getMessage() for r in caplog.records if r.name == "picu_endotype.audit"]
    assert len(lines) == 1
    assert json.loads(lines[0])["outcome"] == "PICU-412-DATA-UNAVAILABLE"


def test_token_scoped_to_another_patient_is_400_and_nothing_is_fetched(
    caller: HookCaller, httpserver: HTTPServer, fhir_base: str
) -> None:
    authorization = fhir_authorization(patient="someone-else")
    body = hook_request(PATIENT_ID, fhir_server=fhir_base, fhir_authorization=authorization)
    issue = assert_outcome(caller.call(body), 400, "PICU-400-INVALID-REQUEST")
    assert "fhirAuthorization.patient" in issue["diagnostics"]
    assert httpserver.log == []


def test_prefetched_patient_that_is_not_the_patient_in_context_is_400(
    caller: HookCaller, now: datetime
) -> None:
    someone_else = patient("another-child", years_before(now, 5))
    prefetch = full_prefetch(
        caller.prefetch_templates(), someone_else, _observations(PATIENT_ID, now)
    )
    response = caller.call(hook_request(PATIENT_ID, prefetch=prefetch))
    assert_outcome(response, 400, "PICU-400-INVALID-PREFETCH")


def test_card_that_breaks_the_response_rules_is_never_sent(
    caller: HookCaller, child: dict, now: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    def overlong_card(*args: Any, **kwargs: Any) -> dict[str, Any]:
        card = build_card(*args, **kwargs)
        return {**card, "summary": "x" * 140}

    monkeypatch.setattr(hooks, "build_card", overlong_card)
    prefetch = full_prefetch(caller.prefetch_templates(), child, _observations(PATIENT_ID, now))
    response = caller.call(hook_request(PATIENT_ID, prefetch=prefetch))
    assert_outcome(response, 500, "PICU-500-INTERNAL")
    assert "x" * 140 not in response.get_data(as_text=True)


def test_repeated_calls_give_the_same_card_with_fresh_uuids(
    caller: HookCaller, child: dict, now: datetime, pin_hook_clock: PinClock
) -> None:
    pin_hook_clock(now + timedelta(seconds=1))
    prefetch = full_prefetch(caller.prefetch_templates(), child, _observations(PATIENT_ID, now))
    cards = [
        _assert_conformant(caller.call(hook_request(PATIENT_ID, prefetch=prefetch)))[0]
        for _ in range(3)
    ]
    assert len({card["uuid"] for card in cards}) == 3
    assert all(without_uuids(card) == without_uuids(cards[0]) for card in cards)


def test_dev_mode_queries_an_open_loopback_fhir_server_without_a_token(
    make_settings: MakeSettings, fake_fhir: FakeFhirServer, fhir_base: str
) -> None:
    app = create_app(make_settings(dev_allow_unauthenticated=True))
    body = hook_request(PATIENT_ID, fhir_server=fhir_base)
    response = app.test_client().post(f"/cds-services/{SERVICE_ID}", json=body)
    assert len(_assert_conformant(response)) == 1
    assert fake_fhir.authorizations and set(fake_fhir.authorizations) == {None}


def test_authenticated_call_without_a_token_never_queries_the_fhir_server(
    caller: HookCaller, fake_fhir: FakeFhirServer, fhir_base: str
) -> None:
    response = caller.call(hook_request(PATIENT_ID, fhir_server=fhir_base))
    assert_outcome(response, 412, "PICU-412-DATA-UNAVAILABLE")
    assert fake_fhir.authorizations == []


# --- the PICU gate, the anchor and pending orders ---------------------------------------------


def _audit_line(caplog: pytest.LogCaptureFixture) -> str:
    (line,) = [r.getMessage() for r in caplog.records if r.name == "picu_endotype.audit"]
    return line


def _context_extension(card: dict[str, Any]) -> dict[str, Any]:
    return card["extension"]["io.picu-endotype.assessment"]["context"]


@pytest.mark.parametrize(
    ("encounters", "gate"),
    [
        (lambda now: stay(PATIENT_ID, now - timedelta(hours=40), role="PEDU"), "not-in-picu"),
        (lambda now: stay(PATIENT_ID, now - timedelta(hours=40), role="PEDNICU"), "not-in-picu"),
        (lambda now: [], "no-active-encounter"),
        (
            lambda now: stay(PATIENT_ID, now - timedelta(hours=40), status="finished"),
            "no-active-encounter",
        ),
    ],
    ids=["general-ward", "neonatal-icu", "no-encounter", "finished-encounter"],
)
def test_a_child_outside_the_picu_gets_no_card_and_the_audit_says_why(
    caller: HookCaller,
    child: dict,
    now: datetime,
    caplog: pytest.LogCaptureFixture,
    encounters,
    gate: str,
) -> None:
    prefetch = full_prefetch(
        caller.prefetch_templates(),
        child,
        _observations(PATIENT_ID, now),
        encounters=encounters(now),
    )
    with caplog.at_level(logging.INFO, logger="picu_endotype.audit"):
        response = caller.call(hook_request(PATIENT_ID, prefetch=prefetch))
    assert _assert_conformant(response) == []
    record = json.loads(_audit_line(caplog))
    assert (record["outcome"], record["gate"], record["anchor"]) == (gate, gate, None)
    assert record["pathway"] == "none"


def test_an_encounter_id_in_context_must_be_the_childs_in_progress_picu_encounter(
    caller: HookCaller, child: dict, now: datetime
) -> None:
    prefetch = full_prefetch(caller.prefetch_templates(), child, _observations(PATIENT_ID, now))
    other = hook_request(PATIENT_ID, prefetch=prefetch)
    other["context"]["encounterId"] = "enc-finished-elsewhere"
    assert _assert_conformant(caller.call(other)) == []
    same = hook_request(PATIENT_ID, prefetch=prefetch)
    same["context"]["encounterId"] = "enc-1"
    [card] = _assert_conformant(caller.call(same))
    assert _context_extension(card)["encounter"] == "Encounter/enc-1"


def test_the_card_runs_from_the_picu_admission_and_says_so(
    caller: HookCaller, child: dict, now: datetime
) -> None:
    prefetch = full_prefetch(caller.prefetch_templates(), child, _observations(PATIENT_ID, now))
    [card] = _assert_conformant(caller.call(hook_request(PATIENT_ID, prefetch=prefetch)))
    context = _context_extension(card)
    assert (context["in_picu"], context["anchor"]["source"]) == (True, "picu-admission")
    assert context["hours_since_anchor"] == pytest.approx(40, abs=0.1)
    assert "Day 2 since onset (PICU admission " in card["detail"]


def test_results_from_before_the_picu_admission_alone_never_make_a_current_state(
    caller: HookCaller, child: dict, now: datetime
) -> None:
    before = [
        observation(PATIENT_ID, analyte, value, now - timedelta(hours=60), index=0)
        for analyte, value in (("il6", 1500.0), ("cxcl9", 30000.0), ("ferritin", 300.0))
    ]
    prefetch = full_prefetch(caller.prefetch_templates(), child, before)
    [card] = _assert_conformant(caller.call(hook_request(PATIENT_ID, prefetch=prefetch)))
    extension = card["extension"]["io.picu-endotype.assessment"]
    assert (extension["pathway"], extension["decision"]) == ("insufficient-data", "pre-anchor-only")
    assert card["summary"].startswith("Immune pattern: insufficient data")


def test_with_the_gate_off_a_child_without_an_encounter_is_assessed_over_the_last_window(
    make_settings: MakeSettings, caller: HookCaller, child: dict, now: datetime
) -> None:
    app = create_app(make_settings(context={"picu_gate": False}))
    caller.client = app.test_client()
    prefetch = full_prefetch(
        caller.prefetch_templates(), child, _observations(PATIENT_ID, now), encounters=[]
    )
    [card] = _assert_conformant(caller.call(hook_request(PATIENT_ID, prefetch=prefetch)))
    context = _context_extension(card)
    assert context["in_picu"] is False
    assert context["anchor"]["source"] == "assessment-time"
    assert "No onset or admission time found" in card["detail"]


def test_a_configured_onset_condition_is_queried_and_anchors_the_window(
    make_settings: MakeSettings,
    caller: HookCaller,
    fake_fhir: FakeFhirServer,
    httpserver: HTTPServer,
    fhir_base: str,
    now: datetime,
) -> None:
    sepsis = "http://snomed.info/sct|91302008"
    app = create_app(make_settings(context={"onset_condition_codes": [sepsis]}))
    caller.client = app.test_client()
    fake_fhir.conditions = [
        {
            "resourceType": "Condition",
            "id": "sepsis-1",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "91302008"}]},
            "subject": {"reference": f"Patient/{PATIENT_ID}"},
            "onsetDateTime": (now - timedelta(hours=32)).isoformat(),
        }
    ]
    body = hook_request(PATIENT_ID, fhir_server=fhir_base, fhir_authorization=fhir_authorization())
    [card] = _assert_conformant(caller.call(body))
    paths = {request.path for request, _ in httpserver.log}
    searched = {"Condition", "Encounter", "Observation", "ServiceRequest", *PHOENIX_SEARCHES}
    assert paths == {f"/fhir/{name}" for name in searched} | {f"/fhir/Patient/{PATIENT_ID}"}
    context = _context_extension(card)
    assert context["anchor"]["source"] == "condition"
    assert context["hours_since_anchor"] == pytest.approx(32, abs=0.1)
    assert "Day 2 since onset (recorded onset " in card["detail"]


def test_an_ordered_marker_is_shown_pending_and_never_suggested(
    caller: HookCaller, child: dict, now: datetime
) -> None:
    results = [
        o for o in _observations(PATIENT_ID, now) if not o["id"].startswith(f"{PATIENT_ID}-cxcl9")
    ]
    results = [o for o in results if "-ifng-" not in o["id"]]
    cxcl9 = lab_order(PATIENT_ID, "cxcl9", now - timedelta(hours=3))
    prefetch = full_prefetch(caller.prefetch_templates(), child, results, orders=[cxcl9])
    [card] = _assert_conformant(caller.call(hook_request(PATIENT_ID, prefetch=prefetch)))
    assert "Ordered, pending: CXCL9." in card["detail"]
    assert card["extension"]["io.picu-endotype.assessment"]["pending"] == ["cxcl9"]
    labels = [suggestion["label"] for suggestion in card.get("suggestions", [])]
    assert labels == ["Consider ordering: Interferon-gamma"]
