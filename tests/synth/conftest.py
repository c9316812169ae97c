"""Cohorts shared by the synth tests: generated once per session, kept small."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from fhir_mappings.observations import extract
from fhir_mappings.panel import Panel, load_panel
from model.assessment import Timeline
from model.synth import Cohort, generate_cohort
from model.timeline import build_recent_timeline

LARGE_N = 3000
ONSET_WINDOW = timedelta(hours=48)


@pytest.fixture(scope="session")
def panel() -> Panel:
    return load_panel()


@pytest.fixture(scope="session")
def small_cohort() -> Cohort:
    return generate_cohort(120, seed=11)


@pytest.fixture(scope="session")
def large_cohort() -> Cohort:
    """For the laboratory distributions: without the Phoenix inputs, which come from each
    patient's own random stream and leave the laboratory results as they are (a test says so)."""
    return generate_cohort(LARGE_N, seed=2024, phoenix=False)


@pytest.fixture(scope="session")
def onset_timelines(large_cohort: Cohort, panel: Panel) -> dict[str, Timeline]:
    """Each patient's onset timeline, built the way training and the live service build it."""
    by_patient: dict[str, list[dict]] = {row.patient_id: [] for row in large_cohort.outcomes}
    for observation in large_cohort.observations:
        by_patient[observation["subject"]["reference"].removeprefix("Patient/")].append(observation)
    timelines = {}
    for row in large_cohort.outcomes:
        extraction = extract(by_patient[row.patient_id], panel, patient_id=row.patient_id)
        onset = datetime.fromisoformat(row.onset_time)
        timelines[row.patient_id] = build_recent_timeline(
            extraction, now=onset + ONSET_WINDOW, window=ONSET_WINDOW
        )
    return timelines
