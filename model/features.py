"""Model features from a `Timeline`: the one function the live service and training share.

A feature row holds, for each analyte in the model's feature list, the latest counted result in
the timeline's early window [anchor, anchor + window] (in the analyte's canonical unit), or NaN
when there is none: the window the model is trained on. Results from before the anchor or after
the early window, older and preliminary results never become features. Which analytes are inputs,
and in which column, is said by the panel (`model_feature` in fhir_mappings/panel.toml).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from fhir_mappings.panel import load_panel
from model.assessment import Phase, Timeline

# panel keys, in the order of the model's input columns
FEATURE_ANALYTES: tuple[str, ...] = load_panel().model_features


def latest_value(timeline: Timeline, analyte: str) -> float:
    """The latest counted value of one analyte in the early window, or NaN when it has none."""
    series = timeline.series.get(analyte)
    early = series.in_phase(Phase.EARLY) if series is not None else ()
    if not early:
        return float("nan")
    value = float(early[-1].value)
    return value if np.isfinite(value) and value >= 0 else float("nan")


def feature_row(timeline: Timeline, analytes: Sequence[str] = FEATURE_ANALYTES) -> np.ndarray:
    """One patient's feature vector, aligned with `analytes`."""
    return np.array([latest_value(timeline, analyte) for analyte in analytes], dtype=float)


def feature_matrix(
    timelines: Iterable[Timeline], analytes: Sequence[str] = FEATURE_ANALYTES
) -> np.ndarray:
    """Stack feature rows; shape (n_patients, len(analytes))."""
    rows = [feature_row(timeline, analytes) for timeline in timelines]
    if not rows:
        return np.empty((0, len(analytes)), dtype=float)
    return np.vstack(rows)


def missing_analytes(timeline: Timeline, analytes: Sequence[str]) -> tuple[str, ...]:
    """Analytes with no counted result in the early window, in `analytes` order."""
    return tuple(a for a in analytes if not np.isfinite(latest_value(timeline, a)))
