"""One synthetic cohort patient at a time: latent course, demographics, draws and results.

One numpy `Generator` per patient, seeded from (seed, patient index), so patient `i` is the same
whatever `n` is. The latent group at onset, day 3 and day 7 sets each marker's level; the
parameters (`model.synth.parameters`) set every share, median, spread and correlation.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import numpy as np

from fhir_mappings.panel import Panel, load_panel
from model.synth.parameters import (
    ANALYTES,
    GROUP_KEYS,
    GROUPS,
    PARAMS,
    PRE_ONSET_ANALYTES,
    REPRESENTATIONS,
    SCHEDULE_HOURS,
    SEND_OUT_DAY5_HOUR,
    SEND_OUT_HOURS,
    SEND_OUTS,
    SITE_OFFSETS_MINUTES,
    Representation,
    correlation_matrix,
)
from model.synth.phoenix import (
    PHOENIX_STREAM,
    StayTimes,
    phoenix_resources,
    plan_course,
    writer_for,
)
from model.synth.records import Cohort, LatentState, OutcomeRow, PatientRecord
from model.synth.render import (
    COHORT_PICU_ID,
    Result,
    encounter_resource,
    format_time,
    observation_resource,
    patient_resource,
    zone,
)

DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)
_CHOLESKY = np.linalg.cholesky(correlation_matrix())


def _share(rng: np.random.Generator, key: str) -> bool:
    return bool(rng.random() < PARAMS[key])


def _group_param(prefix: str, group: int) -> float:
    return PARAMS[f"{prefix}.{GROUP_KEYS[group]}"]


def _months_between(born: date, on: date) -> int:
    months = (on.year - born.year) * 12 + (on.month - born.month)
    return months - (1 if on.day < born.day else 0)


@dataclass(frozen=True, slots=True)
class _Course:
    """A patient's latent clinical course."""

    groups: tuple[int, int, int]  # onset, day 3, day 7
    sepsis: bool
    died: bool
    complicated: bool
    ifng_high: bool
    end_hours: float  # death or PICU discharge, hours after onset


def _transition(rng: np.random.Generator, group: int, complicated: bool) -> int:
    prefix = "transition.complicated." if complicated else "transition."
    probabilities = np.zeros(3)
    for target in range(3):
        if target != group:
            key = f"{prefix}{GROUP_KEYS[group]}.{GROUP_KEYS[target]}"
            probabilities[target] = PARAMS.get(key, 0.0)
    probabilities[group] = 1.0 - probabilities.sum()
    return int(rng.choice(3, p=probabilities))


def _day7_group(rng: np.random.Generator, day3: int, complicated: bool) -> int:
    if complicated or day3 == 0 or not _share(rng, "day7_step_toward_quiescent"):
        return day3
    return day3 - 1


def _course(rng: np.random.Generator) -> _Course:
    shares = [_group_param("group_share", g) for g in range(3)]
    onset = int(rng.choice(3, p=np.array(shares) / sum(shares)))
    sepsis = bool(rng.random() < _group_param("sepsis_share", onset))
    died = bool(rng.random() < _group_param("picu_mortality", onset))
    complicated = died or bool(rng.random() < _group_param("mods_day7_if_alive", onset))
    day3 = _transition(rng, onset, complicated)
    day7 = _day7_group(rng, day3, complicated)
    ifng_high = onset == 2 and _share(rng, "ifng_high_share_of_hyperinflammatory")
    if died:
        end_days = rng.uniform(PARAMS["death_day_min"], PARAMS["death_day_max"])
    else:
        low = 7.0 if complicated else PARAMS["stay_days_min"]
        end_days = rng.uniform(low, max(low + 1.0, PARAMS["stay_days_max"]))
    return _Course((onset, day3, day7), sepsis, died, complicated, ifng_high, end_days * 24.0)


def _sex(rng: np.random.Generator, group: int) -> str:
    draw = rng.random()
    if draw < PARAMS["sex_unknown_share"]:
        return "unknown"
    if draw < PARAMS["sex_unknown_share"] + PARAMS["sex_other_share"]:
        return "other"
    return "female" if rng.random() < _group_param("female_share", group) else "male"


def _birth_date(rng: np.random.Generator, onset_day: date) -> date:
    low, high = int(PARAMS["age_min_months"]), int(PARAMS["age_max_months"])
    if _share(rng, "infant_share"):
        months = int(rng.integers(low, 12))
    else:
        months = int(rng.integers(12, high + 1))
    days_into_month = int(rng.integers(0, 28))
    born = onset_day - timedelta(days=round(months * 30.4375) + days_into_month)
    while _months_between(born, onset_day) > high:
        born += timedelta(days=1)
    while _months_between(born, onset_day) < low:
        born -= timedelta(days=1)
    return born


def _group_log_median(analyte: str, group: int, ifng_high: bool) -> float:
    if ifng_high and group == 2 and analyte in {"cxcl9", "ifng"}:
        return math.log(PARAMS[f"median.{analyte}.ifng_high"])
    return math.log(_group_param(f"median.{analyte}", group))


_DAY3_HOURS, _DAY7_HOURS = 72.0, 168.0


def _group_levels(analyte: str, course: _Course) -> tuple[float, float, float]:
    """The log group medians of one analyte at day 0, 3 and 7 of a patient's course."""
    day0, day3, day7 = (_group_log_median(analyte, g, course.ifng_high) for g in course.groups)
    if analyte == "ferritin" and course.complicated:
        rise = math.log(PARAMS["ferritin_rise.complicated"])
        return day0, day3 + rise, day7 + rise
    return day0, day3, day7


def _log_level(levels: tuple[float, float, float], hours: float) -> float:
    """The group-level log median at a time, interpolated between day 0, 3 and 7."""
    if hours >= _DAY7_HOURS:
        return levels[2]
    if hours >= _DAY3_HOURS:
        fraction = (hours - _DAY3_HOURS) / (_DAY7_HOURS - _DAY3_HOURS)
        return levels[1] + fraction * (levels[2] - levels[1])
    return levels[0] + max(hours, 0.0) / _DAY3_HOURS * (levels[1] - levels[0])


def _patient_shift(analyte: str, course: _Course, age_months: int) -> float:
    shift = 0.0
    if not course.sepsis:
        shift += math.log(PARAMS.get(f"non_septic_factor.{analyte}", 1.0))
    if analyte == "lymphocytes" and age_months < 12:
        shift += math.log(PARAMS["age_factor.lymphocytes.infant"])
    elif analyte == "lymphocytes" and age_months < 60:
        shift += math.log(PARAMS["age_factor.lymphocytes.under_5y"])
    return shift


def _measured_analytes(rng: np.random.Generator, group: int) -> list[str]:
    minimal = _share(rng, "minimal_workup_share")
    measured = []
    for analyte in SCHEDULE_HOURS:
        if minimal and analyte in {"il6", "ferritin"}:
            continue
        if not _share(rng, f"never_measured.{analyte}"):
            measured.append(analyte)
    if rng.random() < _group_param("send_out_ordered", group):
        measured += [a for a in sorted(SEND_OUTS) if _share(rng, "send_out_analyte_present")]
    return measured


def _draw_hours(rng: np.random.Generator, analyte: str, end_hours: float) -> list[float]:
    if analyte in SEND_OUTS:
        nominal = list(SEND_OUT_HOURS)
        if _share(rng, "send_out_day5_share"):
            nominal.append(SEND_OUT_DAY5_HOUR)
    else:
        nominal = list(SCHEDULE_HOURS[analyte])
    jitter = PARAMS["draw_jitter_hours"]
    hours = []
    for index, hour in enumerate(nominal):
        if index > 0 and _share(rng, "draw_skipped"):
            continue
        drawn = max(0.25, hour + rng.uniform(-jitter, jitter))
        if drawn < end_hours:
            hours.append(drawn)
    return hours


def _representation(rng: np.random.Generator, analyte: str) -> Representation:
    draw, cumulative = rng.random(), 0.0
    for share_key, rep in REPRESENTATIONS[analyte]:
        if share_key is None:
            return rep
        cumulative += PARAMS[share_key]
        if draw < cumulative:
            return rep
    raise AssertionError(f"{analyte}: REPRESENTATIONS has no default")


@dataclass(frozen=True, slots=True)
class _Context:
    """Per-patient constants needed to render results."""

    patient_id: str
    encounter_id: str
    onset: datetime
    offset_minutes: int
    admission_lead_hours: float = 24.0  # PICU admission, hours before onset


def _status(rng: np.random.Generator) -> str:
    draw = rng.random()
    if draw < PARAMS["share.preliminary"]:
        return "preliminary"
    if draw < PARAMS["share.preliminary"] + PARAMS["share.amended"]:
        return "amended"
    return "final"


def _result_shape(rng: np.random.Generator, time: datetime, offset_minutes: int) -> dict[str, Any]:
    """Status, timing form and time rendering of one result."""
    timing = rng.random()
    shape: dict[str, Any] = {"status": _status(rng), "as_utc": _share(rng, "share.utc_rendering")}
    if timing < PARAMS["share.effective_period"]:
        shape["period_minutes"] = int(rng.integers(10, 60))
    elif timing < PARAMS["share.effective_period"] + PARAMS["share.date_only"]:
        shape["effective"] = time.astimezone(zone(offset_minutes)).date().isoformat()
    return shape


def _render(
    rng: np.random.Generator, panel: Panel, ctx: _Context, result: Result
) -> list[dict[str, Any]]:
    """The Observation for one result, plus a voided mis-keyed twin now and then."""
    rendered = [
        observation_resource(panel, result, ctx.patient_id, ctx.encounter_id, ctx.offset_minutes)
    ]
    if _share(rng, "share.entered_in_error"):
        voided = dataclasses.replace(
            result,
            observation_id=result.observation_id + "-eie",
            value=result.value * 10.0,
            status="entered-in-error",
        )
        rendered.append(
            observation_resource(
                panel, voided, ctx.patient_id, ctx.encounter_id, ctx.offset_minutes
            )
        )
    return rendered


def _turnaround(rng: np.random.Generator, analyte: str) -> timedelta:
    if analyte in SEND_OUTS:
        return timedelta(hours=float(rng.uniform(48, 240)))
    return timedelta(minutes=float(rng.uniform(30, 240)))


def _analyte_results(
    rng: np.random.Generator, ctx: _Context, course: _Course, analyte: str, base: float
) -> list[Result]:
    rep = _representation(rng, analyte)
    hours = _draw_hours(rng, analyte, course.end_hours)
    if analyte in PRE_ONSET_ANALYTES and _share(rng, "pre_onset_draw_share"):
        hours.insert(0, -float(rng.uniform(0.5, ctx.admission_lead_hours)))
    noise = PARAMS["sigma.draw_noise"]
    levels = _group_levels(analyte, course)
    results = []
    for number, hour in enumerate(hours, start=1):
        log_value = _log_level(levels, hour) + base
        value = math.exp(log_value + noise * rng.standard_normal())
        if analyte == "lactate" and hour < 0:  # no Phoenix point before the onset
            value = min(value, PARAMS["pre_onset.lactate_max"])
        time = ctx.onset + timedelta(hours=hour)
        results.append(
            Result(
                observation_id=f"{ctx.patient_id}-{analyte}-{number}",
                analyte=analyte,
                value=value,
                time=time,
                rep=rep,
                issued_after=_turnaround(rng, analyte),
                **_result_shape(rng, time, ctx.offset_minutes),
            )
        )
    return results


def _observations(
    rng: np.random.Generator, panel: Panel, ctx: _Context, course: _Course, age_months: int
) -> list[dict[str, Any]]:
    deviations = _CHOLESKY @ rng.standard_normal(len(ANALYTES))
    observations: list[dict[str, Any]] = []
    for analyte in _measured_analytes(rng, course.groups[0]):
        index = ANALYTES.index(analyte)
        base = PARAMS[f"sigma.{analyte}"] * deviations[index]
        base += _patient_shift(analyte, course, age_months)
        for result in _analyte_results(rng, ctx, course, analyte, base):
            observations += _render(rng, panel, ctx, result)
    return observations


def patient_id_for(seed: int, index: int) -> str:
    """The FHIR id of cohort patient `index` generated with `seed`."""
    return f"syn{seed}-{index:06d}"


def _onset(rng: np.random.Generator, start: datetime) -> datetime:
    """The onset: a whole hour after `start` (the Phoenix score is judged hour by hour)."""
    minutes = int(rng.integers(0, int(PARAMS["onset_spread_days"]) * 24 * 60))
    return start + timedelta(minutes=minutes - minutes % 60)


@dataclass(frozen=True, slots=True)
class _Person:
    """Demographics and timing of one cohort patient."""

    sex: str
    birth: date
    age_months: int
    onset: datetime
    offset_minutes: int
    admission_lead_hours: float


def _person(rng: np.random.Generator, start: datetime, group: int) -> _Person:
    offset = int(rng.choice(SITE_OFFSETS_MINUTES))
    onset = _onset(rng, start)
    sex = _sex(rng, group)
    local_day = onset.astimezone(timezone(timedelta(minutes=offset))).date()
    birth = _birth_date(rng, local_day)
    lead = float(rng.uniform(1, PARAMS["admission_before_onset_max_hours"]))
    return _Person(sex, birth, _months_between(birth, local_day), onset, offset, lead)


def _outcome(patient_id: str, person: _Person, course: _Course) -> OutcomeRow:
    return OutcomeRow(
        patient_id=patient_id,
        onset_time=format_time(person.onset, person.offset_minutes),
        sex=person.sex,
        age_months=person.age_months,
        sepsis=int(course.sepsis),
        picu_death=int(course.died),
        complicated_course=int(course.complicated),
        reference_endotype=GROUPS[course.groups[0]],
    )


def _cohort_encounter(ctx: _Context, course: _Course) -> tuple[dict[str, Any], datetime]:
    lead = timedelta(hours=ctx.admission_lead_hours)
    ended = ctx.onset + timedelta(hours=course.end_hours)
    period = {
        "start": format_time(ctx.onset - lead, ctx.offset_minutes),
        "end": format_time(ended, ctx.offset_minutes),
    }
    encounter = encounter_resource(
        ctx.encounter_id,
        ctx.patient_id,
        period,
        status="finished",
        died=course.died,
        location_id=COHORT_PICU_ID,
        location_status="completed",
    )
    return encounter, ended


def simulate_patient(
    seed: int, index: int, start: datetime, panel: Panel, *, phoenix: bool = True
) -> PatientRecord:
    """Generate one cohort patient; the same (seed, index, start) always gives the same record.

    The Phoenix inputs come from the patient's own second random stream: without them
    (`phoenix=False`) every other resource is the same.
    """
    rng = np.random.default_rng([seed, index])
    patient_id = patient_id_for(seed, index)
    course = _course(rng)
    person = _person(rng, start, course.groups[0])
    ctx = _Context(
        patient_id,
        f"{patient_id}-enc",
        person.onset,
        person.offset_minutes,
        person.admission_lead_hours,
    )
    encounter, ended = _cohort_encounter(ctx, course)
    observations = _observations(rng, panel, ctx, course, person.age_months)
    deceased = format_time(ended, person.offset_minutes) if course.died else None
    label = f"{index:06d}"
    inputs = _phoenix_inputs(seed, index, ctx, course, person, ended) if phoenix else ()
    return PatientRecord(
        patient=patient_resource(patient_id, label, person.sex, person.birth, deceased),
        encounter=encounter,
        observations=tuple(observations),
        outcome=_outcome(patient_id, person, course),
        latent=LatentState(patient_id, *(GROUPS[g] for g in course.groups), course.ifng_high),
        phoenix=tuple(inputs),
    )


def _phoenix_inputs(
    seed: int, index: int, ctx: _Context, course: _Course, person: _Person, ended: datetime
) -> list[dict[str, Any]]:
    """The Phoenix resources of the stay, from the patient's own Phoenix random stream."""
    rng = np.random.default_rng([seed, index, PHOENIX_STREAM])
    times = StayTimes(ctx.onset - timedelta(hours=ctx.admission_lead_hours), ctx.onset, ended)
    plan = plan_course(
        rng,
        times,
        group=course.groups[0],
        age_months=person.age_months,
        died=course.died,
        complicated=course.complicated,
    )
    writer = writer_for(ctx.patient_id, ctx.encounter_id, ctx.offset_minutes)
    return phoenix_resources(rng, plan, writer)


def iter_patient_records(
    n: int, seed: int, *, start: datetime | None = None, phoenix: bool = True
) -> Iterator[PatientRecord]:
    """Generate cohort patients one at a time (for progress bars and bounded memory)."""
    if n < 0 or seed < 0:
        raise ValueError("n and seed must be non-negative")
    start = start or DEFAULT_START
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    panel = load_panel()
    for index in range(n):
        yield simulate_patient(seed, index, start, panel, phoenix=phoenix)


def generate_cohort(
    n: int,
    seed: int,
    *,
    start: datetime | None = None,
    labelled: bool = True,
    phoenix: bool = True,
) -> Cohort:
    """A seeded synthetic cohort of `n` patients; `labelled=False` empties reference_endotype;
    `phoenix=False` leaves out the Phoenix inputs (the laboratory results stay the same)."""
    records = iter_patient_records(n, seed, start=start, phoenix=phoenix)
    cohort = Cohort.from_records(n, seed, records)
    return cohort if labelled else cohort.without_labels()
