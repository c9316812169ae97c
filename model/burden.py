"""Alert burden: for a cohort, the share of children each scorer flags, at set times after onset.

Each child is assessed the way the service would at `onset + t` for every t in `at_hours`: a
timeline anchored as the service anchors it (the Phoenix onset computed from the cohort's
resources, else the outcomes file's `onset_time`; `Burden.anchors` counts each), the early
window, the look-back and the current age limit as in the service's defaults, then each scorer.
A child whose PICU encounter ended before `onset + t` (death or discharge, from
`Encounter.period.end` when the
cohort has Encounters) is not assessed at that time: the hook would not fire for them.
Pure: cohort data in, plain figures out; `render_burden` turns them into text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fhir_mappings.fhirtime import instant_or_none
from fhir_mappings.observations import extract
from fhir_mappings.panel import Panel
from model.assessment import Assessment, Pathway, Scorer
from model.cohort import Cohort, onset_frame, subject_id
from model.states import PersistenceState
from model.timeline import build_timeline

DEFAULT_AT_HOURS: tuple[float, ...] = (24.0, 48.0, 72.0, 120.0)
WINDOW = timedelta(hours=48)
PATHWAYS = tuple(Pathway)
STATES = tuple(PersistenceState)


@dataclass
class ScorerTally:
    """One scorer's counts at one assessment time."""

    pathways: Counter = field(default_factory=Counter)
    persistence: Counter = field(default_factory=Counter)

    def add(self, assessment: Assessment) -> None:
        """Count one child's pathway and, when the scorer gives one, persistence state."""
        self.pathways[assessment.pathway] += 1
        if assessment.persistence is not None:
            self.persistence[assessment.persistence.state] += 1


@dataclass
class Burden:
    """Counts per assessment time and scorer, children assessed, and who was ever flagged."""

    at_hours: tuple[float, ...]
    scorers: tuple[str, ...]
    cohort_size: int
    assessed: dict[float, int] = field(default_factory=dict)
    tallies: dict[tuple[float, str], ScorerTally] = field(default_factory=dict)
    ever_flagged: dict[str, int] = field(default_factory=dict)
    anchors: dict[str, int] = field(default_factory=dict)  # children per anchor source

    def tally(self, hours: float, scorer: str) -> ScorerTally:
        """The tally of one scorer at one time."""
        return self.tallies.setdefault((hours, scorer), ScorerTally())


def encounter_ends(encounters: Iterable[Mapping[str, Any]]) -> dict[str, datetime]:
    """Each patient's latest encounter end (Encounter.period.end), where recorded."""
    ends: dict[str, datetime] = {}
    for encounter in encounters:
        patient = subject_id(encounter)
        end = instant_or_none((encounter.get("period") or {}).get("end"))
        if patient is not None and end is not None:
            ends[patient] = max(end, ends.get(patient, end))
    return ends


def alert_burden(
    cohort: Cohort,
    scorers: Mapping[str, Scorer],
    panel: Panel,
    *,
    at_hours: Sequence[float] = DEFAULT_AT_HOURS,
    ends: Mapping[str, datetime] | None = None,
) -> Burden:
    """Assess every child at every time with every scorer and count the answers."""
    burden = Burden(tuple(at_hours), tuple(scorers), len(cohort.outcomes))
    burden.anchors = cohort.anchor_counts
    flagged: dict[str, set[str]] = {name: set() for name in scorers}
    for row in cohort.outcomes:
        extraction = extract(
            cohort.observations.get(row.patient_id, []), panel, patient_id=row.patient_id
        )
        end = (ends or {}).get(row.patient_id)
        anchor = cohort.anchors[row.patient_id]
        for hours in at_hours:
            now = anchor.time + timedelta(hours=hours)
            if end is not None and end < now:
                continue
            burden.assessed[hours] = burden.assessed.get(hours, 0) + 1
            timeline = build_timeline(extraction, onset_frame(anchor, WINDOW, now))
            for name, scorer in scorers.items():
                assessment = scorer.assess(timeline)
                burden.tally(hours, name).add(assessment)
                if assessment.pathway is Pathway.BIOMARKER_GUIDED:
                    flagged[name].add(row.patient_id)
    burden.ever_flagged = {name: len(ids) for name, ids in flagged.items()}
    return burden


def burden_json(burden: Burden) -> dict[str, Any]:
    """The figures as plain JSON: shares per time, scorer, pathway and persistence state."""
    times = []
    for hours in burden.at_hours:
        assessed = burden.assessed.get(hours, 0)
        scorers = {}
        for name in burden.scorers:
            tally = burden.tally(hours, name)
            scorers[name] = {
                "pathways": {p.value: _share(tally.pathways[p], assessed) for p in PATHWAYS},
                "persistence": {s.value: _share(tally.persistence[s], assessed) for s in STATES}
                if tally.persistence
                else None,
            }
        times.append({"hours_after_onset": hours, "assessed": assessed, "scorers": scorers})
    ever = {name: _share(count, burden.cohort_size) for name, count in burden.ever_flagged.items()}
    return {
        "cohort_size": burden.cohort_size,
        "anchors": dict(burden.anchors),
        "times": times,
        "ever_biomarker_guided": ever,
    }


def render_burden(burden: Burden) -> list[str]:
    """The figures as text lines: one table per assessment time, then who was ever flagged."""
    lines = [f"Alert burden over {burden.cohort_size} children (shares of those assessed)"]
    anchored = ", ".join(f"{source} {count}" for source, count in burden.anchors.items())
    lines.append(f"Anchored at: {anchored or 'outcomes onset_time'}")
    for hours in burden.at_hours:
        assessed = burden.assessed.get(hours, 0)
        lines += ["", f"At onset + {hours:g} h ({assessed} children still in the PICU):"]
        lines.append(_row("scorer", [p.value for p in PATHWAYS] + [s.value for s in STATES]))
        for name in burden.scorers:
            tally = burden.tally(hours, name)
            cells = [_percent(tally.pathways[p], assessed) for p in PATHWAYS]
            cells += [
                _percent(tally.persistence[s], assessed) if tally.persistence else "-"
                for s in STATES
            ]
            lines.append(_row(name, cells))
    lines += ["", "Biomarker-guided at any of these times (share of the cohort):"]
    for name, count in burden.ever_flagged.items():
        lines.append(f"  {name:<10} {_percent(count, burden.cohort_size)} ({count})")
    return lines


def _row(first: str, cells: Sequence[str]) -> str:
    """One fixed-width table row."""
    return f"  {first:<10}" + "".join(f"{cell:>18}" for cell in cells)


def _share(count: int, total: int) -> float | None:
    """count / total rounded to 4 places, None for an empty denominator."""
    return round(count / total, 4) if total else None


def _percent(count: int, total: int) -> str:
    """'12.3%' or 'n/a'."""
    return f"{100 * count / total:.1f}%" if total else "n/a"
