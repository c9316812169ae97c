"""Demo scenario patients: a few hand-set SYNTHETIC courses placed relative to `now`.

Used by the demo, the end-to-end tests and the benchmarks. Values are in canonical units and sent
with each analyte's primary code.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from fhir_mappings.panel import Panel, load_panel
from model.synth.parameters import Representation
from model.synth.render import (
    Result,
    encounter_resource,
    format_time,
    observation_resource,
    patient_resource,
)


def years_before(moment: date, years: int) -> date:
    """The same calendar day `years` earlier (28 February for 29 February)."""
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year - years, day=28)


# kind -> (age in years, sex, hours before `now` of each draw, {analyte: values per draw}).
# Values are canonical units; None skips that draw. All SYNTHETIC.
ScenarioSpec = tuple[int, str, tuple[float, ...], Mapping[str, tuple[float | None, ...]]]
SCENARIOS: Mapping[str, ScenarioSpec] = {
    "hyperinflammatory": (6, "female", (30.0, 6.0), {
        "il6": (380.0, 520.0), "ferritin": (2600.0, 4800.0), "crp": (95.0, 160.0),
        "cxcl9": (8200.0, 14500.0), "ifng": (35.0, 60.0), "il10": (140.0, 210.0),
        "sil2r": (3800.0, 5200.0), "lymphocytes": (0.8, 0.6), "platelets": (120.0, 85.0),
        "lactate": (3.2, 3.6), "procalcitonin": (2.5, 4.1),
    }),
    "quiescent": (9, "male", (28.0, 5.0), {
        "il6": (3.1, 2.4), "ferritin": (85.0, 78.0), "crp": (3.2, 2.1),
        "cxcl9": (210.0, 180.0), "ifng": (2.1, 1.8), "il10": (4.0, 3.2),
        "sil2r": (620.0, 580.0), "lymphocytes": (2.8, 3.1), "platelets": (290.0, 310.0),
        "lactate": (1.1, 0.9), "procalcitonin": (0.08, 0.06),
    }),
    "missing-panel": (4, "male", (20.0, 4.0), {
        "crp": (42.0, 38.0), "platelets": (210.0, 198.0),
    }),
    "resolving": (11, "female", (72.0, 50.0, 26.0, 4.0), {
        "il6": (640.0, 120.0, 4.2, 2.6), "ferritin": (5200.0, 1500.0, 240.0, 150.0),
        "crp": (210.0, 90.0, 8.0, 4.0), "cxcl9": (9800.0, 2100.0, 520.0, 300.0),
        "ifng": (48.0, 12.0, 4.0, 2.5), "il10": (160.0, 40.0, 12.0, 5.0),
        "sil2r": (4200.0, 1900.0, 980.0, 700.0), "lymphocytes": (0.5, 1.0, 1.9, 2.4),
        "platelets": (70.0, 115.0, 190.0, 240.0), "lactate": (4.1, 2.3, 1.4, 1.0),
    }),
}  # fmt: skip
SCENARIO_KINDS: tuple[str, ...] = tuple(SCENARIOS)
_SCENARIO_ENCOUNTER_HOURS = 120.0


def _primary_representation(panel: Panel, analyte: str) -> Representation:
    coding = panel.analytes[analyte].primary
    unit = panel.analytes[analyte].unit
    return Representation(coding.code, unit, unit)


def _offset_minutes(now: datetime) -> int:
    offset = now.utcoffset()
    if offset is None:
        raise ValueError("now must be timezone-aware")
    return int(offset.total_seconds() // 60)


def scenario_patient(kind: str, patient_id: str, *, now: datetime) -> list[dict[str, Any]]:
    """Patient, in-progress PICU Encounter and Observations for one demo scenario (SYNTHETIC)."""
    if kind not in SCENARIOS:
        raise ValueError(f"unknown scenario {kind!r}; choose one of {', '.join(SCENARIO_KINDS)}")
    offset = _offset_minutes(now)
    age_years, sex, hours_before, values = SCENARIOS[kind]
    panel = load_panel()
    encounter_id = f"{patient_id}-enc"
    birth = years_before(now.date(), age_years) - timedelta(days=40)
    patient = patient_resource(patient_id, f"{kind} scenario", sex, birth, None)
    period = {"start": format_time(now - timedelta(hours=_SCENARIO_ENCOUNTER_HOURS), offset)}
    encounter = encounter_resource(
        encounter_id, patient_id, period, status="in-progress", died=False
    )
    observations = [
        observation_resource(panel, result, patient_id, encounter_id, offset)
        for result in _scenario_results(panel, patient_id, now, hours_before, values)
    ]
    return [patient, encounter, *observations]


def _scenario_results(
    panel: Panel,
    patient_id: str,
    now: datetime,
    hours_before: tuple[float, ...],
    values: Mapping[str, tuple[float | None, ...]],
) -> list[Result]:
    results = []
    for analyte, series in values.items():
        rep = _primary_representation(panel, analyte)
        for number, (hours, value) in enumerate(zip(hours_before, series, strict=True), start=1):
            if value is None:
                continue
            results.append(
                Result(
                    observation_id=f"{patient_id}-{analyte}-{number}",
                    analyte=analyte,
                    value=value,
                    time=now - timedelta(hours=hours),
                    rep=rep,
                    issued_after=timedelta(hours=min(1.0, hours / 2)),
                )
            )
    return results
