"""A hostile FHIR server cannot hold a query past its deadline or fill memory with its reply.

Bounds are generous on purpose (a loaded 2-core machine): they prove a call is bounded, not fast.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from cds_service.settings import FhirSettings
from fhir_mappings.client import (
    CallGuard,
    FhirBadResponse,
    FhirCancelled,
    FhirClient,
    FhirReplyTooDeep,
    FhirReplyTooLarge,
    FhirTimeout,
    ReplyLimits,
)
from fhir_mappings.gather import DataUnavailable, FhirAccess, gather_patient_data
from fhir_mappings.limits import MIB, LimitSettings
from fhir_mappings.panel import Panel
from fhir_mappings.prefetch import prefetch_templates
from tests.fhir_access.conftest import PATIENT_ID, TOKEN
from tests.support.hostile_fhir import Fault, HostileFhir, lab_observation
from tests.support.memory import rss_growth

IL6_QUERY = f"Observation?patient={PATIENT_ID}&code=http://loinc.org|26881-3&_count=50"
CONTEXT = {"patientId": PATIENT_ID, "userId": "Practitioner/doc-1"}
LIMITS = ReplyLimits(max_bytes=4 * MIB, max_depth=64)
MAX_GROWTH_MIB = 100  # a reply capped at 4 MiB may cost a few times that while parsed, never more


@pytest.fixture
def hostile() -> Iterator[HostileFhir]:
    """A stopped-at-teardown hostile server; each test sets the fault it needs."""
    server = HostileFhir().start()
    yield server
    server.stop()


def search_with(server: HostileFhir, **options: object) -> list[dict]:
    """One IL-6 search against `server` with the test limits and a 2 s call limit."""
    settings = {"timeout": 2.0, "max_pages": 3, "limits": LIMITS, **options}
    with FhirClient(server.base_url, TOKEN, **settings) as client:  # type: ignore[arg-type]
        return client.search(IL6_QUERY)


@pytest.mark.parametrize(
    ("fault", "size"),
    [
        (Fault.GZIP_BOMB, 200 * MIB),
        (Fault.DEFLATE_BOMB, 200 * MIB),
        (Fault.OVERSIZED, 50 * MIB),
        (Fault.OVERSIZED_DECLARED, 50 * MIB),
        (Fault.EMPTY_ENTRIES, 2_000_000),
        (Fault.IGNORES_COUNT, 12 * MIB),
    ],
)
def test_a_reply_over_the_cap_stops_at_the_cap(
    hostile: HostileFhir, fault: Fault, size: int
) -> None:
    hostile.fault, hostile.size = fault, size
    hostile.prepare()

    started = time.monotonic()
    with rss_growth() as growth, pytest.raises(FhirReplyTooLarge) as raised:
        search_with(hostile)

    assert time.monotonic() - started < 2.0 + 2.0
    assert growth.grown_mib < MAX_GROWTH_MIB
    assert str(raised.value) == (
        f"FHIR response larger than {4 * MIB} bytes: GET /fhir/Observation"
    )


def test_a_reply_under_the_cap_is_read_whole(hostile: HostileFhir) -> None:
    hostile.observations = [lab_observation(n, PATIENT_ID) for n in range(40)]

    resources = search_with(hostile)

    assert [r["id"] for r in resources] == [f"il6-{n}" for n in range(40)]


def test_a_reply_nested_100000_deep_is_a_bad_response_not_a_recursion_error(
    hostile: HostileFhir,
) -> None:
    hostile.fault, hostile.size = Fault.DEEP, 100_000

    with pytest.raises(FhirReplyTooDeep) as raised:
        search_with(hostile)

    assert isinstance(raised.value, FhirBadResponse)
    assert str(raised.value) == "FHIR response nested deeper than 64 levels: GET /fhir/Observation"


def test_the_depth_limit_counts_every_level(hostile: HostileFhir) -> None:
    hostile.fault = Fault.DEEP
    hostile.size = 61  # Bundle, entry list, entry, then 61 arrays: 64 levels

    assert search_with(hostile) == []  # at the limit: read (the entry holds no resource)

    hostile.size = 62
    with pytest.raises(FhirReplyTooDeep):
        search_with(hostile)


@pytest.mark.parametrize("fault", [Fault.DRIP, Fault.DRIP_HEADERS])
def test_a_dripping_server_is_cut_off_at_the_call_limit(hostile: HostileFhir, fault: Fault) -> None:
    hostile.fault, hostile.interval = fault, 0.05

    started = time.monotonic()
    with pytest.raises(FhirTimeout):
        search_with(hostile, timeout=0.5, deadline=time.monotonic() + 1.0)

    assert time.monotonic() - started < 1.0 + 2.0
    assert hostile.wait_until_idle(timeout=2.0), "the dripped connection is closed"


def test_cancelling_the_guard_stops_a_call_waiting_for_headers(hostile: HostileFhir) -> None:
    """Headers dripped slower than any per-read timeout: only the guard can stop this call."""
    hostile.fault, hostile.interval = Fault.DRIP_HEADERS, 0.05
    guard = CallGuard(deadline=None)
    outcome: list[BaseException] = []

    def search() -> None:
        try:
            search_with(hostile, timeout=60.0, guard=guard)
        except Exception as error:  # noqa: BLE001 (recorded for the assertion)
            outcome.append(error)

    thread = threading.Thread(target=search)
    thread.start()
    time.sleep(0.3)
    assert thread.is_alive(), "still reading the dripped headers"
    cancelled_at = time.monotonic()
    guard.cancel()
    thread.join(timeout=5)

    assert not thread.is_alive()
    assert time.monotonic() - cancelled_at < 2.0
    assert [type(error) for error in outcome] == [FhirCancelled]


def test_an_oversized_next_page_is_left_unread_and_counted(hostile: HostileFhir) -> None:
    hostile.fault, hostile.size = Fault.NEXT_PAGE_OVERSIZED, 10 * MIB
    hostile.observations = [lab_observation(n, PATIENT_ID) for n in range(3)]

    with FhirClient(hostile.base_url, TOKEN, timeout=2.0, max_pages=3, limits=LIMITS) as client:
        resources = client.search(IL6_QUERY)

    assert len(resources) == 3
    assert client.pages_not_followed == 1


# --- whole gathers, as a hook runs them --------------------------------------------------------


def il6_only(panel: Panel) -> dict[str, str]:
    """The patient read and the IL-6 search."""
    templates = prefetch_templates(panel, page_size=50)
    return {key: templates[key] for key in ("patient", "panel")}


def test_gather_answers_412_reasons_for_a_capped_reply(hostile: HostileFhir, panel: Panel) -> None:
    hostile.fault, hostile.size = Fault.GZIP_BOMB, 100 * MIB
    settings = FhirSettings(timeout_seconds=2.0, deadline_seconds=3.0)

    with pytest.raises(DataUnavailable) as raised:
        gather_patient_data(
            None,
            CONTEXT,
            il6_only(panel),
            FhirAccess(hostile.base_url, TOKEN),
            settings,
            limits=LimitSettings(max_reply_bytes=1 * MIB),
        )

    # the patient read may be stopped by the failed search (and then named too), never the cause
    assert "panel" in raised.value.keys
    assert raised.value.reason == "the FHIR server's reply was larger than this service accepts"


def test_gather_of_a_deep_reply_names_the_nesting(hostile: HostileFhir, panel: Panel) -> None:
    hostile.fault, hostile.size = Fault.DEEP, 100_000
    settings = FhirSettings(timeout_seconds=2.0, deadline_seconds=3.0)

    with pytest.raises(DataUnavailable) as raised:
        gather_patient_data(
            None, CONTEXT, il6_only(panel), FhirAccess(hostile.base_url, TOKEN), settings
        )

    assert raised.value.reason == "the FHIR server's reply was nested too deeply"


def fhir_query_threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name.startswith("fhir-query"))


@pytest.mark.slow
def test_thirty_dripping_gathers_leave_no_threads_or_connections_behind(
    hostile: HostileFhir, panel: Panel
) -> None:
    hostile.fault, hostile.interval = Fault.DRIP, 0.05
    settings = FhirSettings(timeout_seconds=1.0, deadline_seconds=0.3, max_workers=4)
    access = FhirAccess(hostile.base_url, TOKEN)
    templates = prefetch_templates(panel, page_size=50)
    threads_before, query_threads_before = threading.active_count(), fhir_query_threads()

    for _ in range(30):
        started = time.monotonic()
        with pytest.raises(DataUnavailable) as raised:
            gather_patient_data(None, CONTEXT, templates, access, settings)
        assert time.monotonic() - started < 0.3 + 2.0
        assert "did not answer in time" in raised.value.reason

    assert hostile.wait_until_idle(timeout=3.0), "every dripped connection was closed"
    watchdog = 1  # the process's one deadline thread
    assert threading.active_count() <= threads_before + settings.max_workers + watchdog
    assert fhir_query_threads() <= query_threads_before + settings.max_workers
