"""POST /cds-services/{id}/feedback: validated, stored once per distinct item, with the caller."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from cds_service.settings import Settings
from cds_service.storage import Database
from cds_service.storage.schema import feedback, metadata
from tests.cds_service.conftest import MakeSettings
from tests.cds_service.outcomes import assert_outcome
from tests.support.hook_caller import SERVICE_ID, HookCaller

SPEC_FEEDBACK = (
    "spec-2.0.1-feedback-accepted.json",
    "spec-2.0.1-feedback-overridden.json",
    "spec-2.0.1-feedback-overridden-with-reason.json",
)


@pytest.fixture
def settings(make_settings: MakeSettings, database_url: str) -> Settings:
    """The service's settings, once with SQLite and once with PostgreSQL."""
    return make_settings(database_url=database_url, audit={"pseudonym_key": "feedback-test"})


def _rows(settings: Settings) -> list[dict[str, Any]]:
    database = Database(settings.database_url_text)
    try:
        with database.begin() as connection:
            query = select(feedback).order_by(feedback.c.id)
            return [dict(row._mapping) for row in connection.execute(query)]
    finally:
        database.close()


def _database_dump(settings: Settings) -> str:
    """Every value of every table, as text."""
    database = Database(settings.database_url_text)
    try:
        with database.begin() as connection:
            return repr(
                [
                    [tuple(row) for row in connection.execute(select(table))]
                    for table in metadata.sorted_tables
                ]
            )
    finally:
        database.close()


def test_the_three_spec_feedback_examples_are_each_stored(
    settings: Settings, caller: HookCaller, conformance_example
) -> None:
    for name in SPEC_FEEDBACK:
        response = caller.feedback(conformance_example(name))
        assert response.status_code == 200
        assert response.get_json() == {"stored": 1, "duplicates": 0}
    assert len(_rows(settings)) == 3


def test_the_same_feedback_body_twice_is_stored_once(
    settings: Settings, caller: HookCaller, conformance_example
) -> None:
    body = conformance_example("spec-2.0.1-feedback-accepted.json")
    assert caller.feedback(body).get_json() == {"stored": 1, "duplicates": 0}
    second = caller.feedback(body)
    assert second.status_code == 200
    assert second.get_json() == {"stored": 0, "duplicates": 1}
    assert len(_rows(settings)) == 1


def test_a_second_outcome_for_the_same_card_is_stored_too(
    settings: Settings, caller: HookCaller, conformance_example
) -> None:
    body = conformance_example("spec-2.0.1-feedback-overridden.json")
    caller.feedback(body)
    body["feedback"][0]["outcomeTimestamp"] = "2020-12-11T00:05:00Z"
    assert caller.feedback(body).get_json() == {"stored": 1, "duplicates": 0}
    assert len(_rows(settings)) == 2


def test_stored_feedback_keeps_issuer_and_jti_but_never_the_jwt(
    settings: Settings, caller: HookCaller, conformance_example
) -> None:
    path = f"/cds-services/{SERVICE_ID}/feedback"
    token = caller.token(path, extra_claims={"tenant": "picu-north"})
    body = conformance_example("spec-2.0.1-feedback-overridden-with-reason.json")
    response = caller.client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    [row] = _rows(settings)
    assert row["iss"] == "https://ehr.test"
    assert row["tenant"] == "picu-north"
    assert row["jti"]
    assert row["override_code"] == "d7ecf885"
    assert row["user_comment"] == "A comment entered by the clinician."
    assert row["received_at"].utcoffset() == timedelta(0)
    assert all(token not in str(value) for value in row.values())
    assert token not in _database_dump(settings)


def test_accepted_feedback_stores_the_accepted_suggestion_ids(
    settings: Settings, caller: HookCaller, conformance_example
) -> None:
    caller.feedback(conformance_example("spec-2.0.1-feedback-accepted.json"))
    [row] = _rows(settings)
    assert row["outcome"] == "accepted"
    assert "e56e1945-20b3-4393-8503-a1a20fd73152" in row["accepted_suggestions"]


@pytest.mark.parametrize(
    "change",
    [
        {"outcome": "accepted"},  # cds-fb-2: without acceptedSuggestions
        {"outcome": "ignored"},  # cds-fb-1
        {"overrideReason": {}},  # cds-fb-3
        {"outcomeTimestamp": None},
    ],
)
def test_invalid_feedback_is_400_and_nothing_is_stored(
    settings: Settings, caller: HookCaller, conformance_example, change: dict[str, Any]
) -> None:
    body = conformance_example("spec-2.0.1-feedback-overridden.json")
    body["feedback"][0].update(change)
    assert_outcome(caller.feedback(body), 400, "PICU-400-INVALID-FEEDBACK")
    assert len(_rows(settings)) == 0


def test_feedback_not_json_is_415(caller: HookCaller) -> None:
    response = caller.feedback(None, raw=b"feedback", content_type="text/plain")
    assert_outcome(response, 415, "PICU-415-NOT-JSON")


def test_feedback_truncated_json_is_400(caller: HookCaller) -> None:
    assert_outcome(caller.feedback(None, raw=b'{"feedback": ['), 400, "PICU-400-MALFORMED-JSON")


def test_feedback_for_an_unknown_service_is_404(caller: HookCaller, conformance_example) -> None:
    body = conformance_example("spec-2.0.1-feedback-overridden.json")
    response = caller.feedback(body, service_id="another-service")
    assert_outcome(response, 404, "PICU-404-UNKNOWN-SERVICE")


def test_feedback_with_a_token_for_the_service_url_is_401(
    caller: HookCaller, conformance_example
) -> None:
    path = f"/cds-services/{SERVICE_ID}"
    response = caller.client.post(
        f"{path}/feedback",
        json=conformance_example("spec-2.0.1-feedback-overridden.json"),
        headers=caller.headers(path),
    )
    assert response.status_code == 401


def test_feedback_store_survives_an_app_restart(
    settings: Settings, caller: HookCaller, conformance_example
) -> None:
    from cds_service.app import create_app

    body = conformance_example("spec-2.0.1-feedback-overridden.json")
    caller.feedback(body)
    caller.client = create_app(settings).test_client()
    assert caller.feedback(body).get_json() == {"stored": 0, "duplicates": 1}
