"""The FHIR query threads: each hook runs at most `max_workers` queries at once, and the pool has
room for every hook in flight, so one hook's queries never wait for another's."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest

from fhir_mappings.config import FhirSettings
from fhir_mappings.gather import FhirAccess, PatientData, gather_patient_data
from fhir_mappings.panel import load_panel
from tests.fhir_access.conftest import TOKEN
from tests.support.held_fhir import HeldFhir, held_fhir

WIDTH = 3
KEYS = 10
SETTLE_SECONDS = 0.3  # time for queries beyond the limit to arrive, if any were sent


@pytest.fixture
def fhir() -> Iterator[HeldFhir]:
    with held_fhir() as server:
        server.hold()
        yield server


def _searches() -> dict[str, str]:
    """One search per panel code: more keys than lanes."""
    codes = [coding.code for analyte in load_panel().analytes.values() for coding in analyte.codes]
    return {
        f"code-{code}": f"Observation?patient={{{{context.patientId}}}}&code={code}"
        for code in codes[:KEYS]
    }


def _gather(fhir: HeldFhir, patient_id: str, hooks_in_flight: int) -> PatientData:
    templates = _searches()
    settings = FhirSettings(timeout_seconds=30, deadline_seconds=30, max_workers=WIDTH)
    return gather_patient_data(
        None,
        {"patientId": patient_id, "userId": "Practitioner/dr-7"},
        templates,
        FhirAccess(fhir.base_url, TOKEN),
        settings,
        hooks_in_flight=hooks_in_flight,
    )


def test_one_hook_never_has_more_than_max_workers_queries_in_flight(fhir: HeldFhir) -> None:
    with ThreadPoolExecutor(1) as hook:
        gathered = hook.submit(_gather, fhir, "pat-1", 4)
        assert fhir.wait_for(WIDTH)
        time.sleep(SETTLE_SECONDS)
        fhir.release()
        data = gathered.result(timeout=60)

    assert fhir.most_waiting == WIDTH
    assert len(fhir.paths) == len(data.sources)  # every key was still queried, in its lane


def test_hooks_in_flight_each_get_their_own_lanes(fhir: HeldFhir) -> None:
    with ThreadPoolExecutor(2) as hooks:
        gathered = [hooks.submit(_gather, fhir, f"pat-{n}", 2) for n in range(2)]
        both_at_full_width = fhir.wait_for(2 * WIDTH)
        fhir.release()
        for future in gathered:
            future.result(timeout=60)

    assert both_at_full_width
    assert fhir.most_patients == 2


def test_a_pool_sized_for_one_hook_makes_a_second_hook_wait(fhir: HeldFhir) -> None:
    with ThreadPoolExecutor(2) as hooks:
        gathered = [hooks.submit(_gather, fhir, f"pat-{n}", 1) for n in range(2)]
        assert fhir.wait_for(WIDTH)
        time.sleep(SETTLE_SECONDS)
        fhir.release()
        for future in gathered:
            future.result(timeout=60)

    assert fhir.most_waiting == WIDTH


def test_the_hook_waits_for_its_queries_inside_waiting(fhir: HeldFhir) -> None:
    states: list[str] = []

    @contextmanager
    def waiting() -> Iterator[None]:
        states.append("waiting")
        yield
        states.append("done")

    templates = _searches()
    settings = FhirSettings(timeout_seconds=30, deadline_seconds=30, max_workers=WIDTH)
    with ThreadPoolExecutor(1) as hook:
        gathered = hook.submit(
            gather_patient_data,
            None,
            {"patientId": "pat-1", "userId": "Practitioner/dr-7"},
            templates,
            FhirAccess(fhir.base_url, TOKEN),
            settings,
            waiting=waiting,
        )
        assert fhir.wait_for(1)
        during = list(states)
        fhir.release()
        gathered.result(timeout=60)

    assert during == ["waiting"]
    assert states == ["waiting", "done"]
