"""Feedback timestamps must lie in a supported range; duplicates are found after normalising."""

from __future__ import annotations

import copy

import pytest
from flask import Flask

from cds_service.feedback import FeedbackStore
from cds_service.state import app_state
from tests.cds_service.outcomes import assert_outcome
from tests.support.hook_caller import HookCaller

WITH_REASON = "spec-2.0.1-feedback-overridden-with-reason.json"


def _store(app: Flask) -> FeedbackStore:
    return app_state(app).feedback_store


@pytest.mark.parametrize(
    "timestamp",
    [
        "9999-12-31T23:59:59-14:00",  # overflows past year 9999 in UTC
        "0001-01-01T00:00:00+14:00",  # overflows before year 1 in UTC
        "1899-12-31T23:59:59Z",
        "1900-01-01T00:30:00+01:00",  # 1899 in UTC
    ],
)
def test_a_timestamp_outside_the_supported_range_is_a_400(
    app: Flask, caller: HookCaller, conformance_example, timestamp: str
) -> None:
    body = conformance_example(WITH_REASON)
    body["feedback"][0]["outcomeTimestamp"] = timestamp

    response = caller.feedback(body)

    assert_outcome(response, 400, "PICU-400-INVALID-FEEDBACK")
    diagnostics = response.get_json()["issue"][0]["diagnostics"]
    assert "outcomeTimestamp" in diagnostics and "1900 and 9999" in diagnostics
    assert _store(app).count() == 0


@pytest.mark.parametrize("timestamp", ["1900-01-01T00:00:00Z", "9999-12-31T23:59:59+00:00"])
def test_the_edges_of_the_range_are_stored(
    app: Flask, caller: HookCaller, conformance_example, timestamp: str
) -> None:
    body = conformance_example(WITH_REASON)
    body["feedback"][0]["outcomeTimestamp"] = timestamp

    assert caller.feedback(body).get_json() == {"stored": 1, "duplicates": 0}


def test_one_instant_with_other_offsets_or_displays_is_stored_once(
    app: Flask, caller: HookCaller, conformance_example
) -> None:
    body = conformance_example(WITH_REASON)
    item = body["feedback"][0]
    item["outcomeTimestamp"] = "2026-11-20T10:00:00Z"
    variants = []
    for timestamp, display in [
        ("2026-11-20T10:00:00Z", "Patient refused"),
        ("2026-11-20T11:00:00+01:00", "Patient refused"),
        ("2026-11-20T05:00:00-05:00", "patient declined (other wording)"),
        ("2026-11-20T10:00:00.000+00:00", None),
    ]:
        variant = copy.deepcopy(body)
        variant["feedback"][0]["outcomeTimestamp"] = timestamp
        reason = variant["feedback"][0]["overrideReason"]["reason"]
        if display is None:
            reason.pop("display", None)
        else:
            reason["display"] = display
        variants.append(variant)

    answers = [caller.feedback(variant).get_json() for variant in variants]

    assert answers[0] == {"stored": 1, "duplicates": 0}
    assert answers[1:] == [{"stored": 0, "duplicates": 1}] * 3
    assert _store(app).count() == 1


def test_another_code_or_another_instant_is_new_feedback(
    app: Flask, caller: HookCaller, conformance_example
) -> None:
    body = conformance_example(WITH_REASON)
    caller.feedback(body)
    other_code = copy.deepcopy(body)
    other_code["feedback"][0]["overrideReason"]["reason"]["code"] = "other-reason"
    later = copy.deepcopy(body)
    later["feedback"][0]["outcomeTimestamp"] = "2030-01-01T00:00:00Z"

    assert caller.feedback(other_code).get_json() == {"stored": 1, "duplicates": 0}
    assert caller.feedback(later).get_json() == {"stored": 1, "duplicates": 0}
