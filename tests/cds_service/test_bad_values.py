"""Impossible values and conflicting copies reach the card as exclusions, never as reassurance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask

from tests.cds_service.fhir_data import full_prefetch, observation, patient, years_before
from tests.support.hook_caller import HookCaller, hook_request

PATIENT_ID = "picu-child-7"
REASSURANCE = "No IL-6/IFN-γ-high immune pattern detected"


def card_for(app: Flask, caller: HookCaller, observations: list[dict[str, Any]]) -> dict:
    now = datetime.now(UTC)
    child = patient(PATIENT_ID, years_before(now, 5))
    prefetch = full_prefetch(caller.prefetch_templates(), child, observations)
    response = caller.call(hook_request(PATIENT_ID, prefetch=prefetch))
    assert response.status_code == 200, response.get_data(as_text=True)
    [card] = response.get_json()["cards"]
    return card


def results(**values: float) -> list[dict[str, Any]]:
    """One result per analyte, six hours old, in its canonical unit."""
    moment = datetime.now(UTC) - timedelta(hours=6)
    return [observation(PATIENT_ID, name, value, moment) for name, value in values.items()]


QUIESCENT = {"il6": 4.0, "ferritin": 120.0, "crp": 3.0, "cxcl9": 300.0, "ifng": 2.0}


def test_negative_il6_ferritin_and_crp_give_no_reassurance(app: Flask, caller: HookCaller) -> None:
    card = card_for(app, caller, results(**{**QUIESCENT, "il6": -3, "ferritin": -80, "crp": -3}))

    extension = card["extension"]["io.picu-endotype.assessment"]
    assert extension["pathway"] == "insufficient-data"
    assert {"il6", "ferritin", "crp"} <= set(extension["missing"])
    assert REASSURANCE not in card["summary"] + card["detail"]
    [excluded] = [line for line in card["detail"].splitlines() if line.startswith("Excluded:")]
    assert excluded.startswith("Excluded: impossible value, not used: ")
    assert all(name in excluded for name in ("IL-6", "Ferritin", "CRP"))


def test_the_same_results_with_possible_values_do_reassure(app: Flask, caller: HookCaller) -> None:
    card = card_for(app, caller, results(**QUIESCENT))

    assert card["extension"]["io.picu-endotype.assessment"]["pathway"] == "standard"


def test_crp_of_1e308_mg_per_dl_is_excluded_not_a_500(app: Flask, caller: HookCaller) -> None:
    observations = results(**QUIESCENT)
    crp = next(o for o in observations if o["id"].endswith("-crp-0"))
    crp["valueQuantity"] = {
        "value": 1e308,
        "unit": "mg/dL",
        "system": "http://unitsofmeasure.org",
        "code": "mg/dL",
    }

    card = card_for(app, caller, observations)

    assert card["extension"]["io.picu-endotype.assessment"]["pathway"] == "insufficient-data"
    assert "Excluded: impossible value, not used: CRP." in card["detail"]


@pytest.mark.parametrize("newer_first", [True, False])
def test_two_copies_of_one_observation_id_with_different_values_are_both_excluded(
    app: Flask, caller: HookCaller, newer_first: bool
) -> None:
    observations = results(**QUIESCENT)
    crp = next(o for o in observations if o["id"].endswith("-crp-0"))
    altered = {**crp, "valueQuantity": {**crp["valueQuantity"], "value": 180.0}}
    copies = [altered, crp] if newer_first else [crp, altered]

    card = card_for(app, caller, [o for o in observations if o is not crp] + copies)

    extension = card["extension"]["io.picu-endotype.assessment"]
    assert extension["pathway"] == "insufficient-data"
    assert "crp" in extension["missing"]
    assert "Excluded: conflicting copies, not used: CRP ×2." in card["detail"]
