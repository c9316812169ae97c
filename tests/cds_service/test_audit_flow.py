"""The hook flow writes one audit record per answer, honours silent mode and moves the metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from flask import Flask
from prometheus_client import REGISTRY
from sqlalchemy import select

from cds_service.app import create_app
from cds_service.settings import Settings
from cds_service.state import app_state
from cds_service.storage import Database
from cds_service.storage.schema import audit_record
from devtools.sandbox_postgres import PostgresServer
from tests.cds_service.conftest import CLIENT_ISS, PUBLIC_BASE_URL, MakeSettings
from tests.cds_service.fhir_data import full_prefetch, patient, searchset, stay, years_before
from tests.cds_service.test_feedback import _database_dump
from tests.cds_service.test_hooks import PATIENT_ID, _observations
from tests.support.hook_caller import SERVICE_ID, HookCaller, hook_request
from tests.support.leak_guard import register_secret
from tests.support.tokens import SigningKey

PILOT = "Practitioner/pilot"
SITE_KEY = "audit-flow-site-key"


@pytest.fixture
def settings(make_settings: MakeSettings, database_url: str) -> Settings:
    return make_settings(database_url=database_url, audit={"pseudonym_key": SITE_KEY})


def _records(settings: Settings) -> list[dict[str, Any]]:
    database = Database(settings.database_url_text)
    try:
        with database.begin() as connection:
            query = select(audit_record).order_by(audit_record.c.id)
            return [dict(row._mapping) for row in connection.execute(query)]
    finally:
        database.close()


def _full_body(app: Flask, user_id: str = "Practitioner/picu-attending") -> dict[str, Any]:
    now = datetime.now(UTC)
    child = patient(PATIENT_ID, years_before(now, 6.4))
    body = hook_request(
        PATIENT_ID,
        prefetch=full_prefetch(
            dict(app_state(app).services[SERVICE_ID].prefetch),
            child,
            _observations(PATIENT_ID, now),
        ),
        encounter_id="enc-1",
    )
    body["context"]["userId"] = user_id
    return body


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_each_card_returned_has_one_audit_record_with_its_basis(
    app: Flask, caller: HookCaller, settings: Settings
):
    body = _full_body(app)

    card = caller.call(body).get_json()["cards"][0]

    [record] = _records(settings)
    assert record["card_uuid"] == card["uuid"]
    assert record["hook_instance"] == body["hookInstance"]
    assert record["outcome"] == "card" and record["returned"] is True
    assert record["user_id"] == "Practitioner/picu-attending"
    assert record["summary"] == card["summary"]
    assert record["pathway"] == card["extension"]["io.picu-endotype.assessment"]["pathway"]
    assert record["data_source"] == "prefetch"
    assert {item["analyte"] for item in record["inputs"]} >= {"il6", "ferritin", "crp"}
    assert all(item["observation_id"] for item in record["inputs"])
    # the test's Observation ids embed the patient id; every other field must not hold it
    identifying = {key: value for key, value in record.items() if key not in ("inputs",)}
    assert PATIENT_ID not in repr(identifying) and "enc-1" not in repr(record)
    assert record["patient"] != record["encounter"]


def test_no_stored_row_holds_the_client_jwt_or_the_fhir_access_token(
    app: Flask, caller: HookCaller, settings: Settings, fhir_base: str
):
    access_token = register_secret("audit-flow-fhir-access-token-8e2f")
    body = _full_body(app)
    body["fhirServer"] = fhir_base
    body["fhirAuthorization"] = {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/Observation.read",
        "subject": "picu-endotype",
    }
    jwt = caller.token(f"/cds-services/{SERVICE_ID}")

    response = caller.call(body, headers={"Authorization": f"Bearer {jwt}"})

    assert response.status_code == 200 and response.get_json()["cards"]
    stored = _database_dump(settings)
    assert "card" in stored  # the audit record is there
    assert access_token not in stored and jwt not in stored
    assert jwt.split(".")[2] not in stored  # not even the signature alone


def test_the_audit_record_holds_the_gate_the_anchor_and_the_persistence(
    app: Flask, caller: HookCaller, settings: Settings
):
    caller.call(_full_body(app))

    [record] = _records(settings)
    assert record["gate_reason"] == "in-picu"
    assert record["anchor"]["source"] == "picu-admission"
    assert set(record["anchor"]) == {"time", "source"}  # never the detail, which names ids
    assert record["persistence"] in {"single-sample", "new", "persistent", "never-high"}


def test_a_child_outside_the_picu_is_audited_with_the_gates_reason_and_no_card(
    app: Flask, caller: HookCaller, settings: Settings
):
    body = _full_body(app)
    now = datetime.now(UTC)
    ward = stay(PATIENT_ID, now - timedelta(hours=30), role="PEDU")
    body["prefetch"]["encounters"] = searchset(ward)

    assert caller.call(body).get_json() == {"cards": []}
    [record] = _records(settings)
    assert (record["outcome"], record["gate_reason"], record["returned"]) == (
        "not-in-picu",
        "not-in-picu",
        False,
    )
    assert record["card_uuid"] is None and record["anchor"] is None
    assert "enc-1" not in repr(record)


def test_a_failed_hook_is_audited_without_a_card(caller: HookCaller, settings: Settings):
    response = caller.call(hook_request(PATIENT_ID))  # no prefetch, no FHIR server: 412

    assert response.status_code == 412
    [record] = _records(settings)
    assert (record["outcome"], record["http_status"], record["card_uuid"]) == (
        "error:412",
        412,
        None,
    )
    assert record["returned"] is False


def test_silent_mode_answers_no_card_but_audits_the_card_it_would_have_shown(
    make_settings: MakeSettings, database_url: str, signing_key: SigningKey
):
    settings = make_settings(
        database_url=database_url,
        audit={"pseudonym_key": SITE_KEY},
        silent={"enabled": True, "pilot_users": [PILOT]},
    )
    app = create_app(settings)
    caller = HookCaller(app.test_client(), signing_key, CLIENT_ISS, PUBLIC_BASE_URL)

    silent = caller.call(_full_body(app)).get_json()
    pilot = caller.call(_full_body(app, user_id=PILOT)).get_json()

    assert silent == {"cards": []}
    assert len(pilot["cards"]) == 1
    first, second = _records(settings)
    assert (first["outcome"], first["returned"]) == ("silent", False)
    assert first["card_uuid"] and first["pathway"] == second["pathway"]
    assert (second["outcome"], second["returned"]) == ("card", True)
    assert second["card_uuid"] == pilot["cards"][0]["uuid"]


def test_the_audit_trail_can_be_switched_off(
    make_settings: MakeSettings, database_url: str, signing_key: SigningKey
):
    settings = make_settings(database_url=database_url, audit={"enabled": False})
    app = create_app(settings)
    caller = HookCaller(app.test_client(), signing_key, CLIENT_ISS, PUBLIC_BASE_URL)

    assert len(caller.call(_full_body(app)).get_json()["cards"]) == 1
    assert app_state(app).audit_trail is None
    assert _records(settings) == []


def test_hook_and_refusal_counters_move_for_real_calls(app: Flask, caller: HookCaller):
    pathway_labels = {"outcome": "card", "source": "prefetch"}
    body = _full_body(app)
    before_hooks = sum(
        _sample("picu_endotype_hooks_total", pathway=pathway, **pathway_labels)
        for pathway in ("biomarker-guided", "standard", "insufficient-data")
    )
    before_refusals = _sample("picu_endotype_jwt_refusals_total", reason="missing")
    before_replays = _sample("picu_endotype_jwt_refusals_total", reason="replayed")
    before_latency = _sample("picu_endotype_hook_duration_seconds_count", outcome="card")

    headers = caller.headers("/cds-services/picu-immune-endotype")
    caller.client.post("/cds-services/picu-immune-endotype", json=body, headers=headers)
    caller.client.post("/cds-services/picu-immune-endotype", json=body, headers=headers)
    caller.client.post("/cds-services/picu-immune-endotype", json=body)

    after_hooks = sum(
        _sample("picu_endotype_hooks_total", pathway=pathway, **pathway_labels)
        for pathway in ("biomarker-guided", "standard", "insufficient-data")
    )
    assert after_hooks - before_hooks == 1
    assert (
        _sample("picu_endotype_hook_duration_seconds_count", outcome="card") - before_latency == 1
    )
    assert _sample("picu_endotype_jwt_refusals_total", reason="replayed") - before_replays == 1
    assert _sample("picu_endotype_jwt_refusals_total", reason="missing") - before_refusals == 1


def test_metrics_on_the_main_port_need_the_bearer_token(
    make_settings: MakeSettings, database_url: str
):
    token = "scrape-token-0123456789"
    app = create_app(
        make_settings(
            database_url=database_url,
            audit={"pseudonym_key": SITE_KEY},
            metrics={"bearer_token": token},
        )
    )
    client = app.test_client()

    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 404
    scraped = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert scraped.status_code == 200
    assert "picu_endotype_hooks" in scraped.get_data(as_text=True)


def test_metrics_are_not_served_on_the_main_port_without_a_token(app: Flask):
    assert app.test_client().get("/metrics").status_code == 404


@pytest.mark.slow
def test_healthz_is_503_when_the_database_does_not_answer(
    make_settings: MakeSettings, postgres_server: PostgresServer
):
    url = postgres_server.create_database("healthz_gone")
    app = create_app(make_settings(database_url=url, audit={"pseudonym_key": SITE_KEY}))
    client = app.test_client()
    assert client.get("/healthz").get_json()["database"] == "ok"
    with psycopg.connect(postgres_server.url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'healthz_gone'"
        )
        admin.execute("DROP DATABASE healthz_gone")

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.get_json()["database"] == "unavailable"
    assert client.get("/livez").status_code == 200
