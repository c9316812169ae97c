"""Hooks against a hostile FHIR server: bounded 412s with clean reasons, honest partial cards."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cds_service import hooks
from cds_service.app import create_app
from cds_service.settings import ClientSettings, FhirSettings, Settings
from tests.cds_service.conftest import CLIENT_ISS, PUBLIC_BASE_URL
from tests.cds_service.fhir_data import full_prefetch, observation, patient, years_before
from tests.cds_service.outcomes import assert_outcome
from tests.support.hook_caller import HookCaller, hook_request
from tests.support.hostile_fhir import MIB, Fault, HostileFhir, lab_observation
from tests.support.memory import rss_growth
from tests.support.tokens import SigningKey, fhir_authorization, jwks

PATIENT_ID = "hostile-1"
DEADLINE = 2.0
SLACK = 2.0  # generous: proves the answer is bounded, not that it is fast


@pytest.fixture
def hostile() -> Iterator[HostileFhir]:
    server = HostileFhir().start()
    yield server
    server.stop()


def service_for(
    hostile: HostileFhir, signing_key: SigningKey, tmp_path: Any, **fhir: Any
) -> HookCaller:
    client = ClientSettings(
        iss=CLIENT_ISS, jwks=json.dumps(jwks(signing_key)), fhir_servers=[hostile.base_url]
    )
    fhir_settings = FhirSettings(
        **{"timeout_seconds": 1.5, "deadline_seconds": DEADLINE, "max_workers": 4, **fhir}
    )
    settings = Settings(
        public_base_url=PUBLIC_BASE_URL,
        clients=[client],
        insecure_http_fhir_hosts=["127.0.0.1"],
        state_dir=tmp_path / "state",
        fhir=fhir_settings,
    )
    app = create_app(settings)
    return HookCaller(app.test_client(), signing_key, CLIENT_ISS, PUBLIC_BASE_URL)


def il6_from_the_server(caller: HookCaller, hostile: HostileFhir) -> dict[str, Any]:
    """A hook whose prefetch holds everything but IL-6, which the service must query."""
    templates = caller.prefetch_templates()
    now = datetime.now(UTC)
    results = [
        observation(PATIENT_ID, name, value, now - timedelta(hours=6))
        for name, value in {"ferritin": 120.0, "crp": 3.0, "cxcl9": 300.0, "ifng": 2.0}.items()
    ]
    prefetch = full_prefetch(templates, patient(PATIENT_ID, years_before(now, 5)), results)
    del prefetch["panel"]
    return hook_request(
        PATIENT_ID,
        prefetch=prefetch,
        fhir_server=hostile.base_url,
        fhir_authorization=fhir_authorization(),
    )


def diagnostics(response: Any) -> str:
    return response.get_json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    ("fault", "size", "reason"),
    [
        (Fault.GZIP_BOMB, 300 * MIB, "reply was larger than this service accepts"),
        (Fault.DEFLATE_BOMB, 300 * MIB, "reply was larger than this service accepts"),
        (Fault.OVERSIZED, 60 * MIB, "reply was larger than this service accepts"),
        (Fault.EMPTY_ENTRIES, 2_000_000, "reply was larger than this service accepts"),
        (Fault.IGNORES_COUNT, 12 * MIB, "reply was larger than this service accepts"),
        (Fault.DEEP, 100_000, "reply was nested too deeply"),
    ],
)
def test_a_hostile_reply_is_a_prompt_412_with_a_clean_reason(
    hostile: HostileFhir,
    signing_key: SigningKey,
    tmp_path: Any,
    fault: Fault,
    size: int,
    reason: str,
) -> None:
    hostile.fault, hostile.size = fault, size
    hostile.prepare()
    caller = service_for(hostile, signing_key, tmp_path)
    body = il6_from_the_server(caller, hostile)

    started = time.monotonic()
    with rss_growth() as growth:
        response = caller.call(body)

    assert time.monotonic() - started < DEADLINE + SLACK
    assert growth.grown_mib < 100
    assert_outcome(response, 412, "PICU-412-DATA-UNAVAILABLE")
    assert diagnostics(response) == (
        "PICU-412-DATA-UNAVAILABLE: The patient's data could not be obtained: "
        f"the FHIR server's {reason} (data: panel)"
    )


@pytest.mark.slow
@pytest.mark.parametrize("fault", [Fault.DRIP, Fault.DRIP_HEADERS])
def test_a_dripping_server_gets_a_412_at_the_deadline_and_its_connection_closed(
    hostile: HostileFhir, signing_key: SigningKey, tmp_path: Any, fault: Fault
) -> None:
    hostile.fault, hostile.interval = fault, 0.05
    caller = service_for(hostile, signing_key, tmp_path, timeout_seconds=DEADLINE)

    started = time.monotonic()
    response = caller.call(il6_from_the_server(caller, hostile))

    assert time.monotonic() - started < DEADLINE + SLACK
    assert_outcome(response, 412, "PICU-412-DATA-UNAVAILABLE")
    assert "did not answer in time" in diagnostics(response)
    assert hostile.wait_until_idle(timeout=SLACK), "no query keeps reading after the answer"


def test_mapping_that_ends_past_the_deadline_is_a_412(
    hostile: HostileFhir,
    signing_key: SigningKey,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hostile.observations = [lab_observation(n, PATIENT_ID) for n in range(3)]
    caller = service_for(hostile, signing_key, tmp_path, deadline_seconds=0.5)
    original_extract = hooks.extract

    def slow_extract(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.6)  # mapping a very large reply, say
        return original_extract(*args, **kwargs)

    monkeypatch.setattr(hooks, "extract", slow_extract)

    response = caller.call(il6_from_the_server(caller, hostile))

    assert_outcome(response, 412, "PICU-412-DATA-UNAVAILABLE")
    assert "read and mapped within the deadline" in diagnostics(response)


@pytest.mark.parametrize(
    ("fault", "max_pages"),
    [(Fault.NEXT_PAGE_OVERSIZED, 5), (Fault.NEXT_PAGE_OVERSIZED, 1)],
    ids=["next-page-over-the-cap", "max-pages-reached"],
)
def test_a_card_from_pages_left_unread_says_its_data_may_be_incomplete(
    hostile: HostileFhir, signing_key: SigningKey, tmp_path: Any, fault: Fault, max_pages: int
) -> None:
    hostile.fault, hostile.size = fault, 10 * MIB
    hostile.observations = [lab_observation(n, PATIENT_ID) for n in range(3)]
    caller = service_for(hostile, signing_key, tmp_path, max_pages=max_pages)

    response = caller.call(il6_from_the_server(caller, hostile))

    assert response.status_code == 200, response.get_data(as_text=True)
    [card] = response.get_json()["cards"]
    assert card["extension"]["io.picu-endotype.assessment"]["incompleteData"] == ["panel"]
    assert (
        "**Note:** Data may be incomplete: the EHR holds more marker results than were read"
        in card["detail"]
    )


def test_a_card_from_complete_data_makes_no_such_claim(
    hostile: HostileFhir, signing_key: SigningKey, tmp_path: Any
) -> None:
    hostile.observations = [lab_observation(n, PATIENT_ID) for n in range(3)]
    caller = service_for(hostile, signing_key, tmp_path)

    [card] = caller.call(il6_from_the_server(caller, hostile)).get_json()["cards"]

    assert "incompleteData" not in card["extension"]["io.picu-endotype.assessment"]
    assert "incomplete" not in card["detail"]
