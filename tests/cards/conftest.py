"""Fixtures for the card tests: the packaged panel, the three scorers, settings, a card builder."""

from __future__ import annotations

import pytest

from cds_service.cards import build_card
from cds_service.settings import Settings
from fhir_mappings.panel import load_panel
from model.rules import load_rule_scorer
from model.rules_scorer import load_rules_v2_scorer
from model.scorer import load_model_scorer

PATIENT_ID = "pat-1"
ENCOUNTER_ID = "enc-7"


@pytest.fixture(scope="session")
def panel():
    return load_panel()


@pytest.fixture(scope="session")
def rules():
    return load_rules_v2_scorer()


@pytest.fixture(scope="session")
def scorers(rules):
    """Rules v2 (the default), the packaged SYNTHETIC model, and rules v1."""
    return {"rules-v2": rules, "model": load_model_scorer(), "rules-v1": load_rule_scorer()}


@pytest.fixture
def settings():
    return Settings()


@pytest.fixture
def make_card(panel, settings):
    """Build the card for an assessment and its timeline as the hook does."""

    def make(assessment, timeline, *, with_settings=None, encounter_id=ENCOUNTER_ID, chart=None):
        return build_card(
            assessment,
            timeline,
            panel=panel,
            settings=with_settings or settings,
            patient_id=PATIENT_ID,
            encounter_id=encounter_id,
            chart=chart,
        )

    return make
