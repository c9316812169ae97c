"""The Phoenix Sepsis Score over a stay: an hourly course, its four subscores, and its onset.

Pure: readings (from `fhir_mappings.phoenix_inputs`) and a patient in, a `PhoenixCourse` out.

- The grid: every whole hour from the start of the range to its end, and the end itself when it
  is not on the hour (so the latest point is "now"). Each point is the state at that instant.
- Carry-forward: at each instant, an input's latest reading at or before it, if no older than the
  input's window (inclusive); otherwise the input is missing. No imputation: a missing input
  scores 0 points (the package's semantics) and is listed in the point's `missing`.
- Derived inputs follow the Phoenix EHR implementation notes: P/F and S/F only when the FiO2 in
  effect is as old as or older than the PaO2/SpO2, S/F only when SpO2 <= 97; other support when
  FiO2 > 0.21; MAP by source (arterial MAP, arterial SBP/DBP, cuff MAP, cuff SBP/DBP), the
  arterial source preferred when it is within an hour of the newest; GCS total, or the sum of
  the latest components when those are newer; fixed pupils only when both sides are not reactive.
- Support and infusions are intervals: a period counts from its start to its end (or to the
  instant, while ongoing); a point counts for its carry-forward window.
- `phoenix.phoenix` (and `phoenix.phoenix8` on request) is called once for the whole grid.
- Onset: the first point with a total of 2 or more.
- Out of scope (no scores): age unknown, age >= 216 months at the encounter start, the birth
  hospitalisation, or gestational age at the encounter start (at birth plus age) < 37 weeks.
"""

from __future__ import annotations

import calendar
import importlib.metadata
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum

import numpy as np
import phoenix as phx

from fhir_mappings.phoenix_inputs import (
    VASOACTIVE_KEY,
    PhoenixCatalog,
    PhoenixPatient,
    PhoenixReading,
    load_phoenix_catalog,
)

if not (hasattr(phx, "phoenix") and hasattr(phx, "phoenix8")):  # arize-phoenix shares the name
    raise ImportError("the module named phoenix is not phoenix-sepsis")

PACKAGE = "phoenix-sepsis"
PACKAGE_VERSION = importlib.metadata.version(PACKAGE)
ONSET_THRESHOLD = 2
MAX_AGE_MONTHS = 216
TERM_WEEKS = 37
HOUR = timedelta(hours=1)
SAME_HOUR = 3600.0  # seconds: an arterial MAP this close to the newest value is preferred
SPO2_MAX_FOR_SF = 97.0
ROOM_AIR = 0.21

# What a point can lack, and how the card names it.
MISSING_DISPLAY: dict[str, str] = {
    "oxygenation": "PaO2:FiO2 or SpO2:FiO2",
    "lactate": "lactate",
    "map": "mean arterial pressure",
    "platelets": "platelets",
    "inr": "INR",
    "d_dimer": "D-dimer",
    "fibrinogen": "fibrinogen",
    "gcs": "GCS",
    "fixed_pupils": "pupils (both sides)",
}
PHOENIX8_MISSING_DISPLAY: dict[str, str] = {
    "glucose": "glucose",
    "anc": "neutrophil count",
    "alc": "lymphocyte count",
    "creatinine": "creatinine",
    "bilirubin": "bilirubin",
    "alt": "ALT",
}
_LABS = ("lactate", "platelets", "inr", "d_dimer", "fibrinogen")
_PHOENIX8_LABS = tuple(PHOENIX8_MISSING_DISPLAY)


class OutOfScope(StrEnum):
    """Why a child is not scored; the card says so instead of showing a score."""

    AGE_UNKNOWN = "age-unknown"
    AGE_216_MONTHS_OR_MORE = "age-216-months-or-more"
    BIRTH_HOSPITALISATION = "birth-hospitalisation"
    GESTATIONAL_AGE_UNDER_37_WEEKS = "gestational-age-under-37-weeks"


OUT_OF_SCOPE_DISPLAY = {
    OutOfScope.AGE_UNKNOWN: "no full birth date, so no age in months",
    OutOfScope.AGE_216_MONTHS_OR_MORE: "aged 18 years (216 months) or more at the encounter start",
    OutOfScope.BIRTH_HOSPITALISATION: "still in the birth hospitalisation",
    OutOfScope.GESTATIONAL_AGE_UNDER_37_WEEKS: "gestational age under 37 weeks at encounter start",
}


@dataclass(frozen=True, slots=True)
class PhoenixPoint:
    """The Phoenix score at one instant, its subscores and the inputs behind it."""

    time: datetime
    total: int  # Phoenix Sepsis Score, 0-13
    respiratory: int  # 0-3
    cardiovascular: int  # 0-6
    coagulation: int  # 0-2
    neurologic: int  # 0-2
    missing: tuple[str, ...]  # keys of MISSING_DISPLAY (and PHOENIX8_MISSING_DISPLAY)
    inputs: Mapping[str, float]  # the package arguments that had a value, in its units
    phoenix8_total: int | None = None  # research only: Phoenix-8 score, 0-17
    phoenix8_subscores: Mapping[str, int] | None = None  # endocrine, immunologic, renal, hepatic

    @property
    def subscores(self) -> dict[str, int]:
        """The four organ subscores by name."""
        return {
            "respiratory": self.respiratory,
            "cardiovascular": self.cardiovascular,
            "coagulation": self.coagulation,
            "neurologic": self.neurologic,
        }


@dataclass(frozen=True, slots=True)
class PhoenixCourse:
    """The Phoenix score over a stay; no points when the child is out of scope."""

    start: datetime
    end: datetime
    points: tuple[PhoenixPoint, ...]
    onset: PhoenixPoint | None  # first point with total >= 2
    out_of_scope: OutOfScope | None = None
    package: str = f"{PACKAGE} {PACKAGE_VERSION}"
    phoenix8: bool = False
    carry_forward_hours: Mapping[str, float] = field(default_factory=dict)

    @property
    def latest(self) -> PhoenixPoint | None:
        """The most recent point, None when out of scope."""
        return self.points[-1] if self.points else None


def phoenix_course(
    readings: Iterable[PhoenixReading],
    patient: PhoenixPatient,
    *,
    start: datetime,
    end: datetime,
    catalog: PhoenixCatalog | None = None,
    phoenix8: bool = False,
) -> PhoenixCourse:
    """The hourly Phoenix course from `start` (the encounter start) to `end` (now)."""
    _check_range(start, end)
    catalog = catalog or load_phoenix_catalog()
    windows = _windows(catalog)
    reason = out_of_scope(patient, patient.encounter_start or start)
    if reason is not None:
        return PhoenixCourse(
            start, end, (), None, reason, phoenix8=phoenix8, carry_forward_hours=windows
        )
    points = phoenix_points(
        readings, patient, hourly_grid(start, end), catalog=catalog, phoenix8=phoenix8
    )
    onset = next((point for point in points if point.total >= ONSET_THRESHOLD), None)
    return PhoenixCourse(start, end, points, onset, phoenix8=phoenix8, carry_forward_hours=windows)


def _check_range(start: datetime, end: datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    if end < start:
        raise ValueError("end is before start")


def _windows(catalog: PhoenixCatalog) -> dict[str, float]:
    """Carry-forward hours per reading input, for the card and the extension."""
    keys = [*catalog.inputs, *catalog.support, VASOACTIVE_KEY]
    return {key: catalog.carry_forward(key) / HOUR for key in keys}


def hourly_grid(start: datetime, end: datetime) -> tuple[datetime, ...]:
    """Every whole hour in [start, end], then `end` itself when it is not on the hour."""
    first = start.replace(minute=0, second=0, microsecond=0)
    if first < start:
        first += HOUR
    count = max(0, int((end - first) / HOUR) + 1) if first <= end else 0
    times = [first + i * HOUR for i in range(count)]
    if not times or times[-1] != end:
        times.append(end)
    return tuple(times)


def age_in_months(patient: PhoenixPatient, when: datetime) -> float | None:
    """Calendar age in months (whole months plus the elapsed part of the current one), not
    corrected for prematurity; None without a birth date."""
    if patient.birth_date is None:
        return None
    birth, today = patient.birth_date, when.date()
    months = (today.year - birth.year) * 12 + today.month - birth.month
    if _monthiversary(birth, months) > today:
        months -= 1
    last, following = _monthiversary(birth, months), _monthiversary(birth, months + 1)
    return months + (today - last).days / (following - last).days


def _monthiversary(birth: date, months: int) -> date:
    """The date `months` calendar months after `birth` (the month's last day when shorter)."""
    year, month = divmod(birth.month - 1 + months, 12)
    year += birth.year
    month += 1
    return date(year, month, min(birth.day, calendar.monthrange(year, month)[1]))


def out_of_scope(patient: PhoenixPatient, encounter_start: datetime) -> OutOfScope | None:
    """Why Phoenix does not apply to this child in this encounter, or None when it does."""
    age = age_in_months(patient, encounter_start)
    if age is None:
        return OutOfScope.AGE_UNKNOWN
    if age >= MAX_AGE_MONTHS:
        return OutOfScope.AGE_216_MONTHS_OR_MORE
    if patient.birth_hospitalisation:
        return OutOfScope.BIRTH_HOSPITALISATION
    if patient.gestational_age_weeks is not None:
        days = (encounter_start.date() - patient.birth_date).days  # type: ignore[operator]
        if patient.gestational_age_weeks + days / 7 < TERM_WEEKS:
            return OutOfScope.GESTATIONAL_AGE_UNDER_37_WEEKS
    return None


# --- carried-forward state at each instant ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Carried:
    """One input at every instant: its value (NaN when none in the window) and its time."""

    value: np.ndarray
    time: np.ndarray  # epoch seconds of the reading in effect; NaN when none

    @property
    def present(self) -> np.ndarray:
        return ~np.isnan(self.value)


def _seconds(times: Sequence[datetime]) -> np.ndarray:
    return np.array([moment.timestamp() for moment in times], dtype=float)


def _carry(readings: Sequence[PhoenixReading], grid: np.ndarray, window: timedelta) -> _Carried:
    """The latest reading at or before each instant, if no older than `window`."""
    if not readings:
        empty = np.full(grid.shape, np.nan)
        return _Carried(empty, empty.copy())
    ordered = sorted(readings, key=lambda r: (r.time, r.source or "", r.value))
    times = _seconds([r.time for r in ordered])
    values = np.array([r.value for r in ordered], dtype=float)
    index = np.searchsorted(times, grid, side="right") - 1
    safe = np.clip(index, 0, None)
    valid = (index >= 0) & (grid - times[safe] <= window.total_seconds())
    return _Carried(np.where(valid, values[safe], np.nan), np.where(valid, times[safe], np.nan))


def _active(readings: Sequence[PhoenixReading], grid: np.ndarray, window: timedelta) -> np.ndarray:
    """For each reading, whether it is active at each instant (readings x instants)."""
    if not readings:
        return np.zeros((0, grid.size), dtype=bool)
    starts = _seconds([r.time for r in readings])
    ends = np.array(
        [
            np.inf
            if r.ongoing
            else (r.end.timestamp() if r.end is not None else (r.time + window).timestamp())
            for r in readings
        ]
    )
    return (starts[:, None] <= grid[None, :]) & (grid[None, :] <= ends[:, None])


def phoenix_points(
    readings: Iterable[PhoenixReading],
    patient: PhoenixPatient,
    times: Sequence[datetime],
    *,
    catalog: PhoenixCatalog | None = None,
    phoenix8: bool = False,
) -> tuple[PhoenixPoint, ...]:
    """The Phoenix score at each instant in `times` (ascending), one vectorised package call."""
    if patient.birth_date is None:
        raise ValueError("a birth date is needed for the age in months")
    catalog = catalog or load_phoenix_catalog()
    grid = _seconds(times)
    by_input: dict[str, list[PhoenixReading]] = defaultdict(list)
    for reading in readings:
        by_input[reading.input].append(reading)
    carried = {
        key: _carry(by_input.get(key, []), grid, item.carry_forward)
        for key, item in catalog.inputs.items()
        if item.read_as != "evidence" and (phoenix8 or not item.phoenix8)
    }
    arguments, missing = _arguments(carried, by_input, grid, catalog, patient, times)
    scores = phx.phoenix(**{k: v for k, v in arguments.items() if k in _PHOENIX_ARGUMENTS})
    columns = {name: scores[column].to_numpy() for name, column in _COLUMNS.items()}
    if phoenix8:
        extra = phx.phoenix8(**{k: arguments[k] for k in (*_PHOENIX_ARGUMENTS, *_PHOENIX8_LABS)})
        columns |= {name: extra[column].to_numpy() for name, column in _PHOENIX8_COLUMNS.items()}
    # plain lists: reading one element of a list is far cheaper than of a NumPy array
    rows = {name: values.tolist() for name, values in columns.items()}
    values = {key: np.asarray(v, dtype=float).tolist() for key, v in arguments.items()}
    lacking = {key: lacks.tolist() for key, lacks in missing.items()}
    return tuple(_point(i, times[i], rows, values, lacking, phoenix8) for i in range(len(times)))


_PHOENIX_ARGUMENTS = (
    "pf_ratio",
    "sf_ratio",
    "imv",
    "other_respiratory_support",
    "vasoactives",
    "lactate",
    "map",
    "platelets",
    "inr",
    "d_dimer",
    "fibrinogen",
    "gcs",
    "fixed_pupils",
    "age",
)


def _arguments(
    carried: Mapping[str, _Carried],
    by_input: Mapping[str, list[PhoenixReading]],
    grid: np.ndarray,
    catalog: PhoenixCatalog,
    patient: PhoenixPatient,
    times: Sequence[datetime],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The package's arguments at every instant, and for each missing-input key where it lacks."""
    fio2 = carried["fio2"]
    pf, sf, sf_not_applicable = _ratios(carried["pao2"], carried["spo2"], fio2)
    imv = _active(by_input.get("imv", []), grid, catalog.carry_forward("imv")).any(axis=0)
    other = _active(
        by_input.get("other_respiratory_support", []),
        grid,
        catalog.carry_forward("other_respiratory_support"),
    ).any(axis=0)
    other |= fio2.present & (np.nan_to_num(fio2.value, nan=0.0) > ROOM_AIR)
    mean_pressure = _mean_arterial_pressure(carried)
    gcs = _gcs(carried)
    pupils = _fixed_pupils(carried["pupil_right"], carried["pupil_left"])
    arguments = {
        "pf_ratio": pf,
        "sf_ratio": sf,
        "imv": imv.astype(float),
        "other_respiratory_support": other.astype(float),
        "vasoactives": _vasoactive_count(by_input.get(VASOACTIVE_KEY, []), grid, catalog),
        "map": mean_pressure,
        "gcs": gcs,
        "fixed_pupils": pupils,
        "age": np.array([age_in_months(patient, moment) for moment in times], dtype=float),
    }
    for key in (*_LABS, *_PHOENIX8_LABS):
        if key in carried:
            arguments[key] = carried[key].value
    lacking = {
        "oxygenation": np.isnan(pf) & np.isnan(sf) & ~sf_not_applicable,
        "map": np.isnan(mean_pressure),
        "gcs": np.isnan(gcs),
        "fixed_pupils": np.isnan(pupils),
        **{key: np.isnan(arguments[key]) for key in (*_LABS, *_PHOENIX8_LABS) if key in carried},
    }
    order = (*MISSING_DISPLAY, *PHOENIX8_MISSING_DISPLAY)
    missing = {key: lacking[key] for key in order if key in lacking}
    return arguments, missing


def _ratios(
    pao2: _Carried, spo2: _Carried, fio2: _Carried
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P/F and S/F where the FiO2 in effect is no newer than the PaO2/SpO2; S/F only SpO2 <= 97."""
    with np.errstate(invalid="ignore"):
        pf_valid = pao2.present & fio2.present & (fio2.time <= pao2.time)
        sf_valid = spo2.present & fio2.present & (fio2.time <= spo2.time)
        high_spo2 = spo2.present & (np.nan_to_num(spo2.value, nan=0.0) > SPO2_MAX_FOR_SF)
        pf = np.where(pf_valid, pao2.value / fio2.value, np.nan)
        sf = np.where(sf_valid & ~high_spo2, spo2.value / fio2.value, np.nan)
    return pf, sf, high_spo2


_MAP_SOURCES = (  # priority order: arterial MAP, arterial SBP/DBP, cuff MAP, cuff SBP/DBP
    ("map_arterial", None),
    ("sbp_arterial", "dbp_arterial"),
    ("map_cuff", None),
    ("sbp_cuff", "dbp_cuff"),
)


def _mean_arterial_pressure(carried: Mapping[str, _Carried]) -> np.ndarray:
    """MAP by source priority among the sources within an hour of the newest one."""
    values, times = [], []
    for first, second in _MAP_SOURCES:
        if second is None:
            values.append(carried[first].value)
            times.append(carried[first].time)
            continue
        sbp, dbp = carried[first], carried[second]
        with np.errstate(invalid="ignore"):
            paired = sbp.present & dbp.present & (sbp.time == dbp.time)
            paired &= sbp.value - dbp.value >= 1
        values.append(np.where(paired, phx.map(sbp=sbp.value, dbp=dbp.value), np.nan))
        times.append(np.where(paired, sbp.time, np.nan))
    value_rows, time_rows = np.vstack(values), np.vstack(times)
    newest = np.nanmax(np.where(np.isnan(time_rows), -np.inf, time_rows), axis=0)
    eligible = ~np.isnan(value_rows) & (time_rows >= newest - SAME_HOUR)
    chosen = np.argmax(eligible, axis=0)
    result = value_rows[chosen, np.arange(value_rows.shape[1])]
    return np.where(eligible.any(axis=0), result, np.nan)


def _gcs(carried: Mapping[str, _Carried]) -> np.ndarray:
    """GCS total, or eye + motor + verbal when all three are in effect and newer than the total."""
    total = carried["gcs"]
    parts = [carried["gcs_eye"], carried["gcs_motor"], carried["gcs_verbal"]]
    complete = np.logical_and.reduce([part.present for part in parts])
    summed = np.where(complete, sum(np.nan_to_num(part.value) for part in parts), np.nan)
    parts_time = np.max(np.vstack([np.nan_to_num(p.time, nan=-np.inf) for p in parts]), axis=0)
    total_time = np.nan_to_num(total.time, nan=-np.inf)
    use_parts = complete & (parts_time > total_time)
    return np.where(use_parts, summed, total.value)


def _fixed_pupils(right: _Carried, left: _Carried) -> np.ndarray:
    """1 when both sides are not reactive, 0 when either is reactive, NaN otherwise."""
    both_fixed = (right.value == 1) & (left.value == 1)
    one_reactive = (right.value == 0) | (left.value == 0)
    return np.where(both_fixed, 1.0, np.where(one_reactive, 0.0, np.nan))


def _vasoactive_count(
    readings: Sequence[PhoenixReading], grid: np.ndarray, catalog: PhoenixCatalog
) -> np.ndarray:
    """The number of distinct agents infusing at each instant."""
    by_agent: dict[str | None, list[PhoenixReading]] = defaultdict(list)
    for reading in readings:
        by_agent[reading.agent].append(reading)
    window = catalog.carry_forward(VASOACTIVE_KEY)
    count = np.zeros(grid.shape)
    for agent_readings in by_agent.values():
        count += _active(agent_readings, grid, window).any(axis=0)
    return count


_COLUMNS = {
    "total": "phoenix_sepsis_score",
    "respiratory": "phoenix_respiratory_score",
    "cardiovascular": "phoenix_cardiovascular_score",
    "coagulation": "phoenix_coagulation_score",
    "neurologic": "phoenix_neurologic_score",
}
_PHOENIX8_COLUMNS = {
    "phoenix8_total": "phoenix8_sepsis_score",
    "endocrine": "phoenix_endocrine_score",
    "immunologic": "phoenix_immunologic_score",
    "renal": "phoenix_renal_score",
    "hepatic": "phoenix_hepatic_score",
}


def _point(
    i: int,
    time: datetime,
    columns: Mapping[str, list[float]],
    arguments: Mapping[str, list[float]],
    missing: Mapping[str, list[bool]],
    phoenix8: bool,
) -> PhoenixPoint:
    """One point from row `i` of the package's output; NaN arguments are left out of `inputs`."""
    phoenix8_total = phoenix8_subscores = None
    if phoenix8:
        phoenix8_total = int(columns["phoenix8_total"][i])
        phoenix8_subscores = {
            name: int(columns[name][i]) for name in _PHOENIX8_COLUMNS if name != "phoenix8_total"
        }
    return PhoenixPoint(
        time=time,
        total=int(columns["total"][i]),
        respiratory=int(columns["respiratory"][i]),
        cardiovascular=int(columns["cardiovascular"][i]),
        coagulation=int(columns["coagulation"][i]),
        neurologic=int(columns["neurologic"][i]),
        missing=tuple(key for key, lacks in missing.items() if lacks[i]),
        inputs={key: row[i] for key, row in arguments.items() if not math.isnan(row[i])},
        phoenix8_total=phoenix8_total,
        phoenix8_subscores=phoenix8_subscores,
    )
