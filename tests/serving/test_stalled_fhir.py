"""Issue 9, row 10: hooks waiting on a stalled FHIR server never delay other clients' hooks."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.held_fhir import held_fhir
from tests.support.served import complete_prefetch, hook_body, post_hook, serve

pytestmark = pytest.mark.slow  # a served instance and a FHIR server that stalls on purpose

PREFETCH_ONLY_HOOKS = 12


def test_prefetch_hooks_are_answered_while_other_hooks_wait_on_a_stalled_fhir_server(
    tmp_path: Path,
) -> None:
    with held_fhir() as fhir, ThreadPoolExecutor(4) as stalled_callers:
        # the FHIR limits are far longer than the test: the stall ends only when released
        fhir_limits = {"timeout_seconds": 120, "deadline_seconds": 120}
        with serve(tmp_path, workers=1, fhir=fhir_limits, fhir_servers=[fhir.base_url]) as served:
            prefetch = complete_prefetch(served)
            fhir.hold()
            stalled = [
                stalled_callers.submit(post_hook, served, hook_body(fhir.base_url))
                for _ in range(2)
            ]
            assert fhir.wait_for(2), "both hooks should be waiting on the FHIR server"

            answers = [
                post_hook(served, hook_body(fhir.base_url, prefetch=prefetch), timeout=60)
                for _ in range(PREFETCH_ONLY_HOOKS)
            ]
            still_waiting = [not future.done() for future in stalled]
            fhir.release()
            finished = [future.result(timeout=120) for future in stalled]

    assert [answer.status_code for answer in answers] == [200] * PREFETCH_ONLY_HOOKS
    assert all(answer.json()["cards"] for answer in answers)
    assert still_waiting == [True, True], "the stalled hooks must still have been waiting"
    assert [answer.status_code for answer in finished] == [200, 200]
