"""Many hooks at once on a served instance: the jti replay store, the overall FHIR deadline and
the per-call timeout stay exact, each hook's own, however many hooks are in flight."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.support.held_fhir import held_fhir
from tests.support.served import Served, complete_prefetch, hook_body, post_hook, serve

pytestmark = pytest.mark.slow  # served instances and dozens of simultaneous hooks

SIMULTANEOUS = 32
QUERY_HOOKS = 16
DEADLINE_SECONDS = 2.0
UNUSED_FHIR = "https://unused.example.org/fhir"  # complete prefetch: never queried


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(tmp_path_factory.mktemp("concurrent"), workers=2) as running:
        yield running


def _diagnostics(reply: requests.Response) -> str:
    return " ".join(issue.get("diagnostics", "") for issue in reply.json().get("issue", []))


def test_one_token_sent_by_many_hooks_at_once_is_accepted_once(served: Served) -> None:
    body = hook_body(UNUSED_FHIR, prefetch=complete_prefetch(served), with_access=False)
    token = served.token()
    with ThreadPoolExecutor(SIMULTANEOUS) as callers:
        replies = list(callers.map(lambda _: post_hook(served, body, token), range(SIMULTANEOUS)))

    statuses = sorted(reply.status_code for reply in replies)
    assert statuses == [200] + [401] * (SIMULTANEOUS - 1)


def test_distinct_tokens_sent_at_once_are_all_accepted(served: Served) -> None:
    body = hook_body(UNUSED_FHIR, prefetch=complete_prefetch(served), with_access=False)
    tokens = [served.token() for _ in range(SIMULTANEOUS)]
    with ThreadPoolExecutor(SIMULTANEOUS) as callers:
        replies = list(callers.map(lambda token: post_hook(served, body, token), tokens))

    assert [reply.status_code for reply in replies] == [200] * SIMULTANEOUS


def _timed_hook(served: Served, body: dict) -> tuple[requests.Response, float]:
    started = time.monotonic()
    reply = post_hook(served, body)
    return reply, time.monotonic() - started


def test_each_hook_of_many_waiting_on_fhir_gets_its_own_overall_deadline(tmp_path: Path) -> None:
    limits = {"timeout_seconds": 60, "deadline_seconds": DEADLINE_SECONDS}
    with held_fhir() as fhir:
        fhir.hold()  # nothing is answered: every hook runs into its deadline
        with serve(tmp_path, workers=2, fhir=limits, fhir_servers=[fhir.base_url]) as running:
            bodies = [hook_body(fhir.base_url, patient_id=f"pat-{n}") for n in range(QUERY_HOOKS)]
            with ThreadPoolExecutor(QUERY_HOOKS) as callers:
                results = list(callers.map(lambda body: _timed_hook(running, body), bodies))
        most_patients = fhir.most_patients

    assert [reply.status_code for reply, _ in results] == [412] * QUERY_HOOKS
    # at the deadline the hook stops waiting and its calls time out: either reports the deadline
    assert all("did not answer in time" in _diagnostics(reply) for reply, _ in results)
    assert min(seconds for _, seconds in results) >= DEADLINE_SECONDS
    # every hook (one patient each) had its FHIR queries in flight at the same time
    assert most_patients == QUERY_HOOKS


def test_the_per_call_timeout_holds_for_every_hook_of_many(tmp_path: Path) -> None:
    limits = {"timeout_seconds": 1.0, "deadline_seconds": 60}
    # each answer comes 3 s after the call's limit
    with held_fhir(answer_delay=4.0) as fhir, ThreadPoolExecutor(QUERY_HOOKS) as callers:
        bodies = [hook_body(fhir.base_url, patient_id=f"pat-{n}") for n in range(QUERY_HOOKS)]
        with serve(tmp_path, workers=2, fhir=limits, fhir_servers=[fhir.base_url]) as running:
            replies = list(callers.map(lambda body: post_hook(running, body), bodies))
            log = running.log_text()

    assert [reply.status_code for reply in replies] == [412] * QUERY_HOOKS
    for reply in replies:
        shown = _diagnostics(reply)
        assert "did not answer in time" in shown and "overall deadline" not in shown
    assert log.count("FHIR query for") >= QUERY_HOOKS  # every hook logged its timed-out call
