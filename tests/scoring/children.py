"""Realistic children for scorer and card tests: results relative to NOW and to the anchor.

Each child is (frame, results): the anchor `hours` before NOW and draws at hours before NOW.
Values are canonical units (pg/mL, ng/mL, mg/L, 10*3/uL).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from fhir_mappings.measurement import Measurement
from model.assessment import TimeFrame
from tests.scoring.factories import frame_at, result

Child = tuple[TimeFrame, tuple[Measurement, ...]]


def draw(hours_ago: float, **values: float) -> tuple[Measurement, ...]:
    """One blood draw: several analytes collected at the same time."""
    return tuple(result(analyte, value, hours_ago=hours_ago) for analyte, value in values.items())


def study_phenotype() -> Child:
    """The issue's picture: extreme IL-6, IFN-γ and CXCL9 with modest ferritin and CRP."""
    return frame_at(20), draw(4, il6=1500, ifng=200, cxcl9=30000, ferritin=300, crp=30)


def quiescent_child() -> Child:
    """A child whose panel is normal at two draws a day apart."""
    first = draw(30, il6=3.1, ifng=2.1, cxcl9=210, ferritin=85, crp=3.2, lymphocytes=2.8)
    second = draw(5, il6=2.4, ifng=1.8, cxcl9=180, ferritin=78, crp=2.1, platelets=310)
    return frame_at(40), (*first, *second)


def ferritin_only_child() -> Child:
    """Ferritin 5,000 ng/mL and nothing else measured."""
    return frame_at(20), draw(3, ferritin=5000)


def persistent_child() -> Child:
    """High at onset and still high a day and a half later, ferritin rising."""
    onset = draw(40, il6=820, ifng=140, cxcl9=18200, ferritin=2600, crp=95)
    later = draw(6, il6=720, ifng=160, cxcl9=24500, ferritin=4800, crp=160, lymphocytes=0.6)
    return frame_at(44), (*onset, *later)


def resolving_child() -> Child:
    """High three days ago (IL-6 640, ferritin 5,200), normal now."""
    onset = draw(72, il6=640, ifng=130, cxcl9=21000, ferritin=5200, crp=210)
    middle = draw(50, il6=120, ifng=12, cxcl9=2100, ferritin=1500, crp=90)
    now = draw(4, il6=2.6, ifng=2.5, cxcl9=300, ferritin=150, crp=4)
    return frame_at(76), (*onset, *middle, *now)


def new_high_child() -> Child:
    """Not high on admission, high now."""
    onset = draw(30, il6=45, ifng=4, cxcl9=900, ferritin=400, crp=60)
    now = draw(3, il6=2100, ifng=250, cxcl9=17500, ferritin=1900, crp=120)
    return frame_at(34), (*onset, *now)


def intermediate_child() -> Child:
    """CRP 41 mg/L and ferritin 2,000 ng/mL with IL-6, IFN-γ and CXCL9 not markedly raised."""
    return frame_at(20), draw(5, il6=20, ifng=3, cxcl9=300, ferritin=2000, crp=41)


def discordant_child() -> Child:
    """IL-6 extreme, the IFN-γ axis normal."""
    return frame_at(20), draw(5, il6=1500, ifng=3, cxcl9=300, ferritin=300, crp=30)


def missing_panel_child() -> Child:
    """Only CRP and platelets, on the first day."""
    return frame_at(12), (*draw(10, crp=42, platelets=210), *draw(2, crp=38, platelets=198))


def stale_child() -> Child:
    """High cytokines four days ago, nothing since; ferritin and CRP today."""
    old = draw(100, il6=1500, cxcl9=30000)
    return frame_at(120), (*old, *draw(2, ferritin=300, crp=30))


def pre_anchor_child() -> Child:
    """High cytokines only before the PICU admission."""
    return frame_at(20), draw(40, il6=1500, cxcl9=30000, ferritin=300, crp=30)


def unpaired_child() -> Child:
    """Normal yesterday, IL-6 extreme now with no IFN-γ or CXCL9 since yesterday."""
    yesterday = draw(40, il6=3, ifng=2, cxcl9=200, ferritin=80, crp=3)
    return frame_at(50), (*yesterday, *draw(2, il6=5000, ferritin=900, crp=60))


def everything_child() -> Child:
    """The longest card: persistent, every finding met, units converted, assumed and pending."""
    onset = draw(40, il6=820, ifng=140, cxcl9=18200, ferritin=2600, crp=95)
    later = (
        result("il6", 720, hours_ago=6, reference_high=7, source=(720, "ng/L")),
        result("ifng", 160, hours_ago=6, reference_high=10.4),
        result("cxcl9", 24500, hours_ago=6),
        result("ferritin", 4800, hours_ago=6, source=(4.8, "ug/mL")),
        result("crp", 160, hours_ago=6, source=(16, "mg/dL")),
        *draw(6, lymphocytes=0.6, platelets=85),
        result("il6", 900, hours_ago=1, status="preliminary"),
    )
    return frame_at(44), (*onset, *later)


CHILDREN: dict[str, Callable[[], Child]] = {
    "study-phenotype": study_phenotype,
    "quiescent": quiescent_child,
    "ferritin-only": ferritin_only_child,
    "persistent": persistent_child,
    "resolving": resolving_child,
    "new-high": new_high_child,
    "intermediate": intermediate_child,
    "discordant": discordant_child,
    "missing-panel": missing_panel_child,
    "stale": stale_child,
    "pre-anchor": pre_anchor_child,
    "unpaired": unpaired_child,
    "everything": everything_child,
}
FIVE_CHILDREN = {name: CHILDREN[name] for name in (
    "study-phenotype", "quiescent", "ferritin-only", "persistent", "resolving"
)}  # fmt: skip
DAY = timedelta(hours=24)
