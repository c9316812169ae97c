"""Demo scenario patients: five hand-set SYNTHETIC children placed relative to `now`.

Each child has an in-progress Encounter on a ward Location (a bed partOf the ward): the PICU
(v3 RoleCode PEDICU) for four of them, a general pediatric ward (PEDU) for the fifth, who gets no
card. The PICU admission is the time anchor; every draw is set in hours after it. Values are in
canonical units, sent with each analyte's primary code. Used by the demo, the end-to-end tests
and the benchmarks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from fhir_mappings.panel import Panel, load_panel
from model.synth.parameters import Representation
from model.synth.render import (
    Result,
    encounter_resource,
    format_time,
    location_resource,
    observation_resource,
    patient_resource,
    synthetic_meta,
)


def years_before(moment: date, years: int) -> date:
    """The same calendar day `years` earlier (28 February for 29 February)."""
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year - years, day=28)


@dataclass(frozen=True)
class Scenario:
    """One child: who, since when on which ward, when each draw was and what it showed."""

    age_years: int
    sex: str
    admitted_hours_ago: float  # the ward (PICU) admission: the anchor
    ward: str  # v3 RoleCode of the ward: PEDICU, or PEDU for a general pediatric ward
    draw_hours: tuple[float, ...]  # hours after the admission
    values: Mapping[str, tuple[float | None, ...]]  # one value per draw; None: not measured
    ordered: tuple[str, ...] = ()  # analytes with an active order and no result yet

    @property
    def in_picu(self) -> bool:
        """True when the ward is the PICU."""
        return self.ward == "PEDICU"


# All SYNTHETIC. The hyperinflammatory child is high at both draws (34 h apart): persistent. The
# resolving child was high three days ago (IL-6 640 pg/mL, ferritin 5,200 ng/mL) and is normal now.
SCENARIOS: Mapping[str, Scenario] = {
    "hyperinflammatory": Scenario(6, "female", 44.0, "PEDICU", (4.0, 38.0), {
        "il6": (820.0, 720.0), "ifng": (140.0, 160.0), "cxcl9": (18200.0, 24500.0),
        "ferritin": (2600.0, 4800.0), "crp": (95.0, 160.0), "il10": (140.0, 210.0),
        "sil2r": (3800.0, 5200.0), "lymphocytes": (0.8, 0.6), "platelets": (120.0, 85.0),
        "lactate": (3.2, 3.6), "procalcitonin": (2.5, 4.1),
    }),
    "quiescent": Scenario(9, "male", 34.0, "PEDICU", (4.0, 30.0), {
        "il6": (3.1, 2.4), "ifng": (2.1, 1.8), "cxcl9": (210.0, 180.0),
        "ferritin": (85.0, 78.0), "crp": (3.2, 2.1), "il10": (4.0, 3.2),
        "sil2r": (620.0, 580.0), "lymphocytes": (2.8, 3.1), "platelets": (290.0, 310.0),
        "lactate": (1.1, 0.9), "procalcitonin": (0.08, 0.06),
    }),
    "missing-panel": Scenario(4, "male", 24.0, "PEDICU", (4.0, 20.0), {
        "crp": (42.0, 38.0), "platelets": (210.0, 198.0),
    }, ordered=("cxcl9",)),
    "resolving": Scenario(11, "female", 76.0, "PEDICU", (4.0, 26.0, 50.0, 72.0), {
        "il6": (640.0, 120.0, 4.2, 2.6), "ifng": (130.0, 12.0, 4.0, 2.5),
        "cxcl9": (21000.0, 2100.0, 520.0, 300.0), "ferritin": (5200.0, 1500.0, 240.0, 150.0),
        "crp": (210.0, 90.0, 8.0, 4.0), "il10": (160.0, 40.0, 12.0, 5.0),
        "sil2r": (4200.0, 1900.0, 980.0, 700.0), "lymphocytes": (0.5, 1.0, 1.9, 2.4),
        "platelets": (70.0, 115.0, 190.0, 240.0), "lactate": (4.1, 2.3, 1.4, 1.0),
    }),
    "general-ward": Scenario(7, "female", 30.0, "PEDU", (4.0, 26.0), {
        "il6": (1500.0, 1200.0), "ifng": (200.0, 180.0), "cxcl9": (30000.0, 26000.0),
        "ferritin": (300.0, 320.0), "crp": (30.0, 28.0),
    }),
}  # fmt: skip
SCENARIO_KINDS: tuple[str, ...] = tuple(SCENARIOS)
WARD_NAMES = {"PEDICU": "SYNTHETIC PICU", "PEDU": "SYNTHETIC general pediatric ward"}
_HOSPITAL_HOURS_BEFORE_ADMISSION = 6.0  # the encounter starts in the emergency department


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
    """Patient, in-progress Encounter, its ward and bed Locations, orders and Observations."""
    if kind not in SCENARIOS:
        raise ValueError(f"unknown scenario {kind!r}; choose one of {', '.join(SCENARIO_KINDS)}")
    offset = _offset_minutes(now)
    scenario = SCENARIOS[kind]
    panel = load_panel()
    admitted = now - timedelta(hours=scenario.admitted_hours_ago)
    birth = years_before(now.date(), scenario.age_years) - timedelta(days=40)
    patient = patient_resource(patient_id, f"{kind} scenario", scenario.sex, birth, None)
    encounter_id = f"{patient_id}-enc"
    ward, bed = _ward_and_bed(patient_id, scenario.ward)
    encounter = _encounter(encounter_id, patient_id, bed["id"], admitted, offset, scenario)
    orders = [
        _order(panel, patient_id, a, now - timedelta(hours=2), offset) for a in scenario.ordered
    ]
    observations = [
        observation_resource(panel, result, patient_id, encounter_id, offset)
        for result in _scenario_results(panel, patient_id, admitted, scenario)
    ]
    return [patient, encounter, ward, bed, *orders, *observations]


def _ward_and_bed(patient_id: str, role: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ward Location typed `role` and a bed partOf it."""
    ward_id = f"{patient_id}-ward"
    ward = location_resource(ward_id, role, WARD_NAMES.get(role, role))
    bed = location_resource(f"{patient_id}-bed", None, "Bed 4", part_of=ward_id)
    return ward, bed


def _encounter(
    encounter_id: str,
    patient_id: str,
    bed_id: str,
    admitted: datetime,
    offset: int,
    scenario: Scenario,
) -> dict[str, Any]:
    """The in-progress Encounter: it started in the ED, the bed entry at the ward admission."""
    start = admitted - timedelta(hours=_HOSPITAL_HOURS_BEFORE_ADMISSION)
    encounter = encounter_resource(
        encounter_id,
        patient_id,
        {"start": format_time(start, offset)},
        status="in-progress",
        died=False,
        location_id=bed_id,
        picu=scenario.in_picu,
    )
    encounter["location"][0]["period"] = {"start": format_time(admitted, offset)}
    return encounter


def _order(
    panel: Panel, patient_id: str, analyte: str, authored: datetime, offset: int
) -> dict[str, Any]:
    """An active laboratory order (ServiceRequest) for one panel analyte."""
    return {
        "resourceType": "ServiceRequest",
        "id": f"{patient_id}-order-{analyte}",
        "meta": synthetic_meta(),
        "status": "active",
        "intent": "order",
        "code": {"coding": [panel.analytes[analyte].primary.as_fhir()]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": format_time(authored, offset),
    }


def _scenario_results(
    panel: Panel, patient_id: str, admitted: datetime, scenario: Scenario
) -> list[Result]:
    """One result per measured analyte and draw, at the draw's hours after the admission."""
    results = []
    for analyte, series in scenario.values.items():
        rep = _primary_representation(panel, analyte)
        draws = zip(scenario.draw_hours, series, strict=True)
        for number, (hours, value) in enumerate(draws, start=1):
            if value is None:
                continue
            results.append(
                Result(
                    observation_id=f"{patient_id}-{analyte}-{number}",
                    analyte=analyte,
                    value=value,
                    time=admitted + timedelta(hours=hours),
                    rep=rep,
                    issued_after=timedelta(hours=1),
                )
            )
    return results
