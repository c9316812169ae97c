"""A served instance's log cannot be forged through paths, claims or OperationOutcome codes."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import requests

from cds_service.discovery import SERVICE_ID
from devtools import (
    LOOPBACK,
    DemoEhr,
    free_port,
    hook_request,
    running_service,
    write_service_config,
)
from tests.support.hostile_fhir import HostileFhir
from tests.support.leak_guard import register_secret

FORGED = "FORGED picu_endotype.audit hook hookInstance=FORGED outcome=standard"
FORGED_JSON = '{"logger":"picu_endotype.audit","event":"hook","hookInstance":"FORGED"}'


def forged_token(ehr: DemoEhr, audience: str) -> str:
    """A valid token for `audience` whose jti and tenant claims carry line breaks."""
    now = int(time.time())
    claims = {
        "iss": ehr.issuer,
        "aud": audience,
        "iat": now,
        "exp": now + 300,
        "jti": f"{uuid.uuid4()}\n{FORGED}",
        "tenant": f"t\r\n{FORGED_JSON}\u2028{FORGED}",
    }
    headers = {"kid": ehr.kid, "typ": "JWT"}
    return register_secret(jwt.encode(claims, ehr.private_key, algorithm="ES384", headers=headers))


def forged_outcome() -> dict:
    """An OperationOutcome whose issue code tries to start a new log line."""
    issue = {"severity": "error", "code": f"exception\n{FORGED}\u2028{FORGED_JSON}"}
    return {"resourceType": "OperationOutcome", "id": "oo-1", "issue": [issue]}


@pytest.fixture(scope="module")
def served_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Serve, send every forging attempt, stop, and return the whole log."""
    workdir = tmp_path_factory.mktemp("forging")
    ehr, port = DemoEhr(), free_port()
    service_url = f"http://{LOOPBACK}:{port}"
    hook_url = f"{service_url}/cds-services/{SERVICE_ID}"
    log_path = workdir / "service.log"
    with HostileFhir() as fhir:
        fhir.observations = [forged_outcome()]
        config = write_service_config(workdir, port=port, ehr=ehr, fhir_base=fhir.base_url)
        access_token = register_secret(f"access-{uuid.uuid4().hex}")
        with running_service(config, service_url, log_path), requests.Session() as session:
            forged_path = f"{service_url}/cds-services/x%0a{FORGED.replace(' ', '%20')}"
            assert session.post(forged_path, json={}, timeout=30).status_code == 401
            body = hook_request(
                "forging-1",
                fhir.base_url,
                prefetch={"panel": forged_outcome()},
                access_token=access_token,
            )
            headers = {"Authorization": f"Bearer {forged_token(ehr, hook_url)}"}
            response = session.post(hook_url, json=body, headers=headers, timeout=30)
            assert response.status_code == 412, response.text
    yield Path(log_path).read_text(errors="replace")


@pytest.mark.slow
def test_no_log_line_starts_with_a_forged_record(served_log: str) -> None:
    lines = served_log.split("\n")

    assert not [line for line in lines if line.lstrip().startswith(("FORGED", '{"logger"'))]
    assert not [line for line in lines if "\r" in line or "\u2028" in line or "\x85" in line]


@pytest.mark.slow
def test_every_forging_attempt_was_logged_escaped_on_its_own_line(served_log: str) -> None:
    assert "/cds-services/x\\nFORGED picu_endotype.audit" in served_log  # the access log
    assert "\\nFORGED picu_endotype.audit hook" in served_log  # the jti
    assert "t\\r\\n{" in served_log  # the tenant
    assert "exception\\nFORGED" in served_log  # OperationOutcome codes, prefetch and FHIR


@pytest.mark.slow
def test_the_audit_trail_is_json_lines_with_no_forged_record(served_log: str) -> None:
    records = [json.loads(line) for line in served_log.splitlines() if line.startswith("{")]
    audit = [record for record in records if record.get("logger") == "picu_endotype.audit"]

    assert [record["outcome"] for record in audit] == ["PICU-412-DATA-UNAVAILABLE"]
    assert all(record.get("hookInstance") != "FORGED" for record in records)
