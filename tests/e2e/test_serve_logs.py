"""`picu-endotype serve` as deployed: its logs keep an audit trail and never a token."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from cds_service.discovery import SERVICE_ID
from devtools import (
    LOOPBACK,
    DemoEhr,
    SandboxFhir,
    build_prefetch,
    discover,
    free_port,
    hook_request,
    running_service,
    write_service_config,
)

pytestmark = pytest.mark.slow  # the service under gunicorn and a sandbox FHIR server


@dataclass
class ServedCalls:
    """What was sent to a served instance, and the log it wrote."""

    secrets_sent: list[str]
    hook_instances: list[str]
    statuses: list[int]
    log: str


def _post_hook(session: requests.Session, url: str, token: str, body: dict) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    return session.post(url, json=body, headers=headers, timeout=60).status_code


@pytest.fixture(scope="module")
def served_calls(
    sandbox_fhir: SandboxFhir,
    scenario_patients: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServedCalls]:
    """Serve, call it as an EHR (accepted, replayed and forged JWTs), stop, read the log."""
    workdir = tmp_path_factory.mktemp("serve")
    ehr, port = DemoEhr(), free_port()
    service_url = f"http://{LOOPBACK}:{port}"
    config = write_service_config(workdir, port=port, ehr=ehr, fhir_base=sandbox_fhir.base_url)
    log_path = workdir / "service.log"
    hook_url = f"{service_url}/cds-services/{SERVICE_ID}"
    patient_id = scenario_patients["hyperinflammatory"]
    access_token = f"access-{secrets.token_urlsafe(24)}"
    calls = ServedCalls([access_token], [], [], "")
    with running_service(config, service_url, log_path), requests.Session() as session:
        templates = discover(session, service_url, ehr)["prefetch"]
        prefetch = build_prefetch(sandbox_fhir.base_url, templates, {"patientId": patient_id})
        bodies = [
            hook_request(patient_id, sandbox_fhir.base_url, prefetch=prefetch),
            hook_request(patient_id, sandbox_fhir.base_url, access_token=access_token),
        ]
        first, second = ehr.token(hook_url), ehr.token(hook_url)
        forged = DemoEhr(issuer=ehr.issuer, kid=ehr.kid).token(hook_url)  # right kid, wrong key
        sequence = [
            (bodies[0], first),
            (bodies[1], second),
            (bodies[1], first),
            (bodies[1], forged),
        ]
        for body, jwt_sent in sequence:
            calls.secrets_sent.append(jwt_sent)
            calls.hook_instances.append(body["hookInstance"])
            calls.statuses.append(_post_hook(session, hook_url, jwt_sent, body))
    calls.log = Path(log_path).read_text(errors="replace")
    yield calls


def test_served_hook_answers_prefetch_and_queries_and_refuses_a_replay_or_forgery(
    served_calls: ServedCalls,
) -> None:
    assert served_calls.statuses == [200, 200, 401, 401]


def audit_records(log: str) -> list[dict]:
    """The JSON audit records of a served log, one per line."""
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return [record for record in records if record.get("logger") == "picu_endotype.audit"]


def test_served_log_has_an_audit_line_for_each_answered_hook(served_calls: ServedCalls) -> None:
    audited = {record["hookInstance"]: record for record in audit_records(served_calls.log)}
    for hook_instance in served_calls.hook_instances[:2]:
        assert audited[hook_instance]["event"] == "hook"
        assert audited[hook_instance]["outcome"] == "card"
        assert audited[hook_instance]["pathway"] in {"biomarker-guided", "standard"}


def test_served_log_never_contains_a_jwt_or_access_token(served_calls: ServedCalls) -> None:
    assert served_calls.log.strip()
    leaked = [secret[:8] for secret in served_calls.secrets_sent if secret in served_calls.log]
    assert leaked == []
