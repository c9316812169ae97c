"""Fixtures for the model tests: hand-built timelines and one small seeded synthetic cohort."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fhir_mappings.measurement import Extraction, Measurement
from fhir_mappings.panel import load_panel
from model.assessment import Timeline
from model.cohort import Cohort, load_cohort
from model.pipeline import EndotypeModel
from model.synth import generate_cohort, write_cohort
from model.timeline import build_recent_timeline
from model.train import train_model

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
WINDOW = timedelta(hours=48)
SMALL_COHORT_SIZE = 500
SMALL_COHORT_SEED = 31
PHOENIX_COHORT_SIZE = 60


def measurement(analyte: str, value: float, *, hours_ago: float = 2.0, comparator=None):
    """A final panel result in the analyte's canonical unit, `hours_ago` before NOW."""
    definition = load_panel().analytes[analyte]
    return Measurement(
        analyte=analyte,
        value=value,
        unit=definition.unit,
        time=NOW - timedelta(hours=hours_ago),
        system=definition.primary.system,
        code=definition.primary.code,
        status="final",
        comparator=comparator,
    )


@pytest.fixture
def make_timeline() -> Callable[..., Timeline]:
    """Build a timeline from {analyte: value} (latest) or {analyte: [oldest, ..., latest]}."""

    def build(
        values: Mapping[str, float | list[float]], stale: Mapping[str, float] = ()
    ) -> Timeline:
        series = {}
        for analyte, given in values.items():
            history = given if isinstance(given, list) else [given]
            points = [
                measurement(analyte, v, hours_ago=2.0 + 6 * (len(history) - 1 - i))
                for i, v in enumerate(history)
            ]
            series[analyte] = points
        old = [measurement(a, v, hours_ago=72.0) for a, v in dict(stale).items()]
        results = tuple(m for points in series.values() for m in points) + tuple(old)
        return build_recent_timeline(Extraction(measurements=results), now=NOW, window=WINDOW)

    return build


@pytest.fixture(scope="session")
def small_cohort_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A labelled synthetic cohort on disk, in the cohort contract's layout, without the Phoenix
    inputs (kept small: every child is anchored at the outcomes file's onset_time)."""
    directory = tmp_path_factory.mktemp("cohort")
    write_cohort(generate_cohort(SMALL_COHORT_SIZE, SMALL_COHORT_SEED, phoenix=False), directory)
    return directory


@pytest.fixture(scope="session")
def phoenix_cohort_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small labelled synthetic cohort with its Phoenix inputs, on disk."""
    directory = tmp_path_factory.mktemp("phoenix-cohort")
    write_cohort(generate_cohort(PHOENIX_COHORT_SIZE, SMALL_COHORT_SEED), directory)
    return directory


@pytest.fixture(scope="session")
def small_cohort(small_cohort_dir: Path) -> Cohort:
    """The small cohort, read back through the cohort reader."""
    return load_cohort(small_cohort_dir, small_cohort_dir / "outcomes.csv")


@pytest.fixture(scope="session")
def small_model(small_cohort: Cohort) -> EndotypeModel:
    """A model trained on the small cohort's reference labels."""
    return train_model(
        small_cohort, model_id="test-model", version="0.0.1", description="test", progress=False
    )
