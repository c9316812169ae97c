"""The leak guard itself: it notices a secret wherever a log record or response carries it."""

from __future__ import annotations

import json
import logging

import pytest
from flask import Flask

from tests.conftest import _sent_secrets
from tests.support.leak_guard import SESSION_GUARD, LeakGuard
from tests.support.tokens import fhir_authorization, make_token

SECRET = "eyJhbGciOiJFUzM4NCJ9.secret-payload.signature"


@pytest.fixture
def guarded_logger():
    """A fresh guard with a registered secret, capturing one private logger."""
    guard = LeakGuard()
    guard.register_secret(SECRET)
    logger = logging.getLogger("tests.leak_guard_probe")
    logger.propagate = False
    handler = guard.handler()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield guard, logger
    logger.removeHandler(handler)
    logger.propagate = True


def test_secret_in_a_debug_message_is_found(guarded_logger):
    guard, logger = guarded_logger

    logger.debug(f"Authorization: Bearer {SECRET}")

    assert len(guard.leaks_in_logs()) == 1


def test_secret_in_format_arguments_is_found(guarded_logger):
    guard, logger = guarded_logger

    logger.info("calling with %s", {"access_token": SECRET})

    assert guard.leaks_in_logs()


def test_secret_in_exception_text_is_found(guarded_logger):
    guard, logger = guarded_logger

    try:
        raise ValueError(f"bad token {SECRET}")
    except ValueError:
        logger.exception("refused")

    assert guard.leaks_in_logs()


def test_clean_records_and_earlier_leaks_are_told_apart(guarded_logger):
    guard, logger = guarded_logger
    logger.warning(SECRET)
    start = len(guard.records)

    logger.warning("CDS client refused: iss='https://ehr.example.org' jti='abc'")

    assert guard.leaks_in_logs(since=start) == []
    assert len(guard.leaks_in_logs()) == 1


def test_failure_messages_do_not_repeat_the_secret(guarded_logger):
    guard, logger = guarded_logger
    logger.error(SECRET)

    assert SECRET not in "".join(guard.leaks_in_logs())
    assert SECRET not in "".join(guard.leaks_in_text(f"body {SECRET}"))


def test_short_strings_cannot_be_registered():
    with pytest.raises(ValueError):
        LeakGuard().register_secret("abc")


def test_every_test_token_and_access_token_is_registered(es_key):
    token = make_token(es_key, iss="https://ehr.example.org", aud="https://cds.example.org/x")
    authorization = fhir_authorization()

    assert token in SESSION_GUARD.secrets
    assert authorization["access_token"] in SESSION_GUARD.secrets


def test_a_response_echoing_a_registered_secret_fails_the_test_client():
    access_token = fhir_authorization()["access_token"]
    app = Flask("echo")

    @app.post("/echo")
    def echo():
        return {"received": access_token}

    with pytest.raises(AssertionError, match="echoed registered secrets"):
        app.test_client().post("/echo")


def test_tokens_a_test_client_call_sends_are_registered_before_it_is_sent():
    jwt_text = "eyJhbGciOiJSUzM4NCJ9.unregistered-before.sig"
    access_token = "access-token-put-in-by-hand-123"
    app = Flask("sink")

    @app.post("/sink")
    def sink():
        return "", 204

    app.test_client().post(
        "/sink",
        json={"fhirAuthorization": {"access_token": access_token}},
        headers={"Authorization": f"Bearer {jwt_text}"},
    )

    assert {jwt_text, access_token} <= SESSION_GUARD.secrets


def test_raw_json_bodies_are_searched_for_access_tokens():
    body = json.dumps({"fhirAuthorization": {"access_token": "raw-body-token-456"}}).encode()

    assert _sent_secrets({"data": body, "headers": {"Authorization": "Basic abc"}}) == [
        "raw-body-token-456"
    ]
