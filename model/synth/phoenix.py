"""The Phoenix inputs of one synthetic PICU stay: vital signs, gases, labs, support, infusions.

SYNTHETIC. One course per patient, from its own random stream, so the laboratory results do not
change when this module does. Before the organ-dysfunction onset no Phoenix input scores (room
air or low-flow oxygen with SpO2:FiO2 ≥ 292 or SpO2 > 97, a normal mean arterial pressure, GCS ≥ 13,
reactive pupils; the panel's admission platelets may still score 1 point); at the onset, a whole
hour, the dysfunction is charted exactly then:

- respiratory: invasive ventilation starts and SpO2:FiO2 is under 220 (2 points or 3);
- cardiovascular: a vasoactive infusion starts and the mean arterial pressure falls into the
  age band's 1-point range (2 points);
- or both. The Phoenix onset the service computes is therefore the generator's onset.

Afterwards oxygen needs ease until extubation (some children then go onto high-flow nasal
cannula, a DeviceUseStatement), infusions stop, and coagulation labs are drawn daily; a child who
dies stays supported to the end, some with fixed pupils in the last hours. The age bands of the
mean arterial pressure are read from `phoenix-sepsis` itself, never copied.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import phoenix as phx

from model.synth.parameters import GROUP_KEYS, PARAMS
from model.synth.render import UCUM, format_time, synthetic_meta

PHOENIX_STREAM = 7  # the third seed component of a patient's Phoenix random stream
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
VITAL_SIGNS = {
    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
    "code": "vital-signs",
    "display": "Vital Signs",
}
LABORATORY = {
    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
    "code": "laboratory",
    "display": "Laboratory",
}
INTRAVENOUS = {"system": SNOMED, "code": "47625008", "display": "Intravenous route"}
# agent -> (ingredient RxCUI, a clinical-drug RxCUI sent instead for a share of infusions)
AGENTS = {
    "epinephrine": ("3992", "372030"),
    "norepinephrine": ("7512", "373112"),
    "dopamine": ("3628", None),
    "milrinone": ("52769", None),
}
FIRST_AGENTS = ("epinephrine", "norepinephrine", "dopamine")
HOUR = timedelta(hours=1)


def _p(key: str, group: int | None = None) -> float:
    """A parameter, per group when `group` is given."""
    return PARAMS[f"{key}.{GROUP_KEYS[group]}"] if group is not None else PARAMS[key]


@functools.lru_cache(maxsize=32)
def map_band(age_months: int) -> tuple[int, int]:
    """(lowest MAP scoring 1 point or less, lowest MAP scoring 0) for the age, from the package."""
    pressures = np.arange(1, 200)
    points = phx.phoenix_cardiovascular(
        vasoactives=np.zeros(pressures.size),
        lactate=np.full(pressures.size, np.nan),
        age=np.full(pressures.size, float(age_months)),
        map=pressures,
    )
    return int(pressures[points <= 1][0]), int(pressures[points == 0][0])


@dataclass(frozen=True, slots=True)
class StayTimes:
    """The stay's timeline: admission (encounter start), onset (a whole hour) and end."""

    admitted: datetime
    onset: datetime
    end: datetime

    def at(self, hours: float) -> datetime:
        """The moment `hours` after the onset."""
        return self.onset + timedelta(hours=hours)


@dataclass(frozen=True, slots=True)
class PhoenixPlan:
    """The latent Phoenix course of one child."""

    times: StayTimes
    group: int
    age_months: int
    respiratory: bool  # ventilated and hypoxaemic from the onset
    cardiovascular: bool  # infusion and hypotension from the onset
    imv_end: datetime | None
    infusion_end: datetime | None
    second_agent: tuple[datetime, datetime] | None
    low_flow_before: bool  # low-flow oxygen before the onset
    hfnc_until: datetime | None  # high-flow nasal cannula after extubation
    arterial_line: bool
    pupils: bool
    fixed_pupils_from: datetime | None
    coagulation: bool
    d_dimer: bool
    onset_fio2: float
    vitals_hours: float = 4.0  # vital signs every this many hours (hourly around the onset)
    vitals_skipped: float = 0.0  # the share of vital-signs sets not charted


def plan_course(
    rng: np.random.Generator,
    times: StayTimes,
    *,
    group: int,
    age_months: int,
    died: bool,
    complicated: bool,
) -> PhoenixPlan:
    """Draw the child's Phoenix course."""
    draw = rng.random()
    respiratory_only = _p("phoenix.onset.respiratory_only", group)
    cardiovascular_only = _p("phoenix.onset.cardiovascular_only", group)
    respiratory = draw < respiratory_only or draw >= respiratory_only + cardiovascular_only
    cardiovascular = draw >= respiratory_only
    supported_to_end = died or complicated
    imv_end = _support_end(rng, times, "phoenix.imv_hours", group, supported_to_end)
    infusion_end = _support_end(rng, times, "phoenix.vasoactive_hours", group, supported_to_end)
    second = None
    if cardiovascular and rng.random() < _p("phoenix.second_agent", group):
        start = times.at(float(rng.uniform(2, 12)))
        second = (start, max(start + HOUR, infusion_end - timedelta(hours=2)))
    hfnc = None
    if respiratory and not died and rng.random() < _p("phoenix.hfnc_after_extubation_share"):
        hfnc = min(times.end, imv_end + timedelta(hours=_p("phoenix.hfnc_hours")))
    fixed = None
    if died and rng.random() < _p("phoenix.fixed_pupils_before_death_share"):
        fixed = times.end - timedelta(hours=_p("phoenix.fixed_pupils_hours"))
    coagulation = rng.random() < _p("phoenix.coag_panel_share", group)
    return PhoenixPlan(
        times=times,
        group=group,
        age_months=age_months,
        respiratory=respiratory,
        cardiovascular=cardiovascular,
        imv_end=imv_end if respiratory else None,
        infusion_end=infusion_end if cardiovascular else None,
        second_agent=second,
        low_flow_before=rng.random() < _p("phoenix.pre_onset_low_flow_share"),
        hfnc_until=hfnc,
        arterial_line=rng.random() < _p("phoenix.arterial_line_share"),
        pupils=rng.random() < _p("phoenix.pupils_share"),
        fixed_pupils_from=fixed,
        coagulation=coagulation,
        d_dimer=coagulation and rng.random() < _p("phoenix.d_dimer_share"),
        onset_fio2=float(rng.uniform(_p("phoenix.onset.fio2_min"), _p("phoenix.onset.fio2_max"))),
        vitals_hours=_p("phoenix.vitals_interval_hours"),
        vitals_skipped=_p("phoenix.vitals_skipped"),
    )


def _support_end(
    rng: np.random.Generator, times: StayTimes, key: str, group: int, to_end: bool
) -> datetime:
    """When a support started at the onset stops: a log-normal duration, or the stay's end."""
    hours = math.exp(math.log(_p(key, group)) + _p(f"{key}.sigma") * rng.standard_normal())
    end = times.at(max(4.0, hours))
    latest = times.end - HOUR
    return latest if to_end or end > latest else end


# --- the child's state at one moment ------------------------------------------------------------


def _on_ventilator(plan: PhoenixPlan, moment: datetime) -> bool:
    return plan.imv_end is not None and plan.times.onset <= moment < plan.imv_end


def _on_infusion(plan: PhoenixPlan, moment: datetime) -> bool:
    return plan.infusion_end is not None and plan.times.onset <= moment < plan.infusion_end


def _oxygen(rng: np.random.Generator, plan: PhoenixPlan, moment: datetime) -> tuple[int, float]:
    """(SpO2 %, FiO2 fraction; 0.21 on room air, not charted) at a vital-signs time."""
    times = plan.times
    if _on_ventilator(plan, moment):
        if moment == times.onset:  # S/F < 220: with the ventilator, 2 or 3 points
            return int(rng.integers(86, 94)), plan.onset_fio2
        weaned = (moment - times.onset) / (plan.imv_end - times.onset)  # type: ignore[operator]
        fio2 = plan.onset_fio2 + weaned * (0.3 - plan.onset_fio2)
        return int(rng.integers(91, 98)), round(fio2, 2)
    if plan.hfnc_until is not None and moment < plan.hfnc_until and moment >= times.onset:
        return int(rng.integers(94, 99)), round(float(rng.uniform(0.3, 0.4)), 2)
    if moment < times.onset and plan.low_flow_before:  # S/F ≥ 320: no point
        return int(rng.integers(96, 100)), round(float(rng.uniform(0.25, 0.3)), 2)
    return int(rng.integers(95, 101)), 0.21


def _mean_pressure(rng: np.random.Generator, plan: PhoenixPlan, moment: datetime) -> int:
    """The mean arterial pressure: in the 1-point band at a cardiovascular onset, else normal."""
    two_points_below, no_point_from = map_band(plan.age_months)
    if plan.cardiovascular and moment == plan.times.onset:
        return int(rng.integers(two_points_below + 1, no_point_from - 1))
    return no_point_from + int(rng.integers(8, 26))


def _systolic_diastolic(rng: np.random.Generator, mean: int) -> tuple[int, int]:
    """A cuff pair whose mean, (2 × DBP + SBP) / 3, is `mean` to within a third of a mmHg."""
    pulse = max(12, round(0.45 * mean + float(rng.uniform(-4, 4))))
    diastolic = round(mean - pulse / 3)
    systolic = 3 * mean - 2 * diastolic
    return systolic, diastolic


def _gcs(rng: np.random.Generator, plan: PhoenixPlan, moment: datetime) -> int:
    """GCS: 13–15 before the onset, sedated on the ventilator, 12–15 otherwise."""
    if moment < plan.times.onset:
        return int(rng.integers(13, 16))
    if _on_ventilator(plan, moment):
        return int(rng.integers(6, 12))
    return int(rng.integers(12, 16))


# --- schedules ----------------------------------------------------------------------------------


def _schedule(
    rng: np.random.Generator, times: StayTimes, interval: float, skipped: float, dense: int = 0
) -> Iterator[datetime]:
    """Every `interval` hours from the admission to the end on the onset's grid, hourly within
    `dense` hours of it; the onset itself exact, the others jittered by up to a quarter of their
    spacing and some skipped."""
    before = (times.onset - times.admitted) / HOUR
    after = (times.end - times.onset) / HOUR
    offsets = {float(h) for h in range(-dense, dense + 1)}
    offsets |= {
        k * interval for k in range(-math.floor(before / interval), 1 + int(after // interval))
    }
    for offset in sorted(offsets):
        if offset == 0:
            yield times.onset
            continue
        spacing = 1.0 if abs(offset) <= dense else interval
        moment = times.at(offset + float(rng.uniform(-spacing / 4, spacing / 4)))
        if times.admitted < moment < times.end and rng.random() >= skipped:
            yield moment


# --- rendering ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Writer:
    """Renders one child's resources with its ids, offset and tags."""

    patient_id: str
    encounter_id: str
    offset_minutes: int
    now: datetime | None = None  # a stay still in progress: support running at `now` stays open

    def time(self, moment: datetime) -> str:
        return format_time(moment, self.offset_minutes)

    def period(self, start: datetime, end: datetime) -> tuple[dict[str, str], bool]:
        """(Period, running): open and running when the stay is in progress and lasts to now."""
        if self.now is not None and end >= self.now:
            return {"start": self.time(start)}, True
        return {"start": self.time(start), "end": self.time(end)}, False

    def base(self, kind: str, suffix: str) -> dict[str, Any]:
        return {
            "resourceType": kind,
            "id": f"{self.patient_id}-{suffix}",
            "meta": synthetic_meta(),
        }

    def observation(
        self, suffix: str, code: str, display: str, moment: datetime, category: dict[str, str]
    ) -> dict[str, Any]:
        resource = self.base("Observation", suffix)
        resource |= {
            "status": "final",
            "category": [{"coding": [dict(category)]}],
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
            "subject": {"reference": f"Patient/{self.patient_id}"},
            "encounter": {"reference": f"Encounter/{self.encounter_id}"},
            "effectiveDateTime": self.time(moment),
        }
        return resource


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _component(code: str, display: str, quantity: dict[str, Any]) -> dict[str, Any]:
    return {
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
        "valueQuantity": quantity,
    }


def phoenix_resources(
    rng: np.random.Generator, plan: PhoenixPlan, writer: _Writer
) -> list[dict[str, Any]]:
    """Every Phoenix resource of the stay."""
    resources = [
        *_vital_signs(rng, plan, writer),
        *_neurology(rng, plan, writer),
        *_gases(rng, plan, writer),
        *_coagulation(rng, plan, writer),
        *_support(plan, writer),
        *_infusions(rng, plan, writer),
    ]
    return resources


def writer_for(
    patient_id: str, encounter_id: str, offset_minutes: int, now: datetime | None = None
) -> _Writer:
    """The renderer of one child's resources (`now`: the stay is still in progress)."""
    return _Writer(patient_id, encounter_id, offset_minutes, now)


def _vital_signs(
    rng: np.random.Generator, plan: PhoenixPlan, writer: _Writer
) -> Iterator[dict[str, Any]]:
    """Pulse oximetry (with the FiO2 on oxygen) and a blood-pressure panel, every few hours and
    hourly around the onset."""
    dense = int(_p("phoenix.vitals_hourly_around_onset_hours"))
    schedule = _schedule(rng, plan.times, plan.vitals_hours, plan.vitals_skipped, dense)
    for number, moment in enumerate(schedule):
        spo2, fio2 = _oxygen(rng, plan, moment)
        pulse_ox = writer.observation(
            f"spo2-{number}", "59408-5", "Oxygen saturation by Pulse oximetry", moment, VITAL_SIGNS
        )
        pulse_ox["valueQuantity"] = _quantity(spo2, "%")
        if fio2 > 0.21:
            as_fraction = rng.random() < _p("phoenix.share.fio2_fraction")
            sent = _quantity(fio2 if as_fraction else round(fio2 * 100), "%")
            pulse_ox["component"] = [_component("3150-0", "Inhaled oxygen concentration", sent)]
        yield pulse_ox
        yield _blood_pressure(rng, plan, writer, number, moment)


def _blood_pressure(
    rng: np.random.Generator, plan: PhoenixPlan, writer: _Writer, number: int, moment: datetime
) -> dict[str, Any]:
    """A blood-pressure panel: by cuff (systolic, diastolic), or by the arterial line (invasive
    systolic, diastolic and mean) while the child has one and is supported."""
    mean = _mean_pressure(rng, plan, moment)
    systolic, diastolic = _systolic_diastolic(rng, mean)
    panel = writer.observation(f"bp-{number}", "85354-9", "Blood pressure panel", moment,
                               VITAL_SIGNS)  # fmt: skip
    supported = _on_ventilator(plan, moment) or _on_infusion(plan, moment)
    parts = (
        (("76215-3", "Invasive Systolic blood pressure", systolic),
         ("76213-8", "Invasive Diastolic blood pressure", diastolic),
         ("76214-6", "Invasive Mean blood pressure", mean))
        if plan.arterial_line and supported
        else (("8480-6", "Systolic blood pressure", systolic),
              ("8462-4", "Diastolic blood pressure", diastolic))
    )  # fmt: skip
    panel["component"] = [
        _component(code, display, _quantity(value, "mm[Hg]")) for code, display, value in parts
    ]
    return panel


def _neurology(
    rng: np.random.Generator, plan: PhoenixPlan, writer: _Writer
) -> Iterator[dict[str, Any]]:
    """GCS total, and both pupils for children with neurological checks."""
    interval = _p("phoenix.gcs_interval_hours")
    for number, moment in enumerate(_schedule(rng, plan.times, interval, 0.0)):
        gcs = writer.observation(
            f"gcs-{number}", "9269-2", "Glasgow coma score total", moment, VITAL_SIGNS
        )
        gcs["valueQuantity"] = {"value": _gcs(rng, plan, moment), "unit": "{score}"}
        yield gcs
        if not plan.pupils:
            continue
        fixed = plan.fixed_pupils_from is not None and moment >= plan.fixed_pupils_from
        answer = ("LA25442-7", "Not reactive to light") if fixed else ("LA25441-9", "Reactive")
        for side, code in (("right", "79815-7"), ("left", "79899-1")):
            pupil = writer.observation(
                f"pupil-{side}-{number}", code, f"{side.title()} pupil Pupillary response",
                moment, VITAL_SIGNS,
            )  # fmt: skip
            coding = {"system": LOINC, "code": answer[0], "display": answer[1]}
            pupil["valueCodeableConcept"] = {"coding": [coding]}
            yield pupil


def _gases(
    rng: np.random.Generator, plan: PhoenixPlan, writer: _Writer
) -> Iterator[dict[str, Any]]:
    """Arterial PaO2 every few hours while a ventilated child has an arterial line."""
    if plan.imv_end is None or not plan.arterial_line:
        return
    interval = _p("phoenix.gas_interval_hours")
    moment, number = plan.times.onset + HOUR, 0
    while moment < min(plan.imv_end, plan.times.end):
        gas = writer.observation(
            f"pao2-{number}", "2703-7", "Oxygen [Partial pressure] in Arterial blood", moment,
            LABORATORY,
        )  # fmt: skip
        gas["valueQuantity"] = _quantity(int(rng.integers(58, 110)), "mm[Hg]")
        yield gas
        moment += timedelta(hours=interval)
        number += 1


def _coagulation(
    rng: np.random.Generator, plan: PhoenixPlan, writer: _Writer
) -> Iterator[dict[str, Any]]:
    """INR and fibrinogen daily from the onset (D-dimer for some), in the laboratory's units."""
    if not plan.coagulation:
        return
    day = 0
    while (moment := plan.times.at(2.0 + 24 * day)) < plan.times.end:
        yield _lab(rng, plan, writer, "inr", day, moment)
        yield _lab(rng, plan, writer, "fibrinogen", day, moment)
        if plan.d_dimer:
            yield _lab(rng, plan, writer, "d_dimer", day, moment)
        day += 1


_LABS = {  # input -> (code, display, canonical unit, alternate (share key, unit, factor))
    "inr": ("6301-6", "INR in Platelet poor plasma by Coagulation assay", "{INR}", None),
    "fibrinogen": (
        "3255-7",
        "Fibrinogen [Mass/volume] in Platelet poor plasma by Coagulation assay",
        "mg/dL",
        ("phoenix.share.fibrinogen_g_l", "g/L", 0.01),
    ),
    "d_dimer": (
        "48065-7",
        "Fibrin D-dimer FEU [Mass/volume] in Platelet poor plasma",
        "mg/L",
        ("phoenix.share.d_dimer_ug_l", "ug/L", 1000.0),
    ),
}


def _lab(
    rng: np.random.Generator, plan: PhoenixPlan, writer: _Writer, key: str, day: int, moment
) -> dict[str, Any]:
    """One coagulation result: log-normal around the group median, sometimes in another unit."""
    code, display, unit, alternate = _LABS[key]
    median, sigma = _p(f"phoenix.median.{key}", plan.group), _p(f"phoenix.sigma.{key}")
    value = math.exp(math.log(median) + sigma * rng.standard_normal())
    lab = writer.observation(f"{key.replace('_', '')}-{day}", code, display, moment, LABORATORY)
    if alternate is not None and rng.random() < _p(alternate[0]):
        lab["valueQuantity"] = _quantity(round(value * alternate[2], 2), alternate[1])
    elif key == "inr":
        lab["valueQuantity"] = {"value": round(value, 2), "unit": "INR", "system": UCUM,
                                "code": "{INR}"}  # fmt: skip
    else:
        lab["valueQuantity"] = _quantity(round(value, 1), unit)
    return lab


def _support(plan: PhoenixPlan, writer: _Writer) -> Iterator[dict[str, Any]]:
    """Procedures for low-flow oxygen before the onset and ventilation from it; the high-flow
    cannula after extubation as a DeviceUseStatement with its Device."""
    times = plan.times
    if plan.low_flow_before:
        low_flow = ("371907003", "Oxygen administration by nasal cannula")
        yield _procedure(writer, "low-flow", *low_flow, times.admitted, times.onset)
    if plan.imv_end is not None:
        ventilation = ("1258985005", "Invasive mechanical ventilation")
        yield _procedure(writer, "imv", *ventilation, times.onset, plan.imv_end)
    if plan.hfnc_until is not None and plan.imv_end is not None:
        device = writer.base("Device", "hfnc")
        device["type"] = {"coding": [{"system": SNOMED, "code": "426854004",
                                      "display": "High flow oxygen nasal cannula"}]}  # fmt: skip
        device["patient"] = {"reference": f"Patient/{writer.patient_id}"}
        yield device
        statement = writer.base("DeviceUseStatement", "hfnc-use")
        period, running = writer.period(plan.imv_end, plan.hfnc_until)
        statement |= {
            "status": "active" if running else "completed",
            "subject": {"reference": f"Patient/{writer.patient_id}"},
            "timingPeriod": period,
            "device": {"reference": f"Device/{device['id']}"},
        }
        yield statement


def _procedure(
    writer: _Writer, suffix: str, code: str, display: str, start: datetime, end: datetime
) -> dict[str, Any]:
    procedure = writer.base("Procedure", suffix)
    period, running = writer.period(start, end)
    procedure |= {
        "status": "in-progress" if running else "completed",
        "code": {"coding": [{"system": SNOMED, "code": code, "display": display}]},
        "subject": {"reference": f"Patient/{writer.patient_id}"},
        "encounter": {"reference": f"Encounter/{writer.encounter_id}"},
        "performedPeriod": period,
    }
    return procedure


def _infusions(
    rng: np.random.Generator, plan: PhoenixPlan, writer: _Writer
) -> Iterator[dict[str, Any]]:
    """The first vasoactive infusion from the onset, and a second agent for some."""
    if plan.infusion_end is None:
        return
    first = FIRST_AGENTS[int(rng.integers(len(FIRST_AGENTS)))]
    yield _infusion(rng, writer, 1, first, plan.times.onset, plan.infusion_end)
    if plan.second_agent is not None:
        second = "milrinone" if first != "milrinone" else "epinephrine"
        yield _infusion(rng, writer, 2, second, *plan.second_agent)


def _infusion(
    rng: np.random.Generator,
    writer: _Writer,
    number: int,
    agent: str,
    start: datetime,
    end: datetime,
) -> dict[str, Any]:
    """A continuous intravenous infusion over a period, by ingredient or clinical-drug RxCUI."""
    ingredient, clinical_drug = AGENTS[agent]
    by_product = clinical_drug and rng.random() < _p("phoenix.share.infusion_clinical_drug_code")
    code = clinical_drug if by_product else ingredient
    infusion = writer.base("MedicationAdministration", f"infusion-{number}")
    period, running = writer.period(start, end)
    infusion |= {
        "status": "in-progress" if running else "completed",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": code}]},
        "subject": {"reference": f"Patient/{writer.patient_id}"},
        "context": {"reference": f"Encounter/{writer.encounter_id}"},
        "effectivePeriod": period,
        "dosage": {
            "route": {"coding": [dict(INTRAVENOUS)]},
            "rateQuantity": {
                "value": 0.1,
                "unit": "ug/kg/min",
                "system": UCUM,
                "code": "ug/kg/min",
            },  # fmt: skip
        },
    }
    return infusion
