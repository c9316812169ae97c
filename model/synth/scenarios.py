"""Demo scenario patients: five hand-set SYNTHETIC children placed relative to `now`.

Each child has an in-progress Encounter on a ward Location (a bed partOf the ward): the PICU
(v3 RoleCode PEDICU) for four of them, a general pediatric ward (PEDU) for the fifth, who gets no
card. Every draw is set in hours after the ward admission. Each child also carries the Phoenix
inputs of its stay (hourly vital signs, GCS, coagulation labs, ventilation, vasoactive infusions;
`model.synth.phoenix`): the four PICU children reach a Phoenix score of 2 a few hours after their
admission, on the hour (`scenario_onset`), which is their time anchor; the child on the general
ward never does. Values are in canonical units, sent with each analyte's primary code. Used by the
demo, the end-to-end tests and the benchmarks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from fhir_mappings.panel import Panel, load_panel
from model.synth.parameters import Representation
from model.synth.phoenix import PhoenixPlan, StayTimes, phoenix_resources, writer_for
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
class ScenarioPhoenix:
    """How organ dysfunction runs: the onset after the admission, what fails, for how long."""

    onset_hours: float  # after the ward admission; the onset is that time, to the hour below
    respiratory: bool = False  # ventilated and hypoxaemic from the onset
    cardiovascular: bool = False  # an infusion and a low mean pressure from the onset
    imv_hours: float | None = None  # ventilation after the onset; None: still ventilated
    infusion_hours: float | None = None  # the infusion after the onset; None: still running
    second_agent_hours: float | None = None  # a second agent from this long after the onset
    high_flow_hours: float | None = None  # high-flow nasal cannula after extubation
    coagulation: bool = False  # INR, fibrinogen and D-dimer daily from the onset
    pupils: bool = False  # pupils charted with the GCS


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
    phoenix: ScenarioPhoenix = ScenarioPhoenix(onset_hours=2.0)  # no dysfunction by default

    @property
    def in_picu(self) -> bool:
        """True when the ward is the PICU."""
        return self.ward == "PEDICU"


# All SYNTHETIC. The hyperinflammatory child is high at both draws (34 h apart): persistent. The
# resolving child was high three days ago (IL-6 640 pg/mL, ferritin 5,200 ng/mL) and is normal now.
# Organ dysfunction: the hyperinflammatory child is ventilated with two infusions and coagulopathy,
# still; the quiescent child needed an infusion for half a day; the missing-panel child is
# ventilated; the resolving child was ventilated for 58 h, on an infusion for 30 h, and is now on
# room air; the child on the general ward is well.
SCENARIOS: Mapping[str, Scenario] = {
    "hyperinflammatory": Scenario(6, "female", 44.0, "PEDICU", (4.0, 38.0), {
        "il6": (820.0, 720.0), "ifng": (140.0, 160.0), "cxcl9": (18200.0, 24500.0),
        "ferritin": (2600.0, 4800.0), "crp": (95.0, 160.0), "il10": (140.0, 210.0),
        "sil2r": (3800.0, 5200.0), "lymphocytes": (0.8, 0.6), "platelets": (120.0, 85.0),
        "lactate": (3.2, 3.6), "procalcitonin": (2.5, 4.1),
    }, phoenix=ScenarioPhoenix(
        2.0, respiratory=True, cardiovascular=True, second_agent_hours=10.0, coagulation=True,
    )),
    "quiescent": Scenario(9, "male", 34.0, "PEDICU", (4.0, 30.0), {
        "il6": (3.1, 2.4), "ifng": (2.1, 1.8), "cxcl9": (210.0, 180.0),
        "ferritin": (85.0, 78.0), "crp": (3.2, 2.1), "il10": (4.0, 3.2),
        "sil2r": (620.0, 580.0), "lymphocytes": (2.8, 3.1), "platelets": (290.0, 310.0),
        "lactate": (1.1, 0.9), "procalcitonin": (0.08, 0.06),
    }, phoenix=ScenarioPhoenix(1.0, cardiovascular=True, infusion_hours=14.0)),
    "missing-panel": Scenario(4, "male", 24.0, "PEDICU", (4.0, 20.0), {
        "crp": (42.0, 38.0), "platelets": (210.0, 198.0),
    }, ordered=("cxcl9",), phoenix=ScenarioPhoenix(3.0, respiratory=True, pupils=True)),
    "resolving": Scenario(11, "female", 76.0, "PEDICU", (4.0, 26.0, 50.0, 72.0), {
        "il6": (640.0, 120.0, 4.2, 2.6), "ifng": (130.0, 12.0, 4.0, 2.5),
        "cxcl9": (21000.0, 2100.0, 520.0, 300.0), "ferritin": (5200.0, 1500.0, 240.0, 150.0),
        "crp": (210.0, 90.0, 8.0, 4.0), "il10": (160.0, 40.0, 12.0, 5.0),
        "sil2r": (4200.0, 1900.0, 980.0, 700.0), "lymphocytes": (0.5, 1.0, 1.9, 2.4),
        "platelets": (70.0, 115.0, 190.0, 240.0), "lactate": (4.1, 2.3, 1.4, 1.0),
    }, phoenix=ScenarioPhoenix(
        2.0, respiratory=True, cardiovascular=True, imv_hours=58.0, infusion_hours=30.0,
        high_flow_hours=6.0, coagulation=True,
    )),
    "general-ward": Scenario(7, "female", 30.0, "PEDU", (4.0, 26.0), {
        "il6": (1500.0, 1200.0), "ifng": (200.0, 180.0), "cxcl9": (30000.0, 26000.0),
        "ferritin": (300.0, 320.0), "crp": (30.0, 28.0),
    }),
}  # fmt: skip
SCENARIO_KINDS: tuple[str, ...] = tuple(SCENARIOS)
SCENARIO_SEED = 2026  # the random stream of the scenarios' vital signs
# the latent group each scenario's coagulation labs are drawn around (quiescent, ..., hyper)
_GROUP_OF = {
    "hyperinflammatory": 2,
    "quiescent": 0,
    "missing-panel": 1,
    "resolving": 2,
    "general-ward": 0,
}
WARD_NAMES = {"PEDICU": "SYNTHETIC PICU", "PEDU": "SYNTHETIC general pediatric ward"}
_HOSPITAL_HOURS_BEFORE_ADMISSION = 6.0  # the encounter starts in the emergency department
STILL_RUNNING = timedelta(hours=48)  # a support still running is weaned as if it ended then


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
    plan = _phoenix_plan(kind, scenario, admitted, now, birth)
    writer = writer_for(patient_id, encounter_id, offset, now=now)
    rng = np.random.default_rng([SCENARIO_SEED, SCENARIO_KINDS.index(kind)])
    inputs = phoenix_resources(rng, plan, writer)
    return [patient, encounter, ward, bed, *orders, *observations, *inputs]


def scenario_onset(kind: str, now: datetime) -> datetime:
    """When the scenario child's organ dysfunction begins: the hour at or before its onset time
    after the ward admission (for the general-ward child, the hour nothing happens)."""
    scenario = SCENARIOS[kind]
    admitted = now - timedelta(hours=scenario.admitted_hours_ago)
    onset = (admitted + timedelta(hours=scenario.phoenix.onset_hours)).astimezone(UTC)
    return onset.replace(minute=0, second=0, microsecond=0)


def _phoenix_plan(
    kind: str, scenario: Scenario, admitted: datetime, now: datetime, birth: date
) -> PhoenixPlan:
    """The scenario's Phoenix course, hourly vital signs from the encounter start to now."""
    spec = scenario.phoenix
    onset = scenario_onset(kind, now)
    start = admitted - timedelta(hours=_HOSPITAL_HOURS_BEFORE_ADMISSION)

    def after(hours: float | None) -> datetime:
        """The end of a support `hours` after the onset; None: still running (weaned slowly)."""
        return now + STILL_RUNNING if hours is None else onset + timedelta(hours=hours)

    imv_end = after(spec.imv_hours) if spec.respiratory else None
    second = (after(spec.second_agent_hours), after(None)) if spec.second_agent_hours else None
    high_flow = (
        after((spec.imv_hours or 0) + spec.high_flow_hours) if spec.high_flow_hours else None
    )
    return PhoenixPlan(
        times=StayTimes(start, onset, now),
        group=_GROUP_OF[kind],
        age_months=_months(birth, onset.date()),
        respiratory=spec.respiratory,
        cardiovascular=spec.cardiovascular,
        imv_end=imv_end,
        infusion_end=after(spec.infusion_hours) if spec.cardiovascular else None,
        second_agent=second,
        low_flow_before=False,
        hfnc_until=high_flow,
        arterial_line=spec.respiratory or spec.cardiovascular,
        pupils=spec.pupils,
        fixed_pupils_from=None,
        coagulation=spec.coagulation,
        d_dimer=spec.coagulation,
        onset_fio2=0.6,
        vitals_hours=1.0,
        vitals_skipped=0.0,
    )


def _months(born: date, on: date) -> int:
    """Whole calendar months from `born` to `on`."""
    return (on.year - born.year) * 12 + on.month - born.month - (on.day < born.day)


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
