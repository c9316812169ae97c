"""Our own panel search: one round of queries reaching back `fhir.history_days`, and one more
date-bounded search only when the time anchor lies further back than that."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest
from pytest_httpserver import HTTPServer

from fhir_mappings.prefetch import PANEL_KEY
from tests.cds_service.conftest import PinClock
from tests.cds_service.fhir_data import (
    FakeFhirServer,
    full_prefetch,
    observation,
    patient,
    stay,
    years_before,
)
from tests.support.hook_caller import HookCaller, hook_request, without_uuids
from tests.support.tokens import fhir_authorization

PATIENT_ID = "picu-child-7"
HISTORY = timedelta(days=14)  # fhir.history_days by default
LOOK_BACK = timedelta(days=7)  # context.look_back_days by default
VALUES = {"il6": 95.0, "ifng": 55.0, "cxcl9": 2600.0, "ferritin": 1200.0, "crp": 80.0}


def _results(times: list[datetime]) -> list[dict[str, Any]]:
    return [
        observation(PATIENT_ID, analyte, value * (1 + index / 10), moment, index=index)
        for analyte, value in VALUES.items()
        for index, moment in enumerate(times)
    ]


def _panel_dates(caller: HookCaller, fake: FakeFhirServer) -> list[list[str]]:
    """The `date` bounds of each search for the panel's codes (not the Phoenix searches')."""
    template = caller.prefetch_templates()[PANEL_KEY]
    codes = frozenset(parse_qs(template.split("?", 1)[1])["code"][0].split(","))
    return [dates for searched, dates in fake.observation_searches if searched == codes]


def _bound(text: str) -> datetime:
    return datetime.strptime(text[2:], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _same_cards(left: dict, right: dict) -> bool:
    return without_uuids(left) == without_uuids(right)


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


def _serve(
    httpserver: HTTPServer, now: datetime, admitted: datetime, results: list[dict[str, Any]]
) -> FakeFhirServer:
    fake = FakeFhirServer(
        patients={PATIENT_ID: patient(PATIENT_ID, years_before(now, 6))},
        observations=results,
        encounters=stay(PATIENT_ID, admitted),
    )
    httpserver.expect_request(re.compile(r"/fhir/.*")).respond_with_handler(fake)
    return fake


def _both_ways(
    caller: HookCaller, fake: FakeFhirServer, fhir_base: str, now: datetime
) -> tuple[dict, dict]:
    subject = fake.patients[PATIENT_ID]
    prefetch = full_prefetch(
        caller.prefetch_templates(), subject, fake.observations, encounters=fake.encounters
    )
    from_prefetch = caller.call(hook_request(PATIENT_ID, prefetch=prefetch))
    queried = caller.call(
        hook_request(PATIENT_ID, fhir_server=fhir_base, fhir_authorization=fhir_authorization())
    )
    assert from_prefetch.status_code == queried.status_code == 200, queried.get_data(as_text=True)
    return from_prefetch.get_json(), queried.get_json()


def test_a_recent_stay_needs_one_panel_search_reaching_back_the_history(
    caller: HookCaller,
    httpserver: HTTPServer,
    fhir_base: str,
    now: datetime,
    pin_hook_clock: PinClock,
) -> None:
    pin_hook_clock(now + timedelta(seconds=1))
    admitted = now - timedelta(hours=40)
    fake = _serve(httpserver, now, admitted, _results([admitted + timedelta(hours=6)]))

    from_prefetch, queried = _both_ways(caller, fake, fhir_base, now)

    assert _same_cards(from_prefetch, queried)
    [[bound]] = _panel_dates(caller, fake)
    assert bound.startswith("ge")
    assert abs(_bound(bound) - (now - HISTORY)) < timedelta(minutes=5)


def test_an_anchor_beyond_the_history_adds_one_search_for_the_rest(
    caller: HookCaller,
    httpserver: HTTPServer,
    fhir_base: str,
    now: datetime,
    pin_hook_clock: PinClock,
) -> None:
    pin_hook_clock(now + timedelta(seconds=1))
    admitted = now - timedelta(days=20)  # the anchor: PICU admission, 20 days ago
    early = [admitted + timedelta(hours=6), admitted + timedelta(hours=30)]  # onset window
    later = [now - timedelta(hours=30), now - timedelta(hours=6)]
    fake = _serve(httpserver, now, admitted, _results(early + later))

    from_prefetch, queried = _both_ways(caller, fake, fhir_base, now)

    assert _same_cards(from_prefetch, queried)
    first, second = _panel_dates(caller, fake)
    reach = now - HISTORY
    assert [bound[:2] for bound in first] == ["ge"]
    assert abs(_bound(first[0]) - reach) < timedelta(minutes=5)
    assert sorted(bound[:2] for bound in second) == ["ge", "lt"]
    lower = next(_bound(bound) for bound in second if bound.startswith("ge"))
    upper = next(_bound(bound) for bound in second if bound.startswith("lt"))
    assert upper == _bound(first[0])  # the two searches meet without a gap
    assert abs(lower - (admitted - LOOK_BACK)) < timedelta(seconds=1)


def test_a_prefetched_panel_is_never_searched_again(
    caller: HookCaller, httpserver: HTTPServer, fhir_base: str, now: datetime
) -> None:
    admitted = now - timedelta(days=20)
    fake = _serve(httpserver, now, admitted, _results([admitted + timedelta(hours=6)]))
    prefetch = full_prefetch(
        caller.prefetch_templates(),
        fake.patients[PATIENT_ID],
        fake.observations,
        encounters=fake.encounters,
    )
    del prefetch["encounters"]  # the anchor comes from a query, the panel from prefetch

    reply = caller.call(
        hook_request(
            PATIENT_ID,
            prefetch=prefetch,
            fhir_server=fhir_base,
            fhir_authorization=fhir_authorization(),
        )
    )

    assert reply.status_code == 200
    assert _panel_dates(caller, fake) == []
