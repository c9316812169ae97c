"""Realistic children for scorer and card tests: results relative to NOW and to the anchor.

Each child is (frame, results). Values are canonical units; times are hours before NOW.
"""

from __future__ import annotations

from fhir_mappings.measurement import Measurement
from model.assessment import TimeFrame
from tests.scoring.factories import frame_at, result


def draw(hours_ago: float, **values: float) -> tuple[Measurement, ...]:
    """One blood draw: several analytes collected at the same time."""
    return tuple(result(analyte, value, hours_ago=hours_ago) for analyte, value in values.items())


def study_phenotype() -> tuple[TimeFrame, tuple[Measurement, ...]]:
    """The issue's picture: extreme IL-6, IFN-γ and CXCL9 with modest ferritin and CRP."""
    return frame_at(20), draw(4, il6=1500, ifng=200, cxcl9=30000, ferritin=300, crp=30)


def quiescent_child() -> tuple[TimeFrame, tuple[Measurement, ...]]:
    """A child whose panel is normal at two draws a day apart."""
    first = draw(30, il6=3.1, ifng=2.1, cxcl9=210, ferritin=85, crp=3.2, lymphocytes=2.8)
    second = draw(5, il6=2.4, ifng=1.8, cxcl9=180, ferritin=78, crp=2.1, platelets=310)
    return frame_at(40), (*first, *second)


def ferritin_only_child() -> tuple[TimeFrame, tuple[Measurement, ...]]:
    """Ferritin 5,000 ng/mL and nothing else measured."""
    return frame_at(20), draw(3, ferritin=5000)


def persistent_child() -> tuple[TimeFrame, tuple[Measurement, ...]]:
    """High at onset and still high a day and a half later, ferritin rising."""
    onset = draw(40, il6=820, ifng=140, cxcl9=18200, ferritin=2600, crp=95)
    later = draw(6, il6=720, ifng=160, cxcl9=24500, ferritin=4800, crp=160, lymphocytes=0.6)
    return frame_at(44), (*onset, *later)


def resolving_child() -> tuple[TimeFrame, tuple[Measurement, ...]]:
    """High three days ago (IL-6 640, ferritin 5,200), normal now."""
    onset = draw(72, il6=640, ifng=130, cxcl9=21000, ferritin=5200, crp=210)
    middle = draw(50, il6=120, ifng=12, cxcl9=2100, ferritin=1500, crp=90)
    now = draw(4, il6=2.6, ifng=2.5, cxcl9=300, ferritin=150, crp=4)
    return frame_at(76), (*onset, *middle, *now)


FIVE_CHILDREN = {
    "study-phenotype": study_phenotype,
    "quiescent": quiescent_child,
    "ferritin-only": ferritin_only_child,
    "persistent": persistent_child,
    "resolving": resolving_child,
}
