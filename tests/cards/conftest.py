"""Fixtures for the card tests: the packaged panel, the three scorers, settings, a card builder."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from cds_service.card_detail import ChartContext
from cds_service.cards import build_card
from cds_service.settings import Settings
from fhir_mappings.panel import load_panel
from fhir_mappings.phoenix_inputs import PhoenixPatient, PhoenixReading
from model.context import PHOENIX_ORGAN_DYSFUNCTION, Anchor, AnchorSource
from model.phoenix import phoenix_course
from model.phoenix_context import PhoenixContext
from model.rules import load_rule_scorer
from model.rules_scorer import load_rules_v2_scorer
from model.scorer import load_model_scorer
from model.timeframe import TimeFrame

PATIENT_ID = "pat-1"
ENCOUNTER_ID = "enc-7"
SIX_YEARS = PhoenixPatient(birth_date=date(2020, 5, 10))


def phoenix_chart(frame: TimeFrame) -> tuple[TimeFrame, ChartContext]:
    """The frame anchored at a Phoenix onset, and a chart whose Phoenix line is about as long as
    it gets: two infusions and low platelets from the anchor, almost every other input absent."""
    if frame.anchor.source is AnchorSource.ASSESSMENT_TIME:
        return frame, ChartContext(in_picu=True)
    onset = frame.anchor.time.replace(minute=0, second=0, microsecond=0)
    anchored = TimeFrame(
        frame.now,
        Anchor(onset, AnchorSource.PHOENIX, PHOENIX_ORGAN_DYSFUNCTION),
        frame.window,
        frame.look_back,
        frame.current_max_age,
    )
    readings = [
        PhoenixReading("vasoactive", 1.0, onset, "rx", "a", ongoing=True, agent="a"),
        PhoenixReading("vasoactive", 1.0, onset, "rx", "b", ongoing=True, agent="b"),
        *(
            PhoenixReading("platelets", 50.0, onset + timedelta(hours=h), "ln", "777-3")
            for h in range(0, int((frame.now - onset).total_seconds() // 3600) + 1, 12)
        ),
    ]
    course = phoenix_course(readings, SIX_YEARS, start=onset - timedelta(hours=6), end=frame.now)
    return anchored, ChartContext(in_picu=True, phoenix=PhoenixContext(course, course.onset))


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
