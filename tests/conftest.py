"""Fixtures shared by every test package."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from cds_service.storage import Database, upgrade
from devtools.sandbox_postgres import PostgresServer, PostgresUnavailable
from tests.support.databases import ENGINES, fresh_database_url
from tests.support.leak_guard import SESSION_GUARD, LeakGuard, register_secret

FIXTURES = Path(__file__).parent / "fixtures"
CONFORMANCE = FIXTURES / "conformance"
PROJECT_LOGGERS = ("cds_service", "fhir_mappings", "model", "picu_endotype")


def _register_conformance_secrets() -> None:
    """The spec's own example access token and JWT are secrets too, wherever a test sends them."""
    example = json.loads((CONFORMANCE / "spec-2.0.1-request-fhirAuthorization.json").read_text())
    register_secret(example["fhirAuthorization"]["access_token"])
    register_secret((CONFORMANCE / "spec-2.0.1-jwt-example.txt").read_text().strip())


def _sent_secrets(kwargs: dict[str, Any]) -> list[str]:
    """The bearer token and fhirAuthorization access token a test-client call is about to send."""
    found: list[str] = []
    authorization = dict(kwargs.get("headers") or {}).get("Authorization", "")
    scheme, _, token = str(authorization).partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        found.append(token.strip())
    body = kwargs.get("json")
    if body is None and isinstance(kwargs.get("data"), bytes | str):
        try:
            body = json.loads(kwargs["data"])
        except ValueError:
            body = None
    fhir_authorization = body.get("fhirAuthorization") if isinstance(body, dict) else None
    if isinstance(fhir_authorization, dict) and isinstance(
        fhir_authorization.get("access_token"), str
    ):
        found.append(fhir_authorization["access_token"])
    return [secret for secret in found if len(secret) >= 8]


def _checked_open(original: Any, guard: LeakGuard) -> Any:
    """Wrap FlaskClient.open: register the tokens a call sends, then search what comes back."""

    def open_and_check(self: FlaskClient, *args: Any, **kwargs: Any) -> Any:
        for secret in _sent_secrets(kwargs):
            guard.register_secret(secret)
        response = original(self, *args, **kwargs)
        shown = response.get_data().decode("utf-8", "replace") + str(response.headers)
        leaked = guard.leaks_in_text(shown)
        if leaked:
            raise AssertionError(f"a response echoed registered secrets: {leaked}")
        return response

    return open_and_check


@pytest.fixture(scope="session", autouse=True)
def leak_guard() -> Iterator[LeakGuard]:
    """Capture every log record at DEBUG for the session; fail if any holds a registered secret."""
    _register_conformance_secrets()
    handler = SESSION_GUARD.handler()
    root = logging.getLogger()
    saved_levels = {name: logging.getLogger(name).level for name in ("", *PROJECT_LOGGERS)}
    root.addHandler(handler)
    for name in ("", *PROJECT_LOGGERS):
        logging.getLogger(name).setLevel(logging.DEBUG)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FlaskClient, "open", _checked_open(FlaskClient.open, SESSION_GUARD))
        yield SESSION_GUARD
    root.removeHandler(handler)
    for name, level in saved_levels.items():
        logging.getLogger(name).setLevel(level)
    leaks = SESSION_GUARD.leaks_in_logs()
    if leaks:
        pytest.fail("secrets found in captured logs:\n" + "\n".join(leaks), pytrace=False)


@pytest.fixture(autouse=True)
def _no_secret_logged_by_this_test(leak_guard: LeakGuard) -> Iterator[None]:
    """Fail the test during whose run a registered secret reached the logs."""
    start = len(leak_guard.records)
    yield
    leaks = leak_guard.leaks_in_logs(since=start)
    if leaks:
        pytest.fail("secrets found in captured logs:\n" + "\n".join(leaks), pytrace=False)


@pytest.fixture(autouse=True)
def _clean_environment() -> Iterator[None]:
    """No test sees another's PICU_ENDOTYPE_* variables."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("PICU_ENDOTYPE_")}
    for name in saved:
        del os.environ[name]
    yield
    for name in [k for k in os.environ if k.startswith("PICU_ENDOTYPE_")]:
        del os.environ[name]
    os.environ.update(saved)


@pytest.fixture
def conformance_example():
    """Load one of the CDS Hooks 2.0.1 spec examples by file name."""

    def load(name: str) -> Any:
        path = CONFORMANCE / name
        return path.read_text() if path.suffix == ".txt" else json.loads(path.read_text())

    return load


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server on loopback for the session; a test fails if it cannot start."""
    try:
        server = PostgresServer().start()
    except PostgresUnavailable as error:
        pytest.fail(f"PostgreSQL is required for this test and could not start: {error}")
    yield server
    server.stop()


@pytest.fixture(params=ENGINES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database, once per engine: SQLite and PostgreSQL."""
    server = request.getfixturevalue("postgres_server") if request.param == "postgresql" else None
    return fresh_database_url(request.param, tmp_path, server)


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """A migrated database, once per engine."""
    opened = Database(database_url)
    upgrade(opened)
    yield opened
    opened.close()
